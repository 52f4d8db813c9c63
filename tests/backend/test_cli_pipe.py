"""A reader that goes away (``python -m backend info | head -1``) ends the command quietly, not as "a bug"."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_a_closed_stdout_pipe_is_not_reported_as_a_bug() -> None:
    process = subprocess.Popen([sys.executable, "-m", "backend", "info"], cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    process.stdout.close()  # the reader is gone before the command prints anything
    _, stderr = process.communicate(timeout=120)
    text = stderr.decode(errors="replace")
    assert process.returncode == 0, text
    assert "bug" not in text and "Traceback" not in text and "BrokenPipeError" not in text
