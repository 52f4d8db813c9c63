"""The SigLIP code path (timm vision trunk, non-causal custom text tower, no token projection), tiny-sized.

The paper's SigLIP2 tokenizer is a Hugging Face download, so the text side uses the bundled CLIP BPE tokenizer;
everything else is the structure ``ViT-SO400M-16-SigLIP2-512`` has in open_clip.
"""

from __future__ import annotations

import pytest
import torch

from backend.model import build_model, load_config
from backend.model.config import config_from_dict
from backend.predictor import ReferringPredictor

LORA = {"rank": 4, "alpha": 4.0, "dropout": 0.0}
SIGLIP_LIKE = {
    "name": "tiny-siglip-timm",
    "model_cfg": {
        "embed_dim": 192, "custom_text": True, "init_logit_bias": -10,
        "vision_cfg": {"image_size": 64, "timm_model_name": "vit_tiny_patch16_224", "timm_model_pretrained": False,
                       "timm_pool": "map", "timm_proj": "none"},
        "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 192, "heads": 3, "layers": 1,
                     "no_causal_mask": True, "proj_bias": True, "pool_type": "last"},
    },
    "tokenizer": "ViT-B-16", "context_length": 32, "image_size": 64,
    "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "project_tokens": False,
    "vision_lora": {**LORA, "target": r"trunk\.blocks\.\d+\.attn\.(qkv|proj)"},
    "text_lora": {**LORA, "target": r"transformer\.resblocks\.\d+\.attn|text_projection"},
}


@pytest.fixture(scope="module")
def siglip_model() -> torch.nn.Module:
    return build_model(config_from_dict(load_config("tiny").to_dict() | {"clip": SIGLIP_LIKE}))


def test_timm_tower_forward_and_bias(siglip_model, texts) -> None:
    clip = siglip_model.clip_encoder
    assert type(clip.model.visual).__name__ == "TimmModel"
    assert clip.logit_bias.item() == pytest.approx(-10.0) and clip.logit_bias.requires_grad
    images = torch.rand(2, 3, 256, 256)
    dense = clip.encode_image_dense(images)
    assert dense.shape == (2, 192, 4, 4)  # trunk resized from 224 to 64: 4×4 patches of 16
    assert clip.encode_image_dense(images, clear_last_block=True).shape == dense.shape
    tokens, pooled, _ = clip.encode_text(texts)
    assert tokens.shape[-1] == pooled.shape[-1] == 192
    out = siglip_model(images, texts)
    assert out.mask_logits.shape == (2, 1, 64, 64) and out.q2.shape == (2, 3, 192)
    assert any(name.startswith("trunk.blocks.") for name in clip.lora_names)


def test_timm_zero_shot_predictor(siglip_model) -> None:
    predictor = ReferringPredictor(siglip_model, device="cpu", mode="zero-shot")
    predictor.set_image(torch.randint(0, 256, (120, 160, 3), dtype=torch.uint8).numpy())
    assert predictor.predict("a white tank").probs.shape == (1, 120, 160)


def test_tower_width_must_be_the_joint_width() -> None:
    bad = {**SIGLIP_LIKE, "model_cfg": {**SIGLIP_LIKE["model_cfg"], "embed_dim": 64}}
    with pytest.raises(ValueError, match="joint"):
        build_model(config_from_dict(load_config("tiny").to_dict() | {"clip": bad}))
