"""Gradients reach exactly what each method trains (METHOD.md §1 and §3 'Trained vs frozen')."""

from __future__ import annotations

import torch

# Trained per the method but unused by a mask-only prompt and a single-mask output, so no gradient here:
# SAM's point/box/no-mask embeddings, the IoU head and the hypernetworks of masks 1–3.
UNUSED_IN_THIS_PATH = (
    "sam_head.prompt_encoder.point_embeddings.", "sam_head.prompt_encoder.not_a_point_embed.",
    "sam_head.prompt_encoder.no_mask_embed.", "sam_head.mask_decoder.iou_prediction_head.",
    "sam_head.mask_decoder.output_hypernetworks_mlps.1.", "sam_head.mask_decoder.output_hypernetworks_mlps.2.",
    "sam_head.mask_decoder.output_hypernetworks_mlps.3.",
)


def _expected_trainable(name: str, arch: str) -> bool:
    if name.startswith(("prompter.", "sam_head.prompt_encoder.", "sam_head.mask_decoder.")):
        return True
    if name.endswith(("lora_a", "lora_b")):
        return True
    if name in ("clip_encoder.model.logit_scale", "clip_encoder.model.logit_bias"):
        return arch == "rsrefseg2"
    return False


def test_gradients_reach_exactly_the_trained_parameters(tiny_model, images, texts) -> None:
    arch = tiny_model.config.arch
    # LoRA B starts at zero, so A would get no gradient on the first step: nudge B to test the full path.
    with torch.no_grad():
        for name, p in tiny_model.named_parameters():
            if name.endswith("lora_b"):
                p.normal_(0, 0.01)
    out = tiny_model(images, texts)
    loss = out.mask_logits.pow(2).mean() + (0 if out.q1 is None else (out.q1 * out.q2).mean())
    loss.backward()
    names = set(tiny_model.trainable_parameter_names())
    for name, p in tiny_model.named_parameters():
        expected = _expected_trainable(name, arch)
        assert (name in names) == expected, name
        assert p.requires_grad == expected, name
        if expected and name.startswith(UNUSED_IN_THIS_PATH):
            assert p.grad is None or not p.grad.any(), name
        elif expected:
            assert p.grad is not None and p.grad.any(), f"{name} is trained but got no gradient"
        else:
            assert p.grad is None, f"{name} is frozen but got a gradient"
    lora = [n for n in names if n.endswith("lora_a")]
    assert any(n.startswith("clip_encoder.model.visual.") for n in lora)
    assert any(n.startswith("clip_encoder.model.transformer.") for n in lora)  # text tower
    assert any(n.startswith("sam_head.image_encoder.") for n in lora)
