"""Two ``python -m backend weights import --name sam-vit-b --force`` of different files at the same instant, in
real processes, 20 trials: both finish without a traceback, the installed file is one of the two sources
whole, and the record's SHA-256 is that file's (``weights list`` trusts it)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from backend.weights import record
from backend.weights.fetch import sha256_file
from backend.weights.record import RECORD_NAME
from backend.weights.registry import REGISTRY

ROOT = Path(__file__).resolve().parents[2]
TRIALS = 20


def test_concurrent_imports_of_one_name_leave_one_whole_file_and_its_true_hash(tmp_path):
    sources = []
    for index in range(2):
        source = tmp_path / f"source{index}.pth"
        source.write_bytes(bytes([index]) * (8 * 2**20))  # large enough that the two copies overlap
        sources.append(source)
    hashes = {sha256_file(source) for source in sources}
    target_name = REGISTRY["sam-vit-b"].files[0].relpath
    for trial in range(TRIALS):
        folder = tmp_path / f"weights{trial}"
        env = {**os.environ, "RSREFSEG2_WEIGHTS_DIR": str(folder)}
        runs = [subprocess.Popen([sys.executable, "-m", "backend", "weights", "import", str(source), "--name",
                                  "sam-vit-b", "--force"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True) for source in sources]
        for run in runs:
            _, stderr = run.communicate(timeout=120)
            assert run.returncode == 0 and "Traceback" not in stderr, (trial, stderr)
        installed = sha256_file(folder / target_name)
        assert installed in hashes, trial  # one source, whole: not a mix of the two
        assert record.read(folder)[target_name]["sha256"] == installed, trial
        assert sorted(p.name for p in folder.iterdir()) == sorted([target_name, RECORD_NAME]), trial
