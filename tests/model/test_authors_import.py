"""Importing the authors' RSRefSeg 2 checkpoint layout (issue 13): a tiny file in their layout, converted, loaded
and checked against reference computations done in the authors' terms (LoRA at scale 1, fp32). The import keeps
the authors' LoRA unmerged (bf16 base as released + fp32 A/B, issue 27); the references merge it by hand."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
import torch.nn.functional as F
from authors_layout import CONTEXT, VOCAB, authors_state, merged, tiny_config
from authors_prompter_reference import authors_prompter
from safetensors import safe_open
from safetensors.torch import save_file
from torch.nn.utils import parametrize

from backend.model.authors import import_authors
from backend.model.checkpoint.io import load_model, read_checkpoint_meta
from backend.model.clip.towers import text_tokens
from backend.model.lora import LoRAConv2d, LoRALinear, LoRAPackedLinear
from backend.model.sam2 import Sam2Head, build_sam2_parts

TOL = {"atol": 2e-4, "rtol": 2e-4}


@pytest.fixture(scope="module")
def config():
    return tiny_config()


@pytest.fixture(scope="module")
def state(config):
    return authors_state(config)


@pytest.fixture(scope="module")
def converted(tmp_path_factory, config, state):
    folder = tmp_path_factory.mktemp("authors")
    torch.save({"state_dict": state, "meta": {"epoch": 3}}, folder / "rrsisd.pth")
    dest = import_authors(folder / "rrsisd.pth", folder / "rsrefseg2-rrsisd.safetensors", config=config)
    return dest, load_model(dest)


def test_the_checkpoint_is_whole_stored_as_the_file_and_says_what_it_is(converted) -> None:
    dest, _ = converted
    sidecar = json.loads(dest.with_suffix(".json").read_text())
    assert sidecar["include_base"] is True and sidecar["base_weights"] == {"clip": None, "sam": None}
    meta = read_checkpoint_meta(dest)
    assert meta.title == "RSRefSeg 2 — RRSIS-D (authors' weights)" and meta.dataset == "RRSIS-D"
    assert "69.06" in meta.description and meta.gsd_range_m is None
    with safe_open(str(dest), "pt") as f:
        dtypes = {k: f.get_slice(k).get_dtype() for k in f.keys()}  # noqa: SIM118 (safe_open is not a dict)
    prompter = [d for k, d in dtypes.items() if k.startswith("prompter.") and "num_batches" not in k]
    assert set(prompter) == {"BF16"}  # copied tensors keep the file's bf16
    # LoRA unmerged: the adapted layer's base exactly as released, the adapters in fp32.
    assert dtypes["sam_head.image_encoder.trunk.blocks.0.attn.qkv.base.weight"] == "BF16"
    assert {dtypes[k] for k in dtypes if k.endswith(("lora_a", "lora_b"))} == {"F32"}


def test_the_authors_adapters_fill_our_slots_unmerged(converted, state) -> None:
    _, model = converted
    ours = model.state_dict()
    vision = "clip_vision_encoder.base_model.model.model.encoder.layers.0.self_attn."
    for group, projection in enumerate("qkv"):  # SigLIP's q/k/v adapters: our packed projection's three groups
        for mine, theirs in (("lora_a", "lora_A"), ("lora_b", "lora_B")):
            expected = state[f"{vision}{projection}_proj.{theirs}.default.weight"].float()
            assert torch.equal(ours[f"clip_encoder.model.visual.trunk.blocks.0.attn.qkv.{mine}"][group], expected)
    text = "clip_text_encoder.base_model.model.model.encoder.layers.0.self_attn.out_proj."
    assert torch.equal(  # a single adapter in a one-group weight parametrisation
        ours["clip_encoder.model.text.transformer.resblocks.0.attn.out_proj.parametrizations.weight.0.lora_b"][0],
        state[f"{text}lora_B.default.weight"].float())
    hiera = "backbone.model.image_encoder.base_model.model."
    assert torch.equal(ours["sam_head.image_encoder.trunk.blocks.0.attn.qkv.base.weight"],
                       state[f"{hiera}trunk.blocks.0.attn.qkv.base_layer.weight"])
    assert torch.equal(ours["sam_head.image_encoder.neck.convs.0.conv.lora_a"],
                       state[f"{hiera}neck.convs.0.conv.lora_A.default.weight"].float())


def _vision_input(images: torch.Tensor, size: int) -> torch.Tensor:
    return (F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False) - 0.5) / 0.5


def _ids() -> torch.Tensor:
    ids = torch.randint(2, VOCAB, (2, 7), generator=torch.Generator().manual_seed(3))
    ids[:, -1] = 1  # EOS
    return ids


def test_siglip_tokens_equal_hugging_face_siglip_with_lora_merged(converted, state) -> None:
    """The authors ran transformers' SiglipVisionModel/SiglipTextModel: same tokens, pooled text and names."""
    transformers = pytest.importorskip("hf_reference").transformers()
    _, model = converted
    hf_vision = transformers.SiglipVisionModel(transformers.SiglipVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=64,
        patch_size=16, layer_norm_eps=1e-6, hidden_act="gelu_pytorch_tanh"))
    hf_text = transformers.SiglipTextModel(transformers.SiglipTextConfig(
        vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        max_position_embeddings=CONTEXT, layer_norm_eps=1e-6, hidden_act="gelu_pytorch_tanh", projection_size=32))
    for hf, prefix in ((hf_vision, "clip_vision_encoder.base_model.model.model."),
                       (hf_text, "clip_text_encoder.base_model.model.model.")):
        weights = merged(state, prefix)
        target = hf.state_dict()
        assert set(weights) == set(target)  # the authors' layout uses exactly HF SigLIP's names
        hf.load_state_dict({k: weights[k].reshape(target[k].shape) for k in target}, strict=True)
        hf.eval()
    images = torch.rand(2, 3, 256, 256, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ours = model.clip_encoder.encode_image_dense(images).flatten(2).transpose(1, 2)
        theirs = hf_vision(pixel_values=_vision_input(images, 64)).last_hidden_state
        torch.testing.assert_close(ours, theirs, **TOL)
        tokens, pooled = text_tokens(model.clip_encoder.model, _ids(), project_tokens=False)
        reference = hf_text(input_ids=_ids())
        torch.testing.assert_close(tokens, reference.last_hidden_state, **TOL)
        torch.testing.assert_close(pooled, reference.pooler_output, **TOL)


def test_prompts_and_masks_equal_the_authors_computation(converted, state, config) -> None:
    _, model = converted
    images = torch.rand(2, 3, 256, 256, generator=torch.Generator().manual_seed(4))
    scale = state["clip_text_encoder.base_model.model.logit_scale"].float()
    bias = state["clip_text_encoder.base_model.model.logit_bias"].float()
    with torch.no_grad():
        clip_map = model.clip_encoder.encode_image_dense(images)
        tokens, pooled = text_tokens(model.clip_encoder.model, _ids(), project_tokens=False)
        torch.testing.assert_close(model.clip_encoder.logit_scale, scale.reshape(()), atol=0, rtol=0)
        torch.testing.assert_close(model.clip_encoder.logit_bias, bias.reshape(()), atol=0, rtol=0)
        ours = model.prompter(clip_map, tokens, pooled, model.clip_encoder.logit_scale, model.clip_encoder.logit_bias)
        sparse, dense = authors_prompter(merged(state, "prompter."), clip_map.flatten(2).transpose(1, 2), tokens,
                                         pooled, scale, bias, heads=config.prompter.num_heads,
                                         queries=config.prompter.num_queries, mask_size=config.mask_size)
        torch.testing.assert_close(ours.sparse, sparse, **TOL)
        torch.testing.assert_close(ours.dense, dense, **TOL)

        # SAM 2.1 built plain (Meta's names, no adapters) from the authors' weights with LoRA merged by hand.
        parts = build_sam2_parts(config.sam, config.input_size)
        sam_weights = merged(state, "backbone.model.image_encoder.base_model.model.")
        parts["image_encoder"].load_state_dict(sam_weights, strict=True)
        for part in ("sam_prompt_encoder", "sam_mask_decoder"):
            parts[part].load_state_dict(merged(state, f"backbone.model.{part}."), strict=True)
        parts["no_mem_embed"].data.copy_(state["backbone.model.no_mem_embed"].float())
        reference_sam = Sam2Head(**parts, cfg=config.sam).eval()
        expected, _ = reference_sam.decode(reference_sam.encode_image(images), sparse, dense)
        masks, _ = model.sam_head.decode(model.sam_head.encode_image(images), ours.sparse, ours.dense)
    # Unmerged (x·W0ᵀ + (x·Aᵀ)·Bᵀ, as the authors' PEFT runs it) and merged (x·(W0 + B·A)ᵀ) differ by fp32 rounding,
    # grown through the Hiera blocks: compared relative to the logits' size (±400 here), and no pixel flips.
    scale = float(expected.abs().max())
    torch.testing.assert_close(masks, expected, atol=1e-5 * scale, rtol=0)
    assert torch.equal(masks > 0, expected > 0)


def _merged_like_before(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The state an import wrote before issue 27: every adapter folded into its base weight in fp32, fresh B = 0."""
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    for name, module in model.named_modules():
        if isinstance(module, (LoRALinear, LoRAPackedLinear, LoRAConv2d)):
            state[f"{name}.base.weight"] = module.merge().weight.detach().float()
            state[f"{name}.lora_b"].zero_()
        elif parametrize.is_parametrized(module):
            for tensor in module.parametrizations:
                state[f"{name}.parametrizations.{tensor}.original"] = getattr(module, tensor).detach().float()
                state[f"{name}.parametrizations.{tensor}.0.lora_b"].zero_()
    return state


def test_an_older_import_with_lora_merged_in_fp32_still_loads(converted, tmp_path) -> None:
    dest, model = converted
    old = tmp_path / "rsrefseg2-rrsisd-merged.safetensors"
    save_file(_merged_like_before(model), str(old))
    shutil.copy(dest.with_suffix(".json"), old.with_suffix(".json"))
    reloaded = load_model(old)
    assert reloaded.state_dict()["sam_head.image_encoder.trunk.blocks.0.attn.qkv.base.weight"].dtype == torch.float32
    images = torch.rand(1, 3, 256, 256, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        expected = model.sam_head.encode_image(images)
        got = reloaded.sam_head.encode_image(images)
    torch.testing.assert_close(got, expected, atol=1e-5 * float(expected.abs().max()), rtol=0)
