"""The command line tells the user what it did not read (a phrase longer than the text encoder's context) and refuses
numbers it cannot use (NaN, negative, out of range, a resolution past the pixel budget) before any work."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
from rasters import write_geotiff

from backend.cli import main
from backend.errors import EXIT_CODES
from backend.raster.reading import MAX_VIEW_PIXELS


def test_a_phrase_cut_to_the_token_limit_prints_a_warning_with_the_kept_words(tmp_path, capsys) -> None:
    scene = write_geotiff(tmp_path / "scene.tif", np.full((3, 64, 64), 120, np.uint8))
    words = ["the", "small", "red", "roof", "near", "a", "pond"] * 5  # 35 words of one token each
    code = main(["segment", str(scene), "the pond", " ".join(words), "-o", str(tmp_path / "out.gpkg"),
                 "--config", "tiny", "--device", "cpu"])
    assert code == 0
    err = capsys.readouterr().err
    (line,) = [line for line in err.splitlines() if line.startswith("warning: ")]
    assert line.startswith("warning: phrase 2 is longer than the model reads (32 tokens)")
    assert f'uses "{" ".join(words[:30])}" and ignores "{" ".join(words[30:])}"' in line


def test_an_unforeseen_failure_is_one_sanitised_error_line_not_a_traceback(monkeypatch, capsys, caplog) -> None:
    import backend.cli.info

    # A bug cannot be produced on purpose: the subcommand is replaced by one that fails like torch.load does.
    def fail(_args) -> int:
        raise RuntimeError("Weights only load failed. Re-running `torch.load` with `weights_only` set to `False` "
                           "will likely succeed, but it can result in arbitrary code execution.")

    monkeypatch.setattr(backend.cli.info, "run", fail)
    assert main(["info"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: RuntimeError: ") and "hint: this is a bug" in err
    assert "Traceback" not in err and "weights_only" not in err and "False" not in err
    caplog.set_level(logging.INFO)  # what -v enables: the traceback, logged for the report
    assert main(["-v", "info"]) == 1
    assert any(r.exc_info and r.levelno == logging.INFO for r in caplog.records)


@pytest.mark.parametrize(("option", "value", "named"), [
    ("--simplify", "nan", "--simplify nan"), ("--simplify", "-5", "--simplify -5"),
    ("--simplify", "inf", "--simplify inf"), ("--threshold", "nan", "--threshold nan"),
    ("--threshold", "1.5", "--threshold 1.5"), ("--threshold", "-0.1", "--threshold -0.1"),
    ("--threshold", "0", "--threshold 0"), ("--min-pixels", "-3", "--min-pixels -3"),
    ("--tile-size", "-512", "--tile-size -512"), ("--overlap", "-1", "--overlap -1"),
    ("--resolution", "inf", "--resolution inf"), ("--resolution", "nan", "--resolution nan"),
    ("--resolution", "-0.5", "--resolution -0.5"), ("--resolution", "0", "--resolution 0"),
])
def test_unusable_numbers_are_refused_by_name_before_the_raster_or_model(tmp_path, capsys, option, value,
                                                                         named) -> None:
    # Neither the raster nor the checkpoint exists: an error about either would mean the option was checked late.
    code = main(["segment", str(tmp_path / "missing.tif"), "the roof", "-o", str(tmp_path / "out.gpkg"),
                 "--checkpoint", str(tmp_path / "missing.safetensors"), f"{option}={value}"])
    err = capsys.readouterr().err
    assert code == EXIT_CODES["bad_request"], err
    error, hint = err.splitlines()
    assert error.startswith(f"error: {named} ") and hint.startswith("hint: ") and f"e.g. {option} " in hint
    assert not list(tmp_path.glob("out.*"))


@pytest.mark.parametrize("resolution", ["1e-300", "1e-200", "5e-324", "1e-9"])
def test_a_resolution_too_fine_for_the_pixel_budget_is_refused_with_the_finest_that_fits(tmp_path, capsys,
                                                                                          resolution) -> None:
    scene = write_geotiff(tmp_path / "scene.tif", np.full((3, 64, 64), 120, np.uint8))  # 32 m × 32 m
    code = main(["segment", str(scene), "the roof", "-o", str(tmp_path / "out.gpkg"),
                 "--checkpoint", str(tmp_path / "missing.safetensors"), "--resolution", resolution])
    err = capsys.readouterr().err
    assert code == EXIT_CODES["too_large"], err
    error, hint = err.splitlines()
    assert error.startswith("error: the view at resolution ") and "pixels, more than" in error
    finest = math.sqrt(32 * 32 / MAX_VIEW_PIXELS)
    assert hint.startswith(f"hint: choose a coarser resolution (≥ {finest:.4g} map units per pixel)"), hint
    assert "Traceback" not in err and not list(tmp_path.glob("out.*"))


@pytest.mark.parametrize("resolution", ["1e300", "3"])
def test_a_resolution_too_coarse_to_show_anything_is_refused_with_the_coarsest_that_does(tmp_path, capsys,
                                                                                         resolution) -> None:
    scene = write_geotiff(tmp_path / "scene.tif", np.full((3, 64, 64), 120, np.uint8))  # 32 m × 32 m
    code = main(["segment", str(scene), "the roof", "-o", str(tmp_path / "out.gpkg"),
                 "--checkpoint", str(tmp_path / "missing.safetensors"), "--resolution", resolution])
    err = capsys.readouterr().err
    assert code == EXIT_CODES["bad_request"], err
    error, hint = err.splitlines()
    assert error.startswith(f"error: resolution {float(resolution):g} makes the view ") and "too coarse" in error
    assert hint.startswith("hint: choose a finer resolution (≤ 2 map units per pixel)"), hint  # 32 m / 16 px
