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
        parser.parse_args([*head, "--resolution", "-1"])


def test_batch_reads_phrases_from_its_options_and_file_like_segment(tmp_path) -> None:
    from backend.cli.arguments import read_phrases

    phrases = tmp_path / "phrases.txt"
    phrases.write_bytes("\ufeffthe small grey tank\n\n  the red building  \n".encode())
    args = _parser(batch).parse_args(["scene.tif", "--phrase", "the pond", "--phrases-file", str(phrases),
                                      "-o", "out"])
    assert read_phrases(args) == ("the pond", "the small grey tank", "the red building")
    with pytest.raises(BackendError) as refused:
        read_phrases(_parser(batch).parse_args(["scene.tif", "-o", "out"]))
    assert refused.value.code == "empty_query"
