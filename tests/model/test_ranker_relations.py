"""The ranker's relational input: the anchor and the subject cut out of a phrase, the relational and subject
features, and the predictor segmenting both before ranking."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from backend.model import build_model, load_config
from backend.model.config import RankerConfig
from backend.model.ranker.features import FEATURES, RELATION_FEATURES, SUBJECT_FEATURES, candidate_features
from backend.model.ranker.ranker import rerank_logits
from backend.model.ranker.relation_anchor import relation_anchor, relation_subject
from backend.predictor import ReferringPredictor

RELATIONAL = RankerConfig(width=16, layers=1, num_heads=2, relations=True)


@pytest.mark.parametrize(("phrase", "anchor"), [
    ("the tank nearest to the large pond", "the large pond"),
    ("the small building next to the red tank.", "the red tank"),
    ("The house to the left of the church", "the church"),
    ("the tank by the road", "the road"),
    ("the pond near the building closest to the top edge", "the building closest to the top edge"),
    ("a field north of the river", "the river"),
])
def test_the_anchor_follows_the_first_spatial_relation(phrase: str, anchor: str) -> None:
    assert relation_anchor(phrase) == anchor


@pytest.mark.parametrize("phrase", [
    "the building closest to the top edge",   # a part of the image, not an object
    "the tank near the left border",
    "the second largest building",
    "the bypass road",                          # "by" only as a word
    "the pond nearest to",                      # nothing follows the relation
    "",
])
def test_no_anchor_without_an_object_after_a_relation(phrase: str) -> None:
    assert relation_anchor(phrase) is None


@pytest.mark.parametrize(("phrase", "subject"), [
    ("the tank closest to the right edge", "the tank"),
    ("the red building at the top left", "the red building"),
    ("the second largest building", "the building"),
    ("the large building next to the large pond", "the large building"),
    ("the pond in the middle", "the pond"),
    ("the small pond", None),          # nothing but its subject
    ("the orange building.", None),
    ("at the top", None),              # no kind named
    ("the largest", None),
])
def test_the_subject_is_what_the_phrase_names_before_placing_or_ranking_it(phrase: str, subject: str | None) -> None:
    assert relation_subject(phrase) == subject


def _three_blobs() -> torch.Tensor:
    """1×1×32×32 logits: blobs A (rows 2-5, cols 2-5), B (rows 2-5, cols 20-27), C (rows 24-29, cols 2-9)."""
    probs = torch.full((32, 32), 0.05)
    probs[2:6, 2:6] = 0.9
    probs[2:6, 20:28] = 0.8
    probs[24:30, 2:10] = 0.7
    return torch.logit(probs)[None, None]


def test_relational_features_measure_the_candidates_against_the_anchor() -> None:
    logits = _three_blobs()
    anchor = torch.zeros(32, 32)
    anchor[2:6, 12:16] = 0.9  # between A and B, nearer B
    plain = candidate_features(logits, (1.0, 1.0))
    related = candidate_features(logits, (1.0, 1.0), relations=True, anchors=[anchor])
    assert related.features.shape == (1, 3, FEATURES + RELATION_FEATURES)
    assert torch.equal(related.features[..., :FEATURES], plain.features)
    by_mass = related.labels[0]
    names = {int(by_mass[3, 3]): "A", int(by_mass[3, 22]): "B", int(by_mass[26, 4]): "C"}
    rel = {names[k + 1]: related.features[0, k, FEATURES:] for k in range(3)}
    # rank by area: C (48 cells) and B (32) before A (16)
    assert [rel[n][0].item() for n in "CBA"] == pytest.approx([0.0, 0.5, 1.0])
    assert all(rel[n][1] == 1 for n in "ABC") and all(rel[n][2] == 0 for n in "ABC")  # an anchor; no overlap
    # shortest distances: A's column 5 to 12 = 7 cells, B's column 20 to 15 = 5, C's (row 24, col 9) to (5, 12)
    assert rel["A"][3].item() == pytest.approx(7 / 32)
    assert rel["B"][3].item() == pytest.approx(5 / 32)
    assert rel["C"][3].item() == pytest.approx(np.hypot(19, 3) / 32, abs=1e-5)
    assert [rel[n][5].item() for n in "BAC"] == pytest.approx([0.0, 0.5, 1.0])  # nearest first
    # centre offsets: A's centre (3.5, 3.5) from the anchor's (3.5, 13.5)
    assert rel["A"][4].item() == pytest.approx(10 / 32)
    assert rel["A"][6:].tolist() == pytest.approx([-10 / 32, 0.0])
    assert rel["C"][6:].tolist() == pytest.approx([(5.5 - 13.5) / 32, (26.5 - 3.5) / 32])


def test_without_an_anchor_only_the_area_rank_is_set() -> None:
    logits = torch.cat([_three_blobs(), torch.full((1, 1, 32, 32), -4.0)])
    related = candidate_features(logits, (1.0, 1.0), relations=True, anchors=[torch.zeros(32, 32), None])
    assert (related.features[0, :, FEATURES + 1:] == 0).all()  # an empty anchor map is no anchor
    assert sorted(related.features[0, :, FEATURES].tolist()) == pytest.approx([0.0, 0.5, 1.0])
    assert (related.features[1] == 0).all()  # no candidate: padding stays zero
    on_anchor = candidate_features(_three_blobs(), (1.0, 1.0), relations=True,
                                   anchors=[torch.sigmoid(_three_blobs()[0, 0])])
    assert (on_anchor.features[0, :, FEATURES + 2] == 1).all()  # each candidate lies inside the anchor map
    assert (on_anchor.features[0, :, FEATURES + 3] == 0).all()


def _predictor(cfg: RankerConfig, image_seed: int) -> ReferringPredictor:
    """A random tiny model with a ranker of ``cfg``, set on a random 256×256 image."""
    torch.manual_seed(0)
    model = build_model(dataclasses.replace(load_config("tiny"), ranker=cfg)).eval()
    predictor = ReferringPredictor(model, device="cpu")
    predictor.set_image(np.random.default_rng(image_seed).integers(0, 255, (256, 256, 3), dtype=np.uint8))
    return predictor


@torch.no_grad()
def test_predictor_ranks_with_the_segmented_anchor() -> None:
    predictor = _predictor(RELATIONAL, image_seed=1)
    model = predictor.model
    texts = ["the tank nearest to the large pond", "the large pond"]
    anchors = predictor.anchor_probs(texts)
    assert anchors[1] is None
    # the anchor map is the anchor phrase's own ranked mask
    anchor_logits = predictor.predict_low_res(["the large pond"])
    expected = torch.sigmoid(predictor._rank(["the large pond"], anchor_logits))[0, 0]
    assert torch.allclose(anchors[0], expected)
    logits = _three_blobs().expand(2, 1, 32, 32)
    logits = torch.nn.functional.interpolate(logits, size=anchor_logits.shape[-2:], mode="nearest")
    candidates = predictor.candidates(logits, RELATIONAL, anchors)
    assert candidates.features.shape[-1] == FEATURES + RELATION_FEATURES
    tokens, _, pad = model.clip_encoder.encode_text(texts)
    words, _ = model.clip_encoder.encode_words(texts)
    expected_ranked = rerank_logits(logits, candidates, model.ranker(candidates, tokens, words, pad),
                                    candidate_threshold=RELATIONAL.threshold)
    assert torch.allclose(predictor._rank(texts, logits), expected_ranked)


def test_subject_features_measure_each_candidate_under_the_subject_mask() -> None:
    logits = _three_blobs()
    subject = torch.zeros(32, 32)
    subject[2:6, 2:6] = 0.8       # covers blob A entirely
    subject[2:6, 20:24] = 0.6     # half of blob B
    out = candidate_features(logits, (1.0, 1.0), relations=True, subjects=True, subject_probs=[subject])
    assert out.features.shape == (1, 3, FEATURES + RELATION_FEATURES + SUBJECT_FEATURES)
    labels = out.labels[0]
    tail = {name: out.features[0, int(labels[r, c]) - 1, -SUBJECT_FEATURES:]
            for name, (r, c) in {"A": (3, 3), "B": (3, 22), "C": (26, 4)}.items()}
    assert tail["A"].tolist() == pytest.approx([1.0, 0.8, 0.8])
    assert tail["B"].tolist() == pytest.approx([1.0, 0.3, 0.6])
    assert tail["C"].tolist() == pytest.approx([1.0, 0.0, 0.0])
    alone = candidate_features(logits, (1.0, 1.0), subjects=True, subject_probs=[None])
    assert alone.features.shape[-1] == FEATURES + SUBJECT_FEATURES and (alone.features[..., FEATURES:] == 0).all()


@torch.no_grad()
def test_predictor_segments_the_subject_unranked() -> None:
    predictor = _predictor(dataclasses.replace(RELATIONAL, subjects=True), image_seed=2)
    model = predictor.model
    texts = ["the tank closest to the right edge", "the small pond"]
    subjects = predictor.subject_probs(texts)
    assert subjects[1] is None
    # every match of "the tank" counts: the decoder's own mask, not the ranker's choice
    assert torch.allclose(subjects[0], torch.sigmoid(predictor.predict_low_res(["the tank"]))[0, 0])
    assert model.ranker.feature_mean.shape == (FEATURES + RELATION_FEATURES + SUBJECT_FEATURES,)
    assert predictor.predict(texts).probs.shape == (2, 256, 256)
