"""Training a checkpoint's candidate ranker: it learns a rule that needs both the phrase and the geometry, and
the command writes a checkpoint the plugin loads, with the ranker, without touching existing files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from backend.model.checkpoint.io import load_model
from backend.model.config import RankerConfig
from backend.model.ranker.features import FEATURES, RELATION_FEATURES, SUBJECT_FEATURES
from backend.model.ranker.ranker import ComponentRanker
from backend.predictor import ReferringPredictor
from training.data.io import read_image
from training.train_ranker import PhraseCandidates, choice_report, main, train

# The bundled demo model's segmentation part (stage 4), committed without a ranker.
STAGE4 = Path(__file__).resolve().parents[2] / "training" / "states" / "demo-stage4" / "model_best.safetensors"


def _left_right_items(count: int, seed: int) -> list[PhraseCandidates]:
    """Phrases whose object is the leftmost candidate when their first token says "left", else the rightmost.

    The candidates' features are faint noise except their centre x, so neither the mass order (the candidates come
    in random order) nor the phrase alone nor the geometry alone picks the object: the ranker must combine them.
    The contextual tokens say nothing; the word features carry "left" or "right".
    """
    left, right = torch.randn(2, 4, generator=torch.Generator().manual_seed(99))  # the two words, fixed
    generator = torch.Generator().manual_seed(seed)
    items = []
    for i in range(count):
        k = 2 + i % 4
        features = 0.1 * torch.randn(k, FEATURES, generator=generator)
        cx = torch.rand(k, generator=generator)
        features[:, 0] = cx
        says_left = i % 2 == 0
        target = int(cx.argmin() if says_left else cx.argmax())
        ious = torch.zeros(k)
        ious[target] = 0.8
        words = torch.stack([left if says_left else right, 0.1 * torch.randn(4, generator=generator)])
        tokens = torch.randn(2, 5, generator=generator)
        items.append(PhraseCandidates(features=features, ious=ious, tokens=tokens, words=words,
                                      phrase_type="position"))
    return items


def test_ranker_learns_a_phrase_dependent_geometric_rule() -> None:
    torch.manual_seed(0)
    ranker = ComponentRanker(cfg=RankerConfig(width=32, layers=2, num_heads=2), clip_dim=5, word_dim=4,
                             context_length=2)
    losses = train(ranker, _left_right_items(768, seed=0), epochs=25, batch_size=32, lr=3e-3, seed=0)
    assert losses[-1] < 0.5 * losses[0]
    held_out = _left_right_items(256, seed=1)
    assert choice_report(None, held_out)["all"] < 50  # the first candidate is right about 1 time in 3
    assert choice_report(ranker, held_out)["all"] > 0.9 * 80  # IoU 0.8 when right


def test_command_writes_a_ranked_checkpoint_and_refuses_to_overwrite(synthetic_set: Path, tmp_path: Path) -> None:
    out = tmp_path / "ranked.safetensors"
    main(["--checkpoint", str(STAGE4), "--data", str(synthetic_set), "--out", str(out), "--epochs", "2",
          "--batch-size", "4", "--width", "16", "--layers", "1", "--val-data", str(synthetic_set)])
    model = load_model(out)
    assert model.config.ranker == RankerConfig(width=16, layers=1)
    assert model.meta.dataset.startswith(load_model(STAGE4).meta.dataset)
    assert "candidate ranker: training.train_ranker" in model.meta.dataset
    original = load_model(STAGE4)
    assert original.ranker is None and model.ranker is not None
    for key, value in original.state_dict().items():  # the segmentation model is unchanged
        assert torch.equal(model.state_dict()[key], value), key
    report = json.loads(out.with_suffix(".ranker.json").read_text())
    assert report["phrases"] == 16 and set(report["val"]) == {"mass", "ranker", "oracle"}
    before = out.read_bytes()
    with pytest.raises(SystemExit):
        main(["--checkpoint", str(STAGE4), "--data", str(synthetic_set), "--out", str(out)])
    assert out.read_bytes() == before


def test_command_trains_a_relational_subject_gap_closing_ranker_into_a_new_folder(synthetic_set: Path,
                                                                                  tmp_path: Path) -> None:
    out = tmp_path / "not-yet" / "relational.safetensors"
    main(["--checkpoint", str(STAGE4), "--data", str(synthetic_set), "--out", str(out), "--epochs", "1",
          "--batch-size", "4", "--width", "16", "--layers", "1", "--relations", "--subjects",
          "--close-gaps", "1"])
    model = load_model(out)
    assert model.config.ranker == RankerConfig(width=16, layers=1, close_gaps=1, relations=True, subjects=True)
    assert model.ranker.feature_mean.shape == (FEATURES + RELATION_FEATURES + SUBJECT_FEATURES,)
    predictor = ReferringPredictor(model, device="cpu")
    predictor.set_image(read_image(sorted((synthetic_set / "images").iterdir())[0]))
    prediction = predictor.predict(["the tank nearest to the large pond", "the large pond"])
    assert prediction.probs.shape[0] == 2 and np.isfinite(prediction.probs).all()


def test_command_refuses_a_negative_gap_closing_before_any_work(synthetic_set: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "ranked.safetensors"
    with pytest.raises(SystemExit):
        main(["--checkpoint", str(STAGE4), "--data", str(synthetic_set), "--out", str(out), "--close-gaps", "-1"])
    assert "--close-gaps must be 0 or more" in capsys.readouterr().err
    assert not out.exists() and not tmp_path.joinpath("ranked.json").exists()
