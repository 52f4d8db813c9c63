"""A tiny RSRefSeg 2 checkpoint in the AUTHORS' layout, and reference computations in their terms.

Written from the authors' public code as described in AUTHORS_CHECKPOINTS.md §2: mmengine module names, PEFT LoRA
(``base_layer`` / ``lora_A.default`` / ``lora_B.default``) at the authors' sites, Hugging Face SigLIP names (the
conv-patch ``SiglipVisionModel`` / ``SiglipTextModel``), Meta's SAM 2.1 names and the ``CascadedPrompter`` attribute
names of ``configs_RSRefSeg2/*_infer.py``. The prompter reference below runs the authors' operation-order lists
directly (its own interpreter of their semantics), so it checks our prompter against theirs, not against itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import timm
import torch
from timm.models import register_model
from timm.models.vision_transformer import _create_vision_transformer

from backend.model.config import ModelConfig, config_from_dict, load_config
from backend.model.sam2 import build_sam2_parts

WIDTH, MLP, HEADS, LAYERS, VOCAB, CONTEXT, PATCH, CLIP_SIZE = 32, 64, 2, 2, 100, 16, 16, 64
GRID = CLIP_SIZE // PATCH
RANK = 4  # the authors' r (16 in the released files); the converter does not depend on it
TIMM_NAME = "vit_siglip_authors_test_tiny"


if not timm.is_model(TIMM_NAME):
    @register_model
    def vit_siglip_authors_test_tiny(pretrained: bool = False, **kwargs) -> torch.nn.Module:
        """A SigLIP-shaped timm ViT (no class token, MAP head, tanh GELU), tiny."""
        args = {"patch_size": PATCH, "embed_dim": WIDTH, "depth": LAYERS, "num_heads": HEADS, "mlp_ratio": MLP / WIDTH,
                "class_token": False, "global_pool": "map", "act_layer": "gelu_tanh"}
        return _create_vision_transformer(TIMM_NAME, pretrained=pretrained, **(args | kwargs))


def tiny_config() -> ModelConfig:
    """``tiny-sam2`` with SigLIP 2-shaped open_clip towers and the paper's LoRA placement, tiny."""
    lora = {"rank": 4, "alpha": 4.0, "dropout": 0.0}
    paper = load_config("rsrefseg2-paper").to_dict()
    clip = {
        "name": "tiny-siglip2-authors-test", "image_size": CLIP_SIZE, "mean": [0.5] * 3, "std": [0.5] * 3,
        "context_length": CONTEXT, "project_tokens": False,
        "model_cfg": {
            "embed_dim": WIDTH, "custom_text": True, "init_logit_bias": -10,
            "vision_cfg": {"image_size": CLIP_SIZE, "timm_model_name": TIMM_NAME, "timm_model_pretrained": False,
                           "timm_pool": "map", "timm_proj": "none"},
            "text_cfg": {"context_length": CONTEXT, "vocab_size": VOCAB, "width": WIDTH, "heads": HEADS,
                         "layers": LAYERS, "mlp_ratio": MLP / WIDTH, "no_causal_mask": True, "proj_bias": True,
                         "pool_type": "last", "norm_kwargs": {"eps": 1e-6}, "act_kwargs": {"approximate": "tanh"}},
        },
        "vision_lora": lora | {"target": paper["clip"]["vision_lora"]["target"]},
        "text_lora": lora | {"target": paper["clip"]["text_lora"]["target"]},
    }
    data = load_config("tiny-sam2").to_dict()
    data["clip"] = clip
    data["prompter"] |= {"attn_dim": 32, "num_heads": 4, "mlp_dim": 32, "pe_grid": GRID, "hidden_dim": 32}
    return config_from_dict(data)


@dataclass(frozen=True)
class Dims:
    """SigLIP tower sizes of an authors'-layout file (default: the tiny test towers)."""

    width: int = WIDTH
    mlp: int = MLP
    layers: int = LAYERS
    vocab: int = VOCAB
    context: int = CONTEXT
    grid: int = GRID


# SigLIP 2 so400m-patch16-512, as in the released files.
PAPER_DIMS = Dims(width=1152, mlp=4304, layers=27, vocab=256000, context=64, grid=32)


