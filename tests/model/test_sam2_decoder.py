"""SAM 2.1's eval-time stability fallback, and the lossless packing of the decoder's three image levels."""

from __future__ import annotations

import torch

from backend.model import load_config
from backend.model.sam2 import build_sam2_parts
from backend.model.sam2.head import pack_levels, unpack_levels
from backend.model.sam2.mask_decoder import stability_scores, stable_single_mask


def test_stability_is_the_area_ratio_around_zero() -> None:
    logits = torch.full((1, 2, 4, 4), -1.0)
    logits[0, 0, :2] = 1.0  # 8 px clearly inside → stable
    logits[0, 1, :2] = 1.0
    logits[0, 1, 2, :2] = 0.01  # 2 px in (−0.05, 0.05]: counted only by the outer threshold
    torch.testing.assert_close(stability_scores(logits), torch.tensor([[1.0, 0.8]]))


def test_unstable_mask_0_falls_back_to_the_best_of_masks_1_to_3() -> None:
    masks = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0)).sign() * 3
    masks[0, 0] = 0.0  # sample 0: mask 0 is all near zero → unstable
    iou = torch.tensor([[0.9, 0.2, 0.7, 0.5], [0.1, 0.8, 0.9, 0.3]])
    chosen, chosen_iou = stable_single_mask(masks, iou)
    torch.testing.assert_close(chosen[0, 0], masks[0, 2])  # best IoU among 1–3, not mask 0 (0.9)
    torch.testing.assert_close(chosen[1, 0], masks[1, 0])  # stable: mask 0 although mask 2 scores higher
    torch.testing.assert_close(chosen_iou, torch.tensor([[0.7], [0.1]]))


@torch.no_grad()
def test_decoder_takes_mask_0_in_training_and_falls_back_in_eval() -> None:
    torch.manual_seed(0)
    parts = build_sam2_parts(load_config("tiny-sam2").sam, 256)
    decoder, prompt_encoder = parts["sam_mask_decoder"], parts["sam_prompt_encoder"]
    last = decoder.output_hypernetworks_mlps[0].layers[-1]
    last.weight.zero_()
    last.bias.zero_()  # mask 0 ≡ 0: stability 0
    embedding, dense = torch.randn(1, 32, 16, 16), torch.randn(1, 32, 16, 16)
    high_res = (torch.randn(1, 4, 64, 64), torch.randn(1, 8, 32, 32))
    args = (embedding, prompt_encoder.get_dense_pe(), torch.randn(1, 9, 32), dense, high_res)
    masks, iou, _ = decoder.predict_masks(*args)
    best = int(iou[0, 1:].argmax()) + 1
    train_mask, _ = decoder.train()(*args)
    eval_mask, eval_iou = decoder.eval()(*args)
    assert not train_mask.any()
    torch.testing.assert_close(eval_mask[0, 0], masks[0, best])
    torch.testing.assert_close(eval_iou[0, 0], iou[0, best])


def test_three_levels_pack_into_one_tensor_and_back_exactly() -> None:
    generator = torch.Generator().manual_seed(0)
    embedding = torch.randn(2, 32, 16, 16, generator=generator)
    feat_s1 = torch.randn(2, 8, 32, 32, generator=generator)
    feat_s0 = torch.randn(2, 4, 64, 64, generator=generator)
    packed = pack_levels(embedding, feat_s1, feat_s0)
    assert packed.shape == (2, 128, 16, 16)
    out_embedding, (out_s0, out_s1) = unpack_levels(packed[1:])  # a batch slice unpacks on its own
    assert torch.equal(out_embedding, embedding[1:])
    assert torch.equal(out_s0, feat_s0[1:])
    assert torch.equal(out_s1, feat_s1[1:])
