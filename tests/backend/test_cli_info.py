"""``python -m backend``: the real entry point in a subprocess (info, exit codes) and the parser in-process."""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from backend.cli import COMMANDS, build_parser, main
from backend.cli.info import _probe, collect, format_text
from backend.errors import EXIT_CODES

ROOT = Path(__file__).resolve().parents[2]


def _backend(*args: str, weights_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RSREFSEG2_WEIGHTS_DIR": str(weights_dir)}
    return subprocess.run([sys.executable, "-m", "backend", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)


def test_info_json_reports_the_real_environment(tmp_path: Path) -> None:
    (tmp_path / "sam_vit_b_01ec64.pth").write_bytes(b"placeholder")  # present by file name, not hashed yet
    proc = _backend("info", "--json", weights_dir=tmp_path)
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["torch"]["version"] == torch.__version__
    assert info["torch"]["cuda_available"] == torch.cuda.is_available()
    assert len(info["torch"]["cuda_devices"]) == (torch.cuda.device_count() if torch.cuda.is_available() else 0)
    assert info["open_clip"] == importlib.metadata.version("open_clip_torch")
    assert info["segment_anything"] == importlib.metadata.version("segment-anything")
    assert info["geo"]["gdal"].count(".") == 2
    assert info["weights_folder"] == str(tmp_path)
    assert info["weights"]["sam-vit-b"] == {"kind": "sam", "path": str(tmp_path / "sam_vit_b_01ec64.pth"),
                                            "status": "unchecked"}
    # Not installed is "optional" (the demo model needs no base weights), never an alarming "missing".
    assert info["weights"]["sam-vit-h"] == {"kind": "sam", "path": None, "status": "optional"}
    assert info["summary"].startswith("Ready: Demo model on cpu, ") and info["missing_packages"] == []
    assert info["weights"]["siglip2-tokenizer"]["kind"] == "tokenizer"


def test_info_text_is_readable(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("RSREFSEG2_WEIGHTS_DIR", str(tmp_path))
    text = format_text(collect())
    assert f"  version: {torch.__version__}" in text
    assert f"weights_folder: {tmp_path}" in text
    assert text.splitlines()[0].startswith("summary: Ready: Demo model on ")  # the verdict first, details below
    assert "  sam-vit-l: optional, not installed (`python -m backend weights download sam-vit-l`)" in text


def test_errors_become_hint_and_exit_code(tmp_path: Path) -> None:
    proc = _backend("weights", "download", "clip-vit-b-16", weights_dir=tmp_path)
    assert proc.returncode == EXIT_CODES["weights"]
    assert proc.stderr.splitlines()[-2].startswith("error: no published SHA-256")
    assert proc.stderr.splitlines()[-1].startswith("hint: pass --sha256")
    assert proc.stdout == ""


def test_usage_errors_exit_2(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["weights", "download", "sam-vit-z"])
    assert info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_only_the_chosen_subcommand_is_built() -> None:
    help_text = build_parser([]).format_help()
    assert all(name in help_text for name in COMMANDS)
    parser = build_parser(["weights", "list"])
    assert parser.parse_args(["weights", "list", "--json"]).json is True


def test_a_broken_library_is_reported_not_raised() -> None:
    assert _probe(lambda: 1 / 0) == {"error": "ZeroDivisionError: division by zero"}
    assert _probe(lambda: __import__("no_such_module_here"))["error"].startswith("ModuleNotFoundError")
