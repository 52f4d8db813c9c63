"""The command line tells the user what it did not read: a phrase longer than the text encoder's context."""

from __future__ import annotations

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
