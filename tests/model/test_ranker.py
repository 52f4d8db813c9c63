"""The candidate ranker: components, their features, the reranking rule, the module, config and checkpoints."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch

from backend.errors import BackendError
from backend.model import build_model, load_config
from backend.model.checkpoint.io import load_model, save_checkpoint
from backend.model.config import RankerConfig, config_from_dict
from backend.model.ranker.features import FEATURES, Candidates, candidate_features, label_components
from backend.model.ranker.ranker import ComponentRanker, rerank_logits
from backend.model.transforms import unpad_and_resize
from backend.predictor import ReferringPredictor

SMALL = RankerConfig(width=16, layers=1, num_heads=2)


def _blobs() -> np.ndarray:
    """32×32 probabilities: a 4×4 blob at 0.9 (top left), a 6×6 blob at 0.7 (bottom right), a diagonal pair."""
    probs = np.full((32, 32), 0.1, np.float32)
    probs[2:6, 2:6] = 0.9        # mass 14.4
    probs[20:26, 22:28] = 0.7    # mass 25.2
    probs[12, 12] = probs[13, 13] = 0.8  # one 8-connected component, mass 1.6
    return probs


def test_components_are_numbered_by_mass_and_capped() -> None:
    labels = label_components(_blobs(), 0.5, max_candidates=16)
    assert labels.max() == 3
    assert (labels[20:26, 22:28] == 1).all() and (labels[2:6, 2:6] == 2).all()
    assert labels[12, 12] == labels[13, 13] == 3  # diagonal neighbours are one component
    capped = label_components(_blobs(), 0.5, max_candidates=2)
    assert capped.max() == 2 and capped[12, 12] == 0
    assert label_components(np.zeros((8, 8), np.float32), 0.5, 4).max() == 0


def _fragments() -> np.ndarray:
    """16×16 probabilities: a 4×7 object at 0.6 cut by a one-pixel column at 0.1 (two fragments), and a 3×3 blob
    at 0.8 in the corner, three pixels from it."""
    probs = np.full((16, 16), 0.1, np.float32)
    probs[4:8, 4:11] = 0.6
    probs[4:8, 7] = 0.1
    probs[0:3, 13:16] = 0.8
    return probs


def test_closing_gaps_joins_the_fragments_of_one_object_only() -> None:
    assert label_components(_fragments(), 0.3, 16).max() == 3  # two fragments and the blob
    labels = label_components(_fragments(), 0.3, 16, close_gaps=1)
    assert labels.max() == 2
    assert (labels[4:8, 4:11] == 1).all()  # both fragments and the gap between them: one candidate
    assert (labels[0:3, 13:16] == 2).all() and (labels == 2).sum() == 9  # the blob keeps its extent at the border
    assert (labels[labels > 0].size == 28 + 9) and labels[3, 5] == labels[8, 5] == 0  # no growth outside


def test_rerank_draws_the_closed_gap_of_the_chosen_candidate() -> None:
    probs = torch.from_numpy(_fragments())
    logits = torch.logit(probs)[None, None]
    candidates = candidate_features(logits, (1.0, 1.0), threshold=0.3, close_gaps=1)
    out = rerank_logits(logits, candidates, torch.tensor([[3.0, 0.0]]), candidate_threshold=0.3)
    answer = torch.sigmoid(out[0, 0]) > 0.5
    assert answer[4:8, 4:11].all() and answer.sum() == 28  # the gap column too, nothing else


def test_candidate_features_measure_geometry() -> None:
    probs = torch.from_numpy(_blobs())
    logits = torch.logit(probs)[None, None]
    empty = torch.full_like(logits, -5.0)
    candidates = candidate_features(torch.cat([logits, empty]), (1.0, 0.5), max_candidates=2)
    assert candidates.features.shape == (2, 2, FEATURES)
    assert candidates.valid.tolist() == [[True, True], [False, False]]
    assert (candidates.features[1] == 0).all() and (candidates.labels[1] == 0).all()
    geometry = candidates.features[0, 0]  # the bottom-right blob, the most massive
    # centre x 25/32 of the square = 1.5625 of an image half as wide as the square; centre y 23/32
    assert geometry[0] == pytest.approx(25 / 32 / 0.5, abs=1e-4)
    assert geometry[1] == pytest.approx(23 / 32, abs=1e-4)
    assert geometry[2:4].tolist() == pytest.approx([6 / 32 / 0.5, 6 / 32], abs=1e-4)  # width, height
    assert geometry[5] == pytest.approx(0.7, abs=1e-4)  # mean probability
    assert geometry[7] == pytest.approx(25.2 / (25.2 + 14.4), abs=1e-3)  # share of the candidates' mass
    assert candidates.features[0, :, 8].tolist() == [0.0, 1.0]  # rank by mass


def test_rerank_draws_the_choice_as_its_candidate_and_scales_the_others() -> None:
    probs = torch.from_numpy(_blobs())
    probs[2, 2:6] = 0.4  # the top-left blob's top row lies between the candidate and the answer thresholds
    logits = torch.logit(probs)[None, None]
    candidates = candidate_features(logits, (1.0, 1.0), threshold=0.3)
    ranks = torch.tensor([[0.0, 2.0, -1.0]])  # the ranker prefers candidate 2 (the top-left blob)
    out = rerank_logits(logits, candidates, ranks, candidate_threshold=0.3)
    labels = candidates.labels[0]
    lift = math.log(0.5 / 0.5) - math.log(0.3 / 0.7)
    assert torch.allclose(out[0, 0][labels == 2], logits[0, 0][labels == 2] + lift)
    assert (torch.sigmoid(out[0, 0][labels == 2]) > 0.5).all()  # the whole candidate is the answer, 0.4 row too
    assert torch.equal(out[0, 0][labels == 0], logits[0, 0][labels == 0])  # outside every candidate: unchanged
    ratio = torch.softmax(ranks, 1)[0] / torch.softmax(ranks, 1).max()
    for k in (1, 3):
        scaled = torch.sigmoid(out[0, 0][labels == k])
        assert scaled == pytest.approx(probs[labels == k] * ratio[k - 1], rel=1e-4)
    assert (torch.sigmoid(out[0, 0][labels == 1]) < 0.5).all()
    at_half = rerank_logits(logits, candidate_features(logits, (1.0, 1.0)), ranks, candidate_threshold=0.5)
    chosen = candidate_features(logits, (1.0, 1.0)).labels[0] == 2
    assert torch.equal(at_half[0, 0][chosen], logits[0, 0][chosen])  # candidates at the answer's threshold: no lift


def _ranker() -> ComponentRanker:
    torch.manual_seed(0)
    return ComponentRanker(cfg=SMALL, clip_dim=4, word_dim=6, context_length=8).eval()


@torch.no_grad()
def test_ranker_ignores_padding_and_is_permutation_equivariant() -> None:
    ranker = _ranker()
    features = torch.randn(1, 3, FEATURES)
    tokens, words = torch.randn(1, 5, 4), torch.randn(1, 5, 6)
    pad = torch.tensor([[False, False, False, True, True]])

    def rank(feats: torch.Tensor, valid: torch.Tensor, tokens=tokens, words=words) -> torch.Tensor:
        return ranker(Candidates(torch.zeros(1, 1, 1), feats, valid), tokens, words, pad)

    base = rank(features, torch.ones(1, 3, dtype=torch.bool))
    with_padding = rank(torch.cat([features, torch.randn(1, 2, FEATURES)], 1),
                        torch.tensor([[True, True, True, False, False]]))
    assert with_padding[0, :3] == pytest.approx(base[0], abs=1e-5)
    assert torch.isinf(with_padding[0, 3:]).all()
    padded_text = words.clone()
    padded_text[0, 3:] = 100.0  # padding positions are never read
    assert rank(features, torch.ones(1, 3, dtype=torch.bool), words=padded_text) == pytest.approx(base, abs=1e-5)
    order = torch.tensor([2, 0, 1])
    permuted = rank(features[:, order], torch.ones(1, 3, dtype=torch.bool))
    assert permuted[0] == pytest.approx(base[0, order], abs=1e-5)
    assert not torch.allclose(rank(features, torch.ones(1, 3, dtype=torch.bool), words=torch.randn(1, 5, 6)), base)


def test_config_round_trip_and_strictness() -> None:
    config = dataclasses.replace(load_config("tiny"), ranker=SMALL)
    assert config_from_dict(json.loads(json.dumps(config.to_dict()))) == config
    data = config.to_dict()
    data["ranker"]["depth"] = 3
    with pytest.raises(ValueError, match="unknown keys in ranker"):
        config_from_dict(data)
    assert config_from_dict(load_config("tiny").to_dict()).ranker is None
    # a ranker config written before close_gaps existed finds components as it did then
    assert config_from_dict({**load_config("tiny").to_dict(), "ranker": {"width": 16}}).ranker.close_gaps == 0


def test_checkpoint_with_ranker_reloads_exactly(tmp_path) -> None:
    model = build_model(dataclasses.replace(load_config("tiny"), ranker=SMALL))
    assert any(k.startswith("ranker.") for k in model.state_dict())
    path = tmp_path / "ranked.safetensors"
    save_checkpoint(model, path, include_base=True)
    loaded = load_model(path)
    assert loaded.config.ranker == SMALL
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    plain = tmp_path / "plain.safetensors"
    save_checkpoint(build_model(load_config("tiny")), plain, include_base=True)
    sidecar = json.loads(plain.with_suffix(".json").read_text())
    sidecar["config"]["ranker"] = dataclasses.asdict(SMALL)  # a ranker the weights do not hold
    plain.with_suffix(".json").write_text(json.dumps(sidecar))
    with pytest.raises(BackendError, match="ranker"):
        load_model(plain)


@torch.no_grad()
def test_predictor_applies_the_ranker_to_the_decoder_masks() -> None:
    torch.manual_seed(0)
    model = build_model(dataclasses.replace(load_config("tiny"), ranker=SMALL)).eval()
    predictor = ReferringPredictor(model, device="cpu")
    image = np.random.default_rng(0).integers(0, 255, (200, 256, 3), dtype=np.uint8)
    predictor.set_image(image)
    texts = ["a red building", "the pond"]
    low_res = predictor.predict_low_res(texts)
    # A random tiny decoder rarely crosses 0.5 in separate places: give both phrases three candidates.
    state = predictor._require_image()
    logits = torch.full_like(low_res, -3.0)
    logits[..., 4:10, 4:10], logits[..., 30:40, 30:40], logits[..., 50:54, 10:20] = 2.0, 1.0, 3.0
    ranked = predictor._rank(texts, logits)
    candidates = candidate_features(logits, (200 / 256, 1.0))
    tokens, _, pad = model.clip_encoder.encode_text(texts)
    words, _ = model.clip_encoder.encode_words(texts)
    ranks = model.ranker(candidates, tokens, words, pad)
    assert torch.allclose(ranked, rerank_logits(logits, candidates, ranks, candidate_threshold=SMALL.threshold))
    for i, choice in enumerate(ranks.argmax(dim=1) + 1):  # the first choice is kept whole, the others lose
        chosen = candidates.labels[i] == choice
        assert (ranked[i, 0][chosen] >= logits[i, 0][chosen]).all()
        others = (candidates.labels[i] > 0) & ~chosen
        assert (ranked[i, 0][others] < logits[i, 0][others]).all()
    probs = predictor.predict(texts).probs
    full = unpad_and_resize(predictor._rank(texts, low_res), state.valid_hw, (200, 256), 256)
    assert probs == pytest.approx(torch.sigmoid(full[:, 0]).numpy(), abs=1e-5)
    unranked = unpad_and_resize(low_res, state.valid_hw, (200, 256), 256)
    assert predictor.predict(texts, rank=False).probs == pytest.approx(torch.sigmoid(unranked[:, 0]).numpy(),
                                                                       abs=1e-5)


def test_a_faint_choice_still_gives_an_answer_and_no_candidate_changes_nothing() -> None:
    probs = torch.full((32, 32), 0.1)
    probs[2:6, 2:6] = 0.9
    probs[20:27, 20:27] = 0.4  # a candidate at threshold 0.3 with no pixel above 0.5
    logits = torch.logit(probs)[None, None]
    candidates = candidate_features(logits, (1.0, 1.0), threshold=0.3)
    out = rerank_logits(logits, candidates, torch.tensor([[5.0, 0.0]]), candidate_threshold=0.3)
    assert (torch.sigmoid(out[0, 0, 20:27, 20:27]) > 0.5).all()  # the ranker's choice is the answer
    assert (torch.sigmoid(out[0, 0, 2:6, 2:6]) < 0.5).all()
    empty = logits * 0 - 1
    none = rerank_logits(empty, candidate_features(empty, (1.0, 1.0), threshold=0.3), torch.zeros(1, 1),
                         candidate_threshold=0.3)
    assert torch.equal(none, empty)
