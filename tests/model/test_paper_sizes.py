"""rsrefseg2-paper against the method: the prompter's size (METHOD.md §2, ≈ 82.8 M), the LoRA placement and the
SigLIP 2 sizes of the authors' checkpoint (METHOD.md §1, AUTHORS_CHECKPOINTS.md §2), on the meta device."""

from __future__ import annotations

import pytest
import torch
from torch.nn.utils import parametrize

from backend.model import build_model, load_config
from backend.model.clip.towers import text_tokens
from backend.model.lora import LoRALinear, LoRAPackedLinear
from backend.model.prompter.v2 import CascadedPrompter


def _millions(module: torch.nn.Module) -> float:
    return sum(p.numel() for p in module.parameters()) / 1e6


def test_paper_prompter_parameter_budget() -> None:
    cfg = load_config("rsrefseg2-paper")
    with torch.device("meta"):  # sizes only: no memory, no init cost
        prompter = CascadedPrompter(cfg=cfg.prompter, dim=1152, prompt_dim=cfg.sam.prompt_embed_dim,
                                    mask_size=cfg.mask_size)
    assert _millions(prompter.text_layers) == pytest.approx(37.8, abs=0.1)
    assert _millions(prompter.activation_layers) == pytest.approx(11.8, abs=0.1)
    assert _millions(prompter.prompt_layers) == pytest.approx(19.7, abs=0.1)
    assert _millions(prompter.dense_conv) == pytest.approx(11.9, abs=0.1)
    assert prompter.image_pe.numel() / 1e6 == pytest.approx(1.2, abs=0.05)
    assert _millions(prompter.sparse_head) == pytest.approx(0.26, abs=0.01)
    assert _millions(prompter) == pytest.approx(82.8, abs=0.2)


# --- LoRA placement of rsrefseg2-paper (METHOD.md §1 "Trained vs frozen"), in the authors' (HF/PEFT) names ---
SIGLIP_LAYERS = 27
HIERA_BLOCKS = 48


def _method_clip_sites() -> set[str]:
    """METHOD.md §1: q/k/v/out of every SigLIP layer in both towers, the vision head's out_proj and MLP, the
    text head."""
    layers = {f"{tower}.encoder.layers.{i}.self_attn.{p}_proj" for tower in ("vision", "text")
              for i in range(SIGLIP_LAYERS) for p in ("q", "k", "v", "out")}
    return layers | {"vision.head.attention.out_proj", "vision.head.mlp.fc1", "vision.head.mlp.fc2", "text.head"}


def _adapted_clip_sites(clip_encoder: torch.nn.Module) -> set[str]:
    """Our adapters, named as the HF SigLIP modules they stand for (one name per independent adapter)."""
    vision_names = {"attn.proj": "self_attn.out_proj"}
    head_names = {"attn_pool.proj": "head.attention.out_proj", "attn_pool.mlp.fc1": "head.mlp.fc1",
                  "attn_pool.mlp.fc2": "head.mlp.fc2"}
    sites = set()
    for name, module in clip_encoder.model.visual.trunk.named_modules():
        block, _, rest = name.partition(".attn.")
        if isinstance(module, LoRAPackedLinear) and rest == "qkv":
            layer = block.split(".")[1]
            sites |= {f"vision.encoder.layers.{layer}.self_attn.{p}_proj" for p in ("q", "k", "v")}
        elif isinstance(module, LoRALinear) and name.startswith("blocks."):
            sites.add(f"vision.encoder.layers.{name.split('.')[1]}.{vision_names[name.split('.', 2)[2]]}")
        elif isinstance(module, LoRALinear):
            sites.add(f"vision.{head_names[name]}")
    text = clip_encoder.model.text
    for name, module in text.named_modules():
        if isinstance(module, torch.nn.MultiheadAttention) and parametrize.is_parametrized(module):
            layer = name.split(".")[2]
            if parametrize.is_parametrized(module, "in_proj_weight"):
                groups = module.parametrizations.in_proj_weight[0].lora_a.shape[0]
                sites |= {f"text.encoder.layers.{layer}.self_attn.{p}_proj" for p in ("q", "k", "v")[:groups]}
            if parametrize.is_parametrized(module.out_proj, "weight"):
                sites.add(f"text.encoder.layers.{layer}.self_attn.out_proj")
        elif isinstance(module, LoRALinear) and name == "text_projection":
            sites.add("text.head")
    return sites


