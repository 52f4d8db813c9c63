"""``python -m backend weights import-authors`` and ``--checkpoint NAME`` with a tiny file in the authors' layout
(the real files cannot be downloaded here; the conversion itself is tested in tests/model/test_authors_import*)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "model"))
from authors_layout import authors_state, tiny_config  # noqa: E402 (the model tests' helper)

from backend.cli import main  # noqa: E402
from backend.errors import BackendError  # noqa: E402
from backend.loading import load_predictor  # noqa: E402
from backend.model.authors.location import imported_checkpoint, resolve_checkpoint  # noqa: E402


@pytest.fixture
def authors_file(tmp_path, monkeypatch) -> tuple[Path, Path]:
    """(rrsisd.pth in the authors' layout, the tiny model config JSON); the weights folder is a temp folder."""
    monkeypatch.setenv("RSREFSEG2_WEIGHTS_DIR", str(tmp_path / "weights"))
    config = tiny_config()
    torch.save({"state_dict": authors_state(config)}, tmp_path / "rrsisd.pth")
    (tmp_path / "tiny.json").write_text(json.dumps(config.to_dict()), encoding="utf-8")
    return tmp_path / "rrsisd.pth", tmp_path / "tiny.json"


def test_import_then_use_by_name(authors_file, capsys) -> None:
    file, config = authors_file
    assert main(["weights", "import-authors", str(file), "--config", str(config)]) == 0
    dest = imported_checkpoint("rsrefseg2-rrsisd")
    assert capsys.readouterr().out.strip() == str(dest) and dest.is_file()
    assert resolve_checkpoint("rsrefseg2-rrsisd") == dest
    predictor = load_predictor(checkpoint="rsrefseg2-rrsisd")
    assert predictor.meta.title == "RSRefSeg 2 — RRSIS-D (authors' weights)"
    # A second import does not silently replace it; --force does.
    assert main(["weights", "import-authors", str(file), "--config", str(config)]) == 7
    assert main(["weights", "import-authors", str(file), "--config", str(config), "--force"]) == 0


def test_another_name_and_a_bad_file(authors_file, capsys) -> None:
    file, config = authors_file
    assert main(["weights", "import-authors", str(file), "--config", str(config), "--name", "my-model"]) == 0
    assert imported_checkpoint("my-model").is_file()
    file.write_bytes(b"not a checkpoint")
    assert main(["weights", "import-authors", str(file), "--config", str(config), "--name", "other"]) == 4
    assert "not a PyTorch file" in capsys.readouterr().err
    assert not imported_checkpoint("other").exists()


def test_names_cannot_leave_the_folder_and_unknown_names_are_not_found(authors_file) -> None:
    with pytest.raises(BackendError, match="not a checkpoint name"):
        imported_checkpoint("../escape")
    with pytest.raises(BackendError, match="checkpoint not found"):
        load_predictor(checkpoint="rsrefseg2-refsegrs")


def test_a_mis_shaped_file_is_a_weights_error_not_a_bug(authors_file, capsys) -> None:
    """The CLI's answer to a recipe's own shape error: exit 4 with error/hint, not "this is a bug" (exit 1)."""
    file, config = authors_file
    state = torch.load(file, weights_only=True)["state_dict"]
    state["clip_text_encoder.base_model.model.logit_scale"] = torch.zeros(2)
    torch.save({"state_dict": state}, file)
    assert main(["weights", "import-authors", str(file), "--config", str(config)]) == 4
    err = capsys.readouterr().err
    assert "error:" in err and "hint:" in err and "logit_scale (2,)" in err and "bug" not in err
    assert not imported_checkpoint("rsrefseg2-rrsisd").exists()
