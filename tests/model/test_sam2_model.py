"""The whole RSRefSeg 2 model on the tiny SAM 2.1 config: trains what the method trains, predicts through
``ReferringPredictor`` unchanged, and round-trips through a checkpoint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from backend.model import build_model, load_config
from backend.model.checkpoint.io import load_model, save_checkpoint
from backend.model.config import Sam2Config, SamConfig, config_from_dict
from backend.model.sam2 import Sam2Head
from backend.predictor import ReferringPredictor

# Trained per the method but not reached by a dense-only prompt and a single-mask (mask 0) training output.
UNUSED_IN_THIS_PATH = (
    "sam_head.sam_prompt_encoder.point_embeddings.", "sam_head.sam_prompt_encoder.not_a_point_embed.",
    "sam_head.sam_prompt_encoder.no_mask_embed.", "sam_head.sam_mask_decoder.iou_prediction_head.",
    "sam_head.sam_mask_decoder.pred_obj_score_head.", "sam_head.sam_mask_decoder.output_hypernetworks_mlps.1.",
    "sam_head.sam_mask_decoder.output_hypernetworks_mlps.2.", "sam_head.sam_mask_decoder.output_hypernetworks_mlps.3.",
)


@pytest.fixture
def model() -> torch.nn.Module:
    return build_model(load_config("tiny-sam2"))


def _expected_trainable(name: str) -> bool:
    return (name.startswith(("prompter.", "sam_head.sam_prompt_encoder.", "sam_head.sam_mask_decoder."))
            or name.endswith(("lora_a", "lora_b"))
            or name in ("sam_head.no_mem_embed", "clip_encoder.model.logit_scale", "clip_encoder.model.logit_bias"))


def test_config_selects_sam2_and_keeps_sam1_the_default() -> None:
    config = load_config("tiny-sam2")
    assert isinstance(config.sam, Sam2Config) and (config.sam_grid, config.mask_size) == (16, 64)
    assert config_from_dict(config.to_dict()) == config
    assert isinstance(load_config("tiny").sam, SamConfig) and load_config("tiny").sam.family == "sam1"
    data = config.to_dict()
    data["sam"]["family"] = "sam3"
    with pytest.raises(ValueError, match="unknown sam.family 'sam3'"):
        config_from_dict(data)
    data["sam"]["family"] = "sam1"  # SAM 1 keys are checked strictly against SamConfig
    with pytest.raises(ValueError, match="unknown keys in sam"):
        config_from_dict(data)


def test_forward_backward_reaches_exactly_the_trained_parameters(model, images, texts) -> None:
    assert isinstance(model.sam_head, Sam2Head)
    with torch.no_grad():  # LoRA B starts at zero, so A would get no gradient: nudge B to test the full path
        for name, p in model.named_parameters():
            if name.endswith("lora_b"):
                p.normal_(0, 0.01)
    out = model(images, texts)
    assert out.mask_logits.shape == (2, 1, 64, 64) and out.iou_pred.shape == (2,)
    (out.mask_logits.pow(2).mean() + (out.q1 * out.q2).mean()).backward()
    for name, p in model.named_parameters():
        expected = _expected_trainable(name)
        assert p.requires_grad == expected, name
        if expected and name.startswith(UNUSED_IN_THIS_PATH):
            assert p.grad is None or not p.grad.any(), name
        elif expected:
            assert p.grad is not None and p.grad.any(), f"{name} is trained but got no gradient"
        else:
            assert p.grad is None, f"{name} is frozen but got a gradient"
    lora = {n for n in model.trainable_parameter_names() if n.endswith("lora_a")}
    assert "sam_head.image_encoder.trunk.blocks.5.attn.qkv.lora_a" in lora
    assert "sam_head.image_encoder.neck.convs.0.conv.lora_a" in lora


def test_predicts_through_the_referring_predictor(model) -> None:
    predictor = ReferringPredictor(model, device="cpu")
    calls = []
    model.sam_head.image_encoder.register_forward_hook(lambda *_: calls.append(1))
    image = np.random.default_rng(0).integers(0, 256, (120, 200, 3), dtype=np.uint8)  # padded to the square input
    predictor.set_image(image, image_key="a")
    predictor.set_image(image, image_key="a")  # cached: no second encoder pass
    prediction = predictor.predict(["a red building", "the pond"], with_prompts=True)
    assert len(calls) == 1
    assert prediction.probs.shape == (2, 120, 200) and np.isfinite(prediction.probs).all()
    assert prediction.low_res_logits.shape == (2, 1, 64, 64)
    again = predictor.predict_with_prompts(prediction.prompts.sparse, prediction.prompts.dense)
    np.testing.assert_allclose(again.probs, prediction.probs, atol=0.02)  # dense prompt resampled there and back
    boxed = predictor.predict_with_box([20, 10, 120, 90], mask_prior=prediction.probs[0])
    assert boxed.probs.shape == (1, 120, 200) and np.isfinite(boxed.probs).all()


def test_checkpoint_round_trip(model, images, texts, tmp_path: Path) -> None:
    with torch.no_grad():
        model.sam_head.no_mem_embed.add_(1.0)
        model.sam_head.sam_mask_decoder.conv_s0.weight.mul_(2.0)
    path = tmp_path / "tiny-sam2.safetensors"
    save_checkpoint(model, path)
    reloaded = load_model(path)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(images, texts).mask_logits, model(images, texts).mask_logits)


@torch.no_grad()
def test_runs_under_bf16_autocast(model, images, texts) -> None:
    """The CUDA path runs under bf16 autocast; the CPU backend of autocast exercises the same dtype mixes.
    (Training mode: mask 0 always, since random weights put the eval-time stability choice on a knife edge.)"""
    reference = model(images, texts).mask_logits
    with torch.autocast("cpu", dtype=torch.bfloat16):
        embeddings = model.encode_images(images)
        logits = model.decode(embeddings, texts).mask_logits
    assert embeddings.sam.dtype == torch.bfloat16  # the cache holds half the bytes
    torch.testing.assert_close(logits.float(), reference, atol=0.05, rtol=0.05)
