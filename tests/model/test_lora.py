"""LoRA: zero-initialised adapters leave outputs unchanged; merging preserves the adapted outputs."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
from torch import nn

from backend.model import build_model, load_config
from backend.model.clip.encoder import ClipDualEncoder, create_open_clip
from backend.model.config import LoRAConfig
from backend.model.lora import LoRALinear, LoRAPackedLinear, apply_lora, lora_parameter_names, merge_lora

CFG = LoRAConfig(rank=4, alpha=8.0, dropout=0.0, target="")


def _nudge_b(module: nn.Module) -> None:
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith("lora_b"):
                p.normal_(0, 0.1)


def test_lora_linear_zero_init_and_merge() -> None:
    base = nn.Linear(8, 6)
    x = torch.randn(5, 8)
    layer = LoRALinear(base=copy.deepcopy(base), rank=4, alpha=8.0)
    torch.testing.assert_close(layer(x), base(x))
    assert not layer.base.weight.requires_grad and layer.lora_a.requires_grad
    _nudge_b(layer)
    assert not torch.allclose(layer(x), base(x))
    torch.testing.assert_close(layer.merge()(x), layer(x), atol=1e-6, rtol=1e-5)


def test_mha_adapter_zero_init_and_merge() -> None:
    torch.manual_seed(0)
    block = nn.Sequential()
    block.attn = nn.MultiheadAttention(16, 2, batch_first=True)
    reference = copy.deepcopy(block)
    x = torch.randn(2, 7, 16)
    names = apply_lora(block, r"attn", CFG)
    assert names == ["attn"]
    assert len(lora_parameter_names(block)) == 4  # A and B for the packed in-projection and the out-projection
    torch.testing.assert_close(block.attn(x, x, x)[0], reference.attn(x, x, x)[0])
    _nudge_b(block)
    adapted = block.attn(x, x, x)[0]
    assert not torch.allclose(adapted, reference.attn(x, x, x)[0])
    assert merge_lora(block) == 2
    assert not lora_parameter_names(block)
    torch.testing.assert_close(block.attn(x, x, x)[0], adapted, atol=1e-5, rtol=1e-5)


def test_apply_lora_rejects_a_target_that_matches_nothing() -> None:
    with pytest.raises(ValueError, match="matches no"):
        apply_lora(nn.Sequential(nn.Linear(2, 2)), r"blocks\.\d+\.qkv", CFG)


def test_clip_lora_is_identity_at_init(images, texts) -> None:
    cfg = load_config("tiny").clip
    open_clip_model = create_open_clip(cfg, None)
    plain = ClipDualEncoder(model=copy.deepcopy(open_clip_model),
                            cfg=dataclasses.replace(cfg, vision_lora=None, text_lora=None))
    adapted = ClipDualEncoder(model=open_clip_model, cfg=cfg)
    assert adapted.lora_names and not plain.lora_names
    with torch.no_grad():
        torch.testing.assert_close(adapted.encode_image_dense(images), plain.encode_image_dense(images))
        torch.testing.assert_close(adapted.encode_text(texts)[1], plain.encode_text(texts)[1])


def test_merging_a_whole_model_preserves_outputs(tiny_name, images, texts) -> None:
    model = build_model(load_config(tiny_name)).eval()
    _nudge_b(model)
    with torch.no_grad():
        before = model(images, texts).mask_logits
        merged = merge_lora(model)
        after = model(images, texts).mask_logits
    assert merged > 0 and not lora_parameter_names(model)
    torch.testing.assert_close(after, before, atol=1e-4, rtol=1e-4)


def test_lora_conv_zero_init_and_merge() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(6, 5, 3, padding=1, bias=False), nn.GELU(), nn.Conv2d(5, 4, 1))
    reference = copy.deepcopy(model)
    x = torch.randn(2, 6, 9, 9)
    assert apply_lora(model, r"[02]", CFG) == ["0", "2"]
    torch.testing.assert_close(model(x), reference(x))
    _nudge_b(model)
    adapted = model(x)
    assert not torch.allclose(adapted, reference(x))
    assert merge_lora(model) == 2 and isinstance(model[0], nn.Conv2d)
    torch.testing.assert_close(model(x), adapted, atol=1e-5, rtol=1e-5)


def test_v1_adapts_sams_neck() -> None:
    model = build_model(load_config("tiny-rsrefseg"))
    assert {"neck.0", "neck.2"} <= set(model.sam_head.lora_names)


def test_packed_qkv_gets_an_independent_adapter_per_projection() -> None:
    """One adapter per q/k/v third (as PEFT on SigLIP's separate q/k/v_proj), not one shared rank-r adapter."""
    torch.manual_seed(0)
    base = nn.Linear(8, 3 * 6)
    x = torch.randn(5, 8)
    layer = LoRAPackedLinear(base=copy.deepcopy(base), rank=4, alpha=8.0)
    assert layer.lora_a.shape == (3, 4, 8) and layer.lora_b.shape == (3, 6, 4)
    torch.testing.assert_close(layer(x), base(x))
    _nudge_b(layer)
    with torch.no_grad():
        layer.lora_a[1].zero_()  # k's adapter off: only the k rows go back to the base output
    adapted, reference = layer(x), base(x)
    torch.testing.assert_close(adapted[:, 6:12], reference[:, 6:12])
    for rows, g in ((slice(0, 6), 0), (slice(12, 18), 2)):
        expected = reference[:, rows] + 2.0 * x @ layer.lora_a[g].T @ layer.lora_b[g].T
        torch.testing.assert_close(adapted[:, rows], expected)
    torch.testing.assert_close(layer.merge()(x), adapted, atol=1e-6, rtol=1e-5)


def test_apply_lora_packs_only_the_named_linears() -> None:
    block = nn.Module()
    block.attn = nn.Module()
    block.attn.qkv, block.attn.proj = nn.Linear(8, 24), nn.Linear(8, 8)
    assert apply_lora(block, r"attn\.(qkv|proj)", CFG, packed_qkv=r"(.+\.)?attn\.qkv") == ["attn.qkv", "attn.proj"]
    assert isinstance(block.attn.qkv, LoRAPackedLinear) and type(block.attn.proj) is LoRALinear
    _nudge_b(block)
    x = torch.randn(3, 8)
    adapted = block.attn.qkv(x)
    assert merge_lora(block) == 2 and isinstance(block.attn.qkv, nn.Linear)
    torch.testing.assert_close(block.attn.qkv(x), adapted, atol=1e-6, rtol=1e-5)


def test_v2_on_sam1_adapts_every_block_and_the_neck() -> None:
    """RSRefSeg 2 adapts all attention qkv/proj and the neck convs of SAM's encoder (METHOD.md §1); on SAM 1 the
    neck is conv 0 (1×1) and conv 2 (3×3), as v1 adapts it."""
    with torch.device("meta"):
        model = build_model(load_config("rsrefseg2-b16"))
    expected = {f"blocks.{i}.attn.{p}" for i in range(12) for p in ("qkv", "proj")} | {"neck.0", "neck.2"}
    assert set(model.sam_head.lora_names) == expected


def test_merging_a_deep_copy_leaves_the_original_adapted() -> None:
    torch.manual_seed(0)
    block = nn.Sequential()
    block.attn = nn.MultiheadAttention(16, 2, batch_first=True)
    apply_lora(block, r"attn", CFG)
    _nudge_b(block)
    x = torch.randn(2, 7, 16)
    adapted = block.attn(x, x, x)[0]
    merged = copy.deepcopy(block)
    assert merge_lora(merged) == 2
    torch.testing.assert_close(merged.attn(x, x, x)[0], adapted, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(block.attn(x, x, x)[0], adapted)  # the original still has its adapters
    assert len(lora_parameter_names(block)) == 4


@pytest.mark.parametrize("batch_first", [True, False])
def test_mha_adapters_act_on_the_activations_like_the_formed_weight(batch_first) -> None:
    """The inference path (need_weights=False, open_clip's call) equals the parent's path through the parametrised
    weights in fp32, also with an additive mask, and under bf16 autocast over a bf16-stored base (the paper
    model's storage) it stays close to the fp32 answer."""
    torch.manual_seed(0)
    block = nn.Sequential()
    block.attn = nn.MultiheadAttention(64, 4, batch_first=batch_first)
    apply_lora(block, r"attn", CFG)
    _nudge_b(block)
    block.eval()
    x = torch.randn(2, 9, 64) if batch_first else torch.randn(9, 2, 64)
    mask = torch.triu(torch.full((9, 9), float("-inf")), 1)
    with torch.no_grad():
        for attn_mask in (None, mask):
            fast = block.attn(x, x, x, need_weights=False, attn_mask=attn_mask)[0]
            formed = block.attn(x, x, x, need_weights=True, attn_mask=attn_mask)[0]  # the parent's path
            assert not torch.allclose(fast, block.attn(x, x, x, need_weights=False,
                                                       attn_mask=None if attn_mask is not None else mask)[0])
            torch.testing.assert_close(fast, formed, atol=1e-5, rtol=1e-5)
        for chain in (block.attn.parametrizations.in_proj_weight, block.attn.out_proj.parametrizations.weight):
            chain.original.data = chain.original.data.to(torch.bfloat16)
        reference = block.attn(x, x, x, need_weights=False)[0]  # fp32 compute over the bf16 base
        with torch.autocast("cpu", dtype=torch.bfloat16):
            fast = block.attn(x, x, x, need_weights=False)[0].float()
    assert (fast - reference).norm() < 0.02 * reference.norm()


def test_lora_linear_casts_its_input_once_under_autocast() -> None:
    """Under bf16 autocast the base and the adapter read one bf16 copy of the input (fewer copies per call), and
    in inference the update is added in place; the result equals the out-of-place maths."""
    torch.manual_seed(0)
    layer = LoRALinear(base=nn.Linear(32, 24), rank=4, alpha=8.0)
    _nudge_b(layer)
    x = torch.randn(5, 32)
    expected = layer.base(x) + layer.scale * (x @ layer.lora_a.t() @ layer.lora_b.t())
    with torch.no_grad():
        torch.testing.assert_close(layer(x), expected, atol=1e-5, rtol=1e-5)
        with torch.autocast("cpu", dtype=torch.bfloat16), torch.profiler.profile(record_shapes=True) as prof:
            out = layer(x)
    assert out.dtype == torch.bfloat16
    input_casts = [e for e in prof.events() if e.name == "aten::_to_copy" and e.input_shapes[0] == [5, 32]]
    assert len(input_casts) == 1  # x once, not again for the adapter
    torch.testing.assert_close(out.float(), expected, atol=0.1, rtol=0.05)
