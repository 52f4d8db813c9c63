"""The SigLIP code path (timm vision trunk, non-causal custom text tower, no token projection), tiny-sized.

The structure is what ``ViT-SO400M-16-SigLIP2-512`` has in open_clip. The text side uses the bundled CLIP BPE
tokenizer, or a small Gemma-like ``tokenizer.json`` (``tiny_gemma``) standing in for SigLIP 2's, which is a
Hugging Face download.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from tiny_gemma import write_gemma_like_tokenizer

from backend.model import build_model, load_config
from backend.model.clip.towers import text_tokens
from backend.model.config import config_from_dict
from backend.model.lora import LoRAPackedLinear
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


def test_patch_tokens_are_the_post_ln_trunk_output_of_the_bilinear_resized_input(siglip_model) -> None:
    """METHOD.md §1: mean = std = 0.5, bilinear resize to the CLIP size (no antialias), post-LN patch tokens."""
    clip = siglip_model.clip_encoder.eval()
    images = torch.rand(2, 3, 256, 256, generator=torch.Generator().manual_seed(1))
    small = F.interpolate(images, size=(64, 64), mode="bilinear", align_corners=False, antialias=False)
    with torch.no_grad():
        trunk = clip.model.visual.trunk  # this tiny timm ViT has a class token; SigLIP's has none
        expected = trunk.forward_features((small - 0.5) / 0.5)[:, trunk.num_prefix_tokens:]  # after trunk.norm
        dense = clip.encode_image_dense(images)
    torch.testing.assert_close(dense.flatten(2).transpose(1, 2), expected, atol=1e-5, rtol=1e-5)


def test_vision_qkv_has_one_adapter_per_projection(siglip_model) -> None:
    for block in siglip_model.clip_encoder.model.visual.trunk.blocks:
        assert isinstance(block.attn.qkv, LoRAPackedLinear)


@pytest.fixture(scope="module")
def gemma_model(tmp_path_factory: pytest.TempPathFactory) -> torch.nn.Module:
    folder = write_gemma_like_tokenizer(tmp_path_factory.mktemp("gemma"))
    clip = {**SIGLIP_LIKE, "tokenizer": None, "tokenizer_files": str(folder)}
    return build_model(config_from_dict(load_config("tiny").to_dict() | {"clip": clip})).eval()


def test_text_tokens_are_final_ln_and_pooled_is_the_head_of_the_last_token(gemma_model) -> None:
    """Our token pass equals open_clip's own tower: tokens after ln_final (EOS position included), pooled =
    text_projection(last token)."""
    clip = gemma_model.clip_encoder
    tower = clip.model.text
    with torch.no_grad():
        tokens, pooled, pad = clip.encode_text(["The Red building, at the TOP left!"])
        ids, _ = clip.tokenize(["The Red building, at the TOP left!"])
        head = tower.text_projection
        tower.text_projection, tower.output_tokens = head.merge(), True  # open_clip wants a plain nn.Linear head
        try:
            ref_pooled, ref_tokens = tower(ids)
        finally:
            tower.text_projection, tower.output_tokens = head, False
    assert not pad.any() and tokens.shape == (1, ids.shape[1], 192)
    torch.testing.assert_close(tokens, ref_tokens)
    torch.testing.assert_close(pooled, ref_pooled)
    torch.testing.assert_close(pooled, tower.text_projection(tokens[:, -1]))


def test_a_batch_is_padded_as_the_method_pads_it(gemma_model) -> None:
    """Shorter texts are right-padded with the pad id (not 0 here) and run without a mask, so their pooled text
    comes from a pad position, as in the authors' training; the mask is found from lengths, not from id 0."""
    clip = gemma_model.clip_encoder
    short, long = "A pond", "The Red building, at the TOP left!"
    with torch.no_grad():
        ids, pad = clip.tokenize([short, long])
        pad_id = clip._tokenizer.pad_id
        assert pad_id != 0
        n_short = int((~pad[0]).sum())
        assert pad[0, n_short:].all() and not pad[1].any() and ids[0, n_short:].eq(pad_id).all()
        _, pooled, _ = clip.encode_text([short, long])
        _, alone, _ = clip.encode_text([short])
        padded = text_tokens(clip.model, ids[:1], project_tokens=False)[1]
    torch.testing.assert_close(pooled[:1], padded)
    assert not torch.allclose(pooled[:1], alone, atol=1e-4)


def test_gemma_tokens_reach_the_whole_model(gemma_model) -> None:
    out = gemma_model(torch.rand(2, 3, 256, 256), ["A pond", "The ROAD."])
    assert out.mask_logits.shape == (2, 1, 64, 64)


def test_a_missing_tokenizer_folder_is_an_actionable_error(tmp_path) -> None:
    from backend.errors import BackendError

    clip = {**SIGLIP_LIKE, "tokenizer": None, "tokenizer_files": str(tmp_path)}
    model = build_model(config_from_dict(load_config("tiny").to_dict() | {"clip": clip}))
    with pytest.raises(BackendError, match="tokenizer.json"):
        model.clip_encoder.encode_text(["a pond"])


def test_the_paper_config_names_the_siglip2_tokenizer() -> None:
    clip = load_config("rsrefseg2-paper").clip
    assert (clip.name, clip.image_size, clip.mean, clip.std) == ("ViT-SO400M-16-SigLIP2-512", 512, (0.5,) * 3,
                                                                 (0.5,) * 3)
    assert clip.tokenizer_files == "siglip2-tokenizer" and clip.context_length == 64
    assert not clip.project_tokens
    assert dataclasses.replace(clip.vision_lora, target="") == dataclasses.replace(clip.text_lora, target="")
    assert (clip.vision_lora.rank, clip.vision_lora.alpha, clip.vision_lora.dropout) == (16, 16.0, 0.0)