@pytest.fixture(scope="module")
def paper_model() -> torch.nn.Module:
    with torch.device("meta"):  # sizes and names only
        return build_model(load_config("rsrefseg2-paper"))


def test_paper_clip_lora_sits_where_the_authors_put_it(paper_model) -> None:
    assert _adapted_clip_sites(paper_model.clip_encoder) == _method_clip_sites()
    ranks = {p.shape[-2] for n, p in paper_model.clip_encoder.named_parameters() if n.endswith("lora_a")}
    assert ranks == {16}
    assert all(c.rank == 16 and c.alpha == 16 and c.dropout == 0
               for c in (paper_model.config.clip.vision_lora, paper_model.config.clip.text_lora))


def test_paper_clip_sizes_match_the_authors_checkpoint(paper_model) -> None:
    """AUTHORS_CHECKPOINTS.md §2: SigLIP 2 towers with both scalars 1,136,555,698; LoRA 4,192,768 (vision) and
    4,018,176 (text); SigLIP's logit scale and bias train."""
    clip = paper_model.clip_encoder
    lora = {tower: sum(p.numel() for n, p in getattr(clip.model, tower).named_parameters() if "lora_" in n)
            for tower in ("visual", "text")}
    base = sum(p.numel() for n, p in clip.named_parameters() if "lora_" not in n)
    assert (base, lora["visual"], lora["text"]) == (1_136_555_698, 4_192_768, 4_018_176)
    trainable = set(paper_model.trainable_parameter_names())
    assert {"clip_encoder.model.logit_scale", "clip_encoder.model.logit_bias"} <= trainable


def test_paper_sam_lora_sits_where_the_authors_put_it(paper_model) -> None:
    """SAM 2.1 Hiera-L: qkv/proj in all 48 blocks and the four FPN lateral convs; 2,610,432 + 50,944 LoRA
    parameters (AUTHORS_CHECKPOINTS.md §2)."""
    assert paper_model.config.sam.family == "sam2.1"
    expected = {f"trunk.blocks.{i}.attn.{p}" for i in range(HIERA_BLOCKS) for p in ("qkv", "proj")}
    expected |= {f"neck.convs.{i}.conv" for i in range(4)}
    assert set(paper_model.sam_head.lora_names) == expected
    lora = {part: sum(p.numel() for n, p in getattr(paper_model.sam_head.image_encoder, part).named_parameters()
                      if "lora_" in n) for part in ("trunk", "neck")}
    assert lora == {"trunk": 2_610_432, "neck": 50_944}


def test_paper_model_size_and_what_trains(paper_model) -> None:
    """Within 0.5 % of the paper's 1447 M; trained: the prompter, SAM 2's prompt encoder, mask decoder and
    no_mem_embed, every LoRA adapter and SigLIP's logit scale and bias (METHOD.md §1 "Trained vs frozen")."""
    total = sum(p.numel() for p in paper_model.parameters())
    assert total == pytest.approx(1447e6, rel=0.005)
    roots = ("prompter.", "sam_head.sam_prompt_encoder.", "sam_head.sam_mask_decoder.", "sam_head.no_mem_embed")
    scalars = {"clip_encoder.model.logit_scale", "clip_encoder.model.logit_bias"}
    for name, param in paper_model.named_parameters():
        expected = name.startswith(roots) or name in scalars or name.endswith(("lora_a", "lora_b"))
        assert param.requires_grad == expected, name


def test_paper_siglip2_shapes_and_activations(paper_model) -> None:
    """METHOD.md §1: a 1024² input gives (B, 1152, 32, 32) post-LN patch tokens; text tokens (B, L, 1152) with no
    attention mask and pooled = head(last token); tanh-GELU in both towers (AUTHORS_CHECKPOINTS.md trap 2)."""
    clip = paper_model.clip_encoder
    assert clip.encode_image_dense(torch.empty(2, 3, 1024, 1024, device="meta")).shape == (2, 1152, 32, 32)
    tokens, pooled = text_tokens(clip.model, torch.zeros(2, 10, dtype=torch.long, device="meta"), project_tokens=False)
    assert tokens.shape == (2, 10, 1152) and pooled.shape == (2, 1152)
    text = clip.model.text
    assert text.attn_mask is None and text.pool_type == "last" and text.positional_embedding.shape[0] == 64
    assert type(clip.model.visual.trunk.blocks[0].mlp.act).__name__ == "GELUTanh"
    assert text.transformer.resblocks[0].mlp.gelu.approximate == "tanh"