def _siglip_shapes(tower: str, dims: Dims) -> dict[str, tuple[int, ...]]:
    c, mlp, grid = dims.width, dims.mlp, dims.grid
    shapes: dict[str, tuple[int, ...]] = {}
    if tower == "vision":
        shapes |= {"embeddings.patch_embedding.weight": (c, 3, PATCH, PATCH), "embeddings.patch_embedding.bias": (c,),
                   "embeddings.position_embedding.weight": (grid * grid, c)}
    else:
        shapes |= {"embeddings.token_embedding.weight": (dims.vocab, c),
                   "embeddings.position_embedding.weight": (dims.context, c)}
    for i in range(dims.layers):
        layer = f"encoder.layers.{i}."
        for name in ("layer_norm1", "layer_norm2"):
            shapes |= {f"{layer}{name}.weight": (c,), f"{layer}{name}.bias": (c,)}
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            shapes |= {f"{layer}self_attn.{proj}.weight": (c, c), f"{layer}self_attn.{proj}.bias": (c,)}
        shapes |= {f"{layer}mlp.fc1.weight": (mlp, c), f"{layer}mlp.fc1.bias": (mlp,),
                   f"{layer}mlp.fc2.weight": (c, mlp), f"{layer}mlp.fc2.bias": (c,)}
    if tower == "vision":
        shapes |= {"post_layernorm.weight": (c,), "post_layernorm.bias": (c,), "head.probe": (1, 1, c),
                   "head.attention.in_proj_weight": (3 * c, c), "head.attention.in_proj_bias": (3 * c,),
                   "head.attention.out_proj.weight": (c, c), "head.attention.out_proj.bias": (c,),
                   "head.layernorm.weight": (c,), "head.layernorm.bias": (c,),
                   "head.mlp.fc1.weight": (mlp, c), "head.mlp.fc1.bias": (mlp,),
                   "head.mlp.fc2.weight": (c, mlp), "head.mlp.fc2.bias": (c,)}
    else:
        shapes |= {"final_layer_norm.weight": (c,), "final_layer_norm.bias": (c,), "head.weight": (c, c),
                   "head.bias": (c,)}
    return shapes


# The authors' operation orders (configs_RSRefSeg2/rrsisd_infer.py), which also name the prompter's modules.
TEXT_ORDER = ["self_attn_query_query1", "norm_query1_1", "self_attn_query_query2", "norm_query2_1",
              "cross_attn_query_text_query1_text", "norm_query1_2", "mlp_query1_2", "norm_query1_3",
              "cross_attn_query_text_query2_text", "norm_query2_2", "mlp_query2_2", "norm_query2_3",
              "cross_attn_query_query_query1_query2", "norm_query1_4", "mlp_query1_3", "norm_query1_5",
              "cross_attn_query_query_query2_query1", "norm_query2_4", "mlp_query2_3", "norm_query2_5"]
Q1_IMAGE_ORDER = ["self_attn_text_text_1", "norm_text_1", "cross_attn_img_text_1", "norm_img_1", "mlp_img_1",
                  "norm_img_2"]
PROMPT_ORDER = ["self_attn_text_1", "norm_text_1", "cross_attn_img_text_1", "norm_img_1", "mlp_img_1", "norm_img_2",
                "self_attn_prompt_1", "norm_prompt_1", "cross_attn_prompt_text_1", "norm_prompt_2", "mlp_prompt_2",
                "norm_prompt_3", "cross_attn_prompt_img_1", "norm_prompt_4", "mlp_prompt_3", "norm_prompt_5"]
BLOCKS = {"two_queries_text_attn_layers": TEXT_ORDER, "queries1_to_img_attn_layers": Q1_IMAGE_ORDER,
          "prompt_queries2_img_attn_layers": PROMPT_ORDER}


def _stream_width(op: str, c: int, p: int) -> tuple[int, int]:
    """(query width, key/value width) of an op of the authors' prompter."""
    if "prompt_text" in op or "prompt_img" in op:
        return p, c
    return (p, p) if "prompt" in op else (c, c)


