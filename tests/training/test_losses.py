"""Losses on hand-computed cases."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from training.losses import (
    RefSegLoss,
    bce_loss,
    decorrelation_loss,
    dice_loss,
    distractor_loss,
    region_text_features,
    upsample_logits,
)


def test_bce_counts_ignored_pixels_in_the_denominator() -> None:
    logits = torch.zeros(1, 2, 2)
    labels = torch.tensor([[[1, 0], [255, 255]]])
    # Two valid pixels each cost ln 2; four pixels in the mean.
    assert bce_loss(logits, labels).item() == pytest.approx(2 * math.log(2) / 4)


def test_dice_masks_ignored_pixels_and_matches_the_vnet_formula() -> None:
    logits = torch.tensor([[[0.0, 0.0], [10.0, -10.0]]])
    labels = torch.tensor([[[1, 0], [255, 255]]])
    p = 0.5  # sigmoid(0) on both valid pixels; the ignored ones would add ≈1 to Σp² if counted
    expected = 1 - 2 * p / (2 * p**2 + 1e-3 + 1 + 1e-3)
    assert dice_loss(logits, labels).item() == pytest.approx(expected, rel=1e-6)
    perfect = torch.tensor([[[20.0, -20.0], [0.0, 0.0]]])
    assert dice_loss(perfect, labels).item() == pytest.approx(1 - 2 / (1 + 2e-3 + 1), abs=1e-6)


def test_decorrelation_is_squared_cosine_of_token_means() -> None:
    q1 = torch.tensor([[[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]]])
    q2 = torch.tensor([[[1.0, 1.0], [1.0, 1.0], [1.0, 1.0]]])
    assert decorrelation_loss(q1, q2).item() == pytest.approx(0.5)
    assert decorrelation_loss(q1, torch.tensor([[[0.0, 2.0]] * 3])).item() == pytest.approx(0.0)


def test_region_features_average_masked_patch_cells_over_the_whole_grid() -> None:
    clip_patch = torch.arange(2 * 4, dtype=torch.float32).reshape(1, 2, 2, 2)
    labels = torch.zeros(1, 8, 8, dtype=torch.int64)
    labels[0, :4, :4] = 1  # the top-left grid cell
    region, text = region_text_features(clip_patch, labels, torch.ones(1, 3, 2))
    raw = torch.tensor([[0.0, 4.0]]) / 4  # channel values at cell (0, 0), divided by the 4 cells
    assert torch.allclose(region, F.normalize(raw, dim=-1))
    assert torch.allclose(text, torch.full((1, 2), 2**-0.5))


def test_v2_total_is_the_weighted_sum_and_infonce_matches_by_hand() -> None:
    torch.manual_seed(0)
    loss_fn = RefSegLoss(arch="rsrefseg2")
    out = SimpleNamespace(mask_logits=torch.randn(2, 1, 4, 4), q1=torch.randn(2, 3, 6), q2=torch.randn(2, 3, 6),
                          clip_patch=torch.randn(2, 6, 2, 2))
    labels = torch.zeros(2, 8, 8, dtype=torch.int64)
    labels[0, :4, :4] = 1
    labels[1, 4:, 4:] = 1
    terms = loss_fn(out, labels)
    up = upsample_logits(out.mask_logits, 8)
    assert terms["bce"].item() == pytest.approx(5 * bce_loss(up, labels).item())
    assert terms["dice"].item() == pytest.approx(5 * dice_loss(up, labels).item())
    region, text = region_text_features(out.clip_patch, labels, out.q2)
    logits = (1 / 0.07) * region @ text.T + math.log(0.5)
    infonce = (F.cross_entropy(logits, torch.arange(2)) + F.cross_entropy(logits.T, torch.arange(2))) / 2
    assert terms["contrastive"].item() == pytest.approx(0.5 * infonce.item(), rel=1e-5)
    total = terms["bce"] + terms["dice"] + terms["decorrelation"] + terms["contrastive"]
    assert terms["loss"].item() == pytest.approx(total.item())
    terms["loss"].backward()
    assert loss_fn.logit_scale2.grad is not None and loss_fn.logit_bias2.grad is not None


def test_distractor_loss_is_the_mean_bce_on_the_siblings_objects_per_phrase() -> None:
    # Image 0 has two phrases (objects A and B), image 1 one phrase (no sibling, so no distractor pixels).
    labels = torch.zeros(3, 4, 4, dtype=torch.int64)
    labels[0, 0, :2] = 1            # phrase 0 names A (2 px)
    labels[1, 3, :] = 1             # phrase 1 names B (4 px)
    labels[1, 0, 0] = 255           # an ignored pixel of A in phrase 1 does not count
    labels[2, 1, 1] = 1
    logits = torch.full((3, 4, 4), -3.0)
    logits[0, 3, :] = 2.0           # phrase 0 lights up B
    image_index = torch.tensor([0, 0, 1])
    expected_0 = F.softplus(torch.tensor(2.0)).item()       # mean over B's 4 px
    expected_1 = F.softplus(torch.tensor(-3.0)).item()      # A's one valid px
    assert distractor_loss(logits, labels, image_index).item() == pytest.approx((expected_0 + expected_1) / 2)
    alone = distractor_loss(logits[2:], labels[2:], torch.tensor([0]))
    assert alone.item() == 0.0 and alone.requires_grad is False


def test_distractor_term_needs_a_weight_and_a_grouped_batch() -> None:
    out = SimpleNamespace(mask_logits=torch.zeros(2, 1, 2, 2), q1=None, q2=None, clip_patch=None)
    labels = torch.zeros(2, 4, 4, dtype=torch.int64)
    labels[0, :2, :2], labels[1, 2:, 2:] = 1, 1
    grouped = torch.tensor([0, 0])
    assert "distractor" not in RefSegLoss(arch="rsrefseg")(out, labels, grouped)
    weighted = RefSegLoss(arch="rsrefseg", distractor_weight=2.0)
    assert "distractor" not in weighted(out, labels)
    terms = weighted(out, labels, grouped)
    assert terms["distractor"].item() == pytest.approx(2 * math.log(2))
    assert terms["loss"].item() == pytest.approx((terms["bce"] + terms["distractor"]).item())


def test_v1_is_bce_only_and_has_no_head_parameters() -> None:
    loss_fn = RefSegLoss(arch="rsrefseg")
    out = SimpleNamespace(mask_logits=torch.zeros(1, 1, 2, 2), q1=None, q2=None, clip_patch=None)
    terms = loss_fn(out, torch.ones(1, 4, 4, dtype=torch.int64))
    assert set(terms) == {"bce", "loss"}
    assert terms["loss"].item() == pytest.approx(5 * math.log(2))
    assert list(loss_fn.parameters()) == []


def test_losses_train_both_real_tiny_architectures() -> None:
    from backend.model.build import build_model
    from backend.model.config import load_config

    labels = torch.zeros(1, 256, 256, dtype=torch.int64)
    labels[:, 40:90, 60:100] = 1
    labels[:, 200:] = 255
    images = torch.rand(1, 3, 256, 256)
    for name in ("tiny", "tiny-rsrefseg"):
        config = load_config(name)
        model = build_model(config)
        terms = RefSegLoss(arch=config.arch)(model(images, ["the small tank next to the pond"]), labels)
        assert set(terms) == ({"bce", "dice", "decorrelation", "contrastive", "loss"} if config.arch == "rsrefseg2"
                              else {"bce", "loss"})
        terms["loss"].backward()
        grads = [p.grad for p in model.prompter.parameters() if p.requires_grad]
        assert grads and all(g is not None for g in grads), name
