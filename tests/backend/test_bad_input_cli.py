"""The command line tells the user what it did not read: a phrase longer than the text encoder's context."""

from __future__ import annotations

import logging

import numpy as np
from rasters import write_geotiff

from backend.cli import main


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