def _prompter_shapes(cfg: ModelConfig, dims: Dims) -> dict[str, tuple[int, ...]]:
    c, grid, p, a, m = dims.width, dims.grid, cfg.sam.prompt_embed_dim, cfg.prompter.attn_dim, cfg.prompter.mlp_dim
    k, n = cfg.prompter.num_queries, cfg.prompter.num_prompts
    shapes = {"text_query_pe_embedding1": (k, c), "text_query_pe_embedding2": (k, c), "img_pe": (1, c, grid, grid),
              "prompt_pe_embedding": (n, p), "prompt_embedding": (n, p),
              "sparse_prompt_mlp.layers.0.weight": (m, p), "sparse_prompt_mlp.layers.0.bias": (m,),
              "sparse_prompt_mlp.layers.1.weight": (p, m), "sparse_prompt_mlp.layers.1.bias": (p,),
              "dense_prompt_conv.0.weight": (c // 2, c, 3, 3), "dense_prompt_conv.0.bias": (c // 2,),
              "dense_prompt_conv.1.weight": (c // 2,), "dense_prompt_conv.1.bias": (c // 2,),
              "dense_prompt_conv.1.running_mean": (c // 2,), "dense_prompt_conv.1.running_var": (c // 2,),
              "dense_prompt_conv.1.num_batches_tracked": (), "dense_prompt_conv.3.weight": (c, c // 2, 3, 3),
              "dense_prompt_conv.3.bias": (c,)}
    for block, order in BLOCKS.items():
        for i in range(2):
            for op in order:
                q, kv = _stream_width(op, c, p)
                name = f"{block}.{i}.{op}"
                if "attn" in op:
                    shapes |= {f"{name}.q_proj.weight": (a, q), f"{name}.q_proj.bias": (a,),
                               f"{name}.k_proj.weight": (a, kv), f"{name}.k_proj.bias": (a,),
                               f"{name}.v_proj.weight": (a, kv), f"{name}.v_proj.bias": (a,),
                               f"{name}.out_proj.weight": (q, a), f"{name}.out_proj.bias": (q,)}
                elif op.startswith("norm"):
                    shapes |= {f"{name}.weight": (q,), f"{name}.bias": (q,)}
                else:
                    shapes |= {f"{name}.layers.0.weight": (m, q), f"{name}.layers.0.bias": (m,),
                               f"{name}.layers.1.weight": (q, m), f"{name}.layers.1.bias": (q,)}
    return shapes


def _random(name: str, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    if name.endswith("num_batches_tracked"):
        return torch.tensor(7)
    if name.endswith("running_var"):
        return torch.rand(shape, generator=generator) + 0.5
    if re.search(r"(norm|layernorm|layer_norm\d|ln)\S*\.weight$|dense_prompt_conv\.1\.weight$", name):
        return 1 + 0.1 * torch.randn(shape, generator=generator)
    return 0.3 * torch.randn(shape, generator=generator)


LORA_SITES = {
    "clip_vision_encoder.base_model.model.model.": re.compile(
        r"encoder\.layers\.\d+\.self_attn\.(q|k|v|out)_proj|head\.(attention\.out_proj|mlp\.fc[12])"),
    "clip_text_encoder.base_model.model.model.": re.compile(
        r"encoder\.layers\.\d+\.self_attn\.(q|k|v|out)_proj|head"),
    "backbone.model.image_encoder.base_model.model.": re.compile(
        r"trunk\.blocks\.\d+\.attn\.(qkv|proj)|neck\.convs\.\d+\.conv"),
}


def authors_shapes(cfg: ModelConfig, dims: Dims = Dims()) -> dict[str, tuple[int, ...]]:
    """Every key of an authors'-layout file before PEFT wrapping, with its shape."""
    shapes: dict[str, tuple[int, ...]] = {}
    shapes |= {f"clip_vision_encoder.base_model.model.model.{k}": v for k, v in _siglip_shapes("vision", dims).items()}
    shapes |= {f"clip_text_encoder.base_model.model.model.{k}": v for k, v in _siglip_shapes("text", dims).items()}
    shapes |= {f"clip_text_encoder.base_model.model.{k}": (1,) for k in ("logit_scale", "logit_bias")}
    for part, module in build_sam2_parts(cfg.sam, cfg.input_size).items():
        if isinstance(module, torch.nn.Parameter):  # no_mem_embed
            shapes[f"backbone.model.{part}"] = tuple(module.shape)
            continue
        prefix = ("backbone.model.image_encoder.base_model.model." if part == "image_encoder"
                  else f"backbone.model.{part}.")
        shapes |= {prefix + k: tuple(v.shape) for k, v in module.state_dict().items()}
    shapes |= {f"prompter.{k}": v for k, v in _prompter_shapes(cfg, dims).items()}
    shapes |= {f"decode_head.{k}": () for k in ("logit_scale1", "logit_scale2", "logit_bias1", "logit_bias2")}
    return shapes


def authors_layout(cfg: ModelConfig, dims: Dims = Dims(), rank: int = RANK) -> dict[str, tuple[int, ...]]:
    """Every key of an authors' file, PEFT-wrapped at the LoRA sites, with its shape."""
    layout: dict[str, tuple[int, ...]] = {}
    for name, shape in authors_shapes(cfg, dims).items():
        prefix = next((p for p in LORA_SITES if name.startswith(p)), None)
        module, _, tensor = name[len(prefix or ""):].rpartition(".")
        if prefix is None or not LORA_SITES[prefix].fullmatch(module):
            layout[name] = shape
            continue
        layout[f"{prefix}{module}.base_layer.{tensor}"] = shape
        if tensor == "weight":
            tail = (1, 1) if len(shape) == 4 else ()
            layout[f"{prefix}{module}.lora_A.default.weight"] = (rank, shape[1], *tail)
            layout[f"{prefix}{module}.lora_B.default.weight"] = (shape[0], rank, *tail)
    return layout


def authors_state(cfg: ModelConfig, seed: int = 0) -> dict[str, torch.Tensor]:
    """A random tiny ``state_dict`` in the authors' layout (bf16 like the released files; nonzero LoRA B)."""
    generator = torch.Generator().manual_seed(seed)
    state = {key: 0.3 * torch.randn(shape, generator=generator) if ".lora_" in key else
             _random(key, shape, generator) for key, shape in authors_layout(cfg).items()}
    return {k: v if v.dtype == torch.int64 else v.to(torch.bfloat16) for k, v in state.items()}


def merged(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The tensors under ``prefix`` with LoRA merged at scale 1 (W + B·A), float32, under the plain names."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if not key.startswith(prefix) or ".lora_" in key:
            continue
        name = key[len(prefix):].replace(".base_layer.", ".")
        tensor = value.float() if value.dtype != torch.int64 else value
        if ".base_layer.weight" in key:
            a = state[key.replace(".base_layer.weight", ".lora_A.default.weight")].float()
            b = state[key.replace(".base_layer.weight", ".lora_B.default.weight")].float()
            delta = b.flatten(1) @ a.flatten(1)
            tensor = tensor + delta.reshape(tensor.shape)
        out[name] = tensor
    return out
