"""The argument parsers ``segment`` and ``batch`` share (``backend.cli.arguments``), through both commands' parsers."""

from __future__ import annotations

import argparse

import pytest

from backend.cli import batch, segment
from backend.errors import BackendError


def _parser(command) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(exit_on_error=False)
    command.add_arguments(parser)
    return parser


@pytest.mark.parametrize(("command", "head"), [(segment, ["scene.tif", "the pond", "-o", "out.gpkg"]),
                                               (batch, ["scene.tif", "--phrase", "the pond", "-o", "out"])])
def test_both_commands_parse_resolution_and_bands_alike(command, head) -> None:
    parser = _parser(command)
    assert parser.parse_args([*head, "--resolution", "0.5", "--bands", "3,2,1"]).resolution == 0.5
    assert parser.parse_args([*head, "--bands", "3,2,1"]).bands == (3, 2, 1)
    assert parser.parse_args([*head, "--resolution", "native"]).resolution is None
    assert parser.parse_args(head).resolution == "auto"
    with pytest.raises(argparse.ArgumentError, match="'auto', 'native' or a positive number"):
        parser.parse_args([*head, "--resolution", "half a metre"])
    # A number out of range parses; ``check_search_numbers`` refuses it with error:/hint: before any work.
    assert parser.parse_args([*head, "--resolution", "-1"]).resolution == -1.0


def test_batch_reads_phrases_from_its_options_and_file_like_segment(tmp_path) -> None:
    from backend.cli.arguments import read_phrases

    phrases = tmp_path / "phrases.txt"
    phrases.write_bytes("\ufeffthe small grey tank\n\n  the red building  \n".encode())
    args = _parser(batch).parse_args(["scene.tif", "--phrase", "the pond", "--phrases-file", str(phrases),
                                      "-o", "out"])
    assert read_phrases(args, missing_hint="") == ("the pond", "the small grey tank", "the red building")
    with pytest.raises(BackendError) as refused:
        read_phrases(_parser(batch).parse_args(["scene.tif", "-o", "out"]), missing_hint="give --phrase")
    assert (refused.value.code, refused.value.hint) == ("empty_query", "give --phrase")


def test_each_command_says_how_to_give_a_phrase_on_its_own_line(tmp_path, capsys) -> None:
    """batch takes phrases with --phrase: "add a phrase after the raster" would make the phrase an input."""
    from backend.cli import main

    scene = tmp_path / "scene.tif"
    scene.write_bytes(b"")  # never opened: the phrases are checked first
    assert main(["batch", str(scene), "-o", str(tmp_path / "out")]) != 0
    batch_error = capsys.readouterr().err
    assert "error: no phrase given" in batch_error and 'hint: add --phrase "' in batch_error
    assert "--phrases-file FILE" in batch_error and "after the raster" not in batch_error
    assert main(["segment", str(scene), "-o", str(tmp_path / "out.gpkg")]) != 0
    assert "hint: add a phrase after the raster" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
