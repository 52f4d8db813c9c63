"""training.evaluate takes an imported checkpoint by its name, as the README's evaluation recipe writes it."""

from __future__ import annotations

import json

from backend.model import build_model, load_config, save_checkpoint
from backend.model.authors.location import imported_checkpoint
from training.evaluate import main as evaluate_main


def test_evaluate_resolves_an_imported_name(synthetic_set, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("RSREFSEG2_WEIGHTS_DIR", str(tmp_path / "weights"))
    path = imported_checkpoint("rsrefseg2-mydata")
    path.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(build_model(load_config("tiny")), path, include_base=True)
    out = tmp_path / "eval.json"
    evaluate_main(["--checkpoint", "rsrefseg2-mydata", "--data", str(synthetic_set), "--split", "val",
                   "--device", "cpu", "--out", str(out)])
    report = json.loads(out.read_text())
    assert report["checkpoint"] == str(path) and report["model"]["n"] == 6
