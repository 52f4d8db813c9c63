"""Our SAM 2.1 image path equals Meta's (the reference in ``sam2_reference``), loaded from one SAM 2.1 ``.pt``.

A tiny Hiera SAM2Base with randomly perturbed weights (memory modules included) is saved as Meta saves its
checkpoints, ``torch.save({"model": state_dict})``, and loaded into our head through ``build_sam_head``. Both
then see the same images and prompts: image embedding (+ no_mem_embed), high-resolution skips, all four
masks, IoU and object scores, and the single-mask output in eval (stability fallback) and training mode.
"""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
import torch
from sam2_reference import build_reference_sam2
from torch import nn

from backend.model import load_config
from backend.model.build import build_sam_head
from backend.model.sam2 import build_sam2_parts
from backend.model.sam2.head import PIXEL_MEAN, PIXEL_STD, unpack_levels
from backend.model.sam2.weights import is_memory_key

TOL = 1e-5


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[torch.nn.Module, torch.nn.Module]:
    """(reference SAM2Base, our Sam2Head loaded from the reference's state dict as a SAM 2.1 .pt)."""
    config = load_config("tiny-sam2")
    reference = build_reference_sam2(config.sam, config.input_size)
    state = reference.state_dict()
    assert any(is_memory_key(k) for k in state) and "no_mem_embed" in state
    path = Path(tmp_path_factory.mktemp("sam2")) / "sam2.1_tiny_test.pt"
    torch.save({"model": state}, path)
    ours = build_sam_head(config, path).eval()
    return reference, ours


def _images() -> torch.Tensor:
    return torch.rand(2, 3, 256, 256, generator=torch.Generator().manual_seed(0))


def _reference_levels(reference: torch.nn.Module, images: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """What SAM2ImagePredictor.set_image caches: the embedding with no_mem_embed, and the two skips."""
    normalised = (images - torch.tensor(PIXEL_MEAN).view(1, 3, 1, 1)) / torch.tensor(PIXEL_STD).view(1, 3, 1, 1)
    backbone = reference.forward_image(normalised)
    _, feats, _, sizes = reference._prepare_backbone_features(backbone)
    feats[-1] = feats[-1] + reference.no_mem_embed
    levels = [f.permute(1, 2, 0).reshape(images.shape[0], -1, *s) for f, s in zip(feats, sizes, strict=True)]
    return levels[-1], levels[:-1]


def _prompts(batch: int, d: int, mask_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(2)
    return (torch.randn(batch, 9, d, generator=generator),
            4 * torch.randn(batch, 1, mask_size, mask_size, generator=generator))


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return float((a - b).abs().max())


@torch.no_grad()
def test_image_embedding_and_high_res_skips_match_meta(pair) -> None:
    reference, ours = pair
    images = _images()
    embedding, (feat_s0, feat_s1) = unpack_levels(ours.encode_image(images))
    ref_embedding, (ref_s0, ref_s1) = _reference_levels(reference, images)
    assert embedding.shape == (2, 32, 16, 16) and feat_s0.shape == (2, 4, 64, 64) and feat_s1.shape == (2, 8, 32, 32)
    assert _max_diff(embedding, ref_embedding) <= TOL
    assert _max_diff(feat_s0, ref_s0) <= TOL
    assert _max_diff(feat_s1, ref_s1) <= TOL


@torch.no_grad()
def test_all_masks_iou_and_object_scores_match_meta(pair) -> None:
    reference, ours = pair
    images = _images()
    packed = ours.encode_image(images)
    ref_embedding, ref_high_res = _reference_levels(reference, images)
    sparse, dense_logits = _prompts(2, 32, 64)
    _, dense = reference.sam_prompt_encoder(points=None, boxes=None, masks=dense_logits)
    ref_masks, ref_iou, _, ref_obj = reference.sam_mask_decoder.predict_masks(
        image_embeddings=ref_embedding, image_pe=reference.sam_prompt_encoder.get_dense_pe(),
        sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense, repeat_image=False,
        high_res_features=ref_high_res)
    embedding, high_res = unpack_levels(packed)
    _, our_dense = ours.sam_prompt_encoder(points=None, boxes=None, masks=dense_logits)
    masks, iou, obj = ours.sam_mask_decoder.predict_masks(embedding, ours.sam_prompt_encoder.get_dense_pe(), sparse,
                                                          our_dense, high_res)
    assert masks.shape == (2, 4, 64, 64)
    assert _max_diff(masks, ref_masks) <= TOL
    assert _max_diff(iou, ref_iou) <= TOL
    assert _max_diff(obj, ref_obj) <= TOL


@pytest.mark.parametrize("training", [False, True], ids=["eval-stability-fallback", "train-mask-0"])
@pytest.mark.parametrize("shared_image", [False, True], ids=["image-per-prompt", "one-image-three-prompts"])
@torch.no_grad()
def test_single_mask_decode_matches_meta(pair, training: bool, shared_image: bool) -> None:
    reference, ours = pair
    images = _images()[:1] if shared_image else _images()
    prompts = 3 if shared_image else 2
    sparse, dense_logits = _prompts(prompts, 32, 64)
    # Make the first prompt's mask 0 unstable in eval (logits near 0) so the fallback is exercised.
    dense_logits[0] = 0.0
    ref_embedding, (ref_s0, ref_s1) = _reference_levels(reference, images)
    reference.train(training)
    ours.train(training)
    try:
        _, dense = reference.sam_prompt_encoder(points=None, boxes=None, masks=dense_logits)
        ref_masks, ref_iou, _, _ = reference.sam_mask_decoder(
            image_embeddings=ref_embedding, image_pe=reference.sam_prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense, multimask_output=False,
            repeat_image=shared_image, high_res_features=[ref_s0, ref_s1])
        masks, iou = ours.decode(ours.encode_image(images), sparse, dense_logits)
    finally:
        reference.eval()
        ours.eval()
    assert masks.shape == (prompts, 1, 64, 64)
    assert _max_diff(masks, ref_masks) <= TOL
    assert _max_diff(iou, ref_iou[:, 0]) <= TOL


def test_paper_hiera_large_has_exactly_metas_sam21_image_path_layout(monkeypatch: pytest.MonkeyPatch) -> None:
    """rsrefseg2-paper's SAM side has every key and shape of Meta's sam2.1_hiera_l SAM2Base except the memory
    modules, so ``sam2.1_hiera_large.pt`` loads strictly (built on the meta device: names and shapes only)."""
    config = load_config("rsrefseg2-paper")
    # Meta's Hiera reads its drop-path schedule with .item(), which meta tensors refuse: compute it on the CPU.
    monkeypatch.setattr(torch, "linspace", functools.partial(torch.linspace, device="cpu"))
    with torch.device("meta"):
        reference = build_reference_sam2(config.sam, config.input_size, perturb=False)
        holder = nn.Module()
        for name, part in build_sam2_parts(config.sam, config.input_size).items():
            setattr(holder, name, part)
    expected = {k: tuple(v.shape) for k, v in reference.state_dict().items() if not is_memory_key(k)}
    assert {k: tuple(v.shape) for k, v in holder.state_dict().items()} == expected
    # Hiera-L + FPN + prompt encoder + mask decoder + no_mem_embed
    assert sum(p.numel() for p in holder.parameters()) == 216_924_865
