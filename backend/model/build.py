"""``build_model``: one builder from a ``ModelConfig`` (like segment_anything's ``build_sam``, fed by JSON)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from .architectures.base import ReferringSegmenter
from .architectures.rsrefseg import RSRefSeg
from .architectures.rsrefseg2 import RSRefSeg2
from .clip.encoder import ClipDualEncoder, create_open_clip
from .config import ModelConfig, RankerConfig, Sam2Config
from .device import cast_weights_per_layer, low_precision_keys
from .prompter.v1 import TextFilterPrompter
from .prompter.v2 import CascadedPrompter
from .ranker.ranker import ComponentRanker
from .sam.head import SamHead, build_sam_parts
from .sam2 import Sam2Head, build_sam2_parts, load_sam2_weights
from .weight_io.base_weights import check_base_file, load_sam_weights, weight_record

AnySamHead = SamHead | Sam2Head


def _rsrefseg2(config: ModelConfig, clip_encoder: ClipDualEncoder, sam_head: AnySamHead) -> ReferringSegmenter:
    prompter = CascadedPrompter(cfg=config.prompter, dim=clip_encoder.embed_dim,
                                prompt_dim=config.sam.prompt_embed_dim, mask_size=config.mask_size)
    return RSRefSeg2(clip_encoder=clip_encoder, prompter=prompter, sam_head=sam_head, config=config)


def _rsrefseg(config: ModelConfig, clip_encoder: ClipDualEncoder, sam_head: AnySamHead) -> ReferringSegmenter:
    prompter = TextFilterPrompter(dim=clip_encoder.embed_dim, hidden_dim=config.prompter.hidden_dim,
                                  prompt_dim=config.sam.prompt_embed_dim, mask_size=config.mask_size)
    return RSRefSeg(clip_encoder=clip_encoder, prompter=prompter, sam_head=sam_head, config=config)


MODEL_REGISTRY: dict[str, Callable[[ModelConfig, ClipDualEncoder, AnySamHead], ReferringSegmenter]] = {
    "rsrefseg2": _rsrefseg2,
    "rsrefseg": _rsrefseg,
}


def build_ranker(cfg: RankerConfig, clip_encoder: ClipDualEncoder) -> ComponentRanker:
    """A candidate ranker sized for ``clip_encoder``'s text tower (``ranker.ComponentRanker``)."""
    return ComponentRanker(cfg=cfg, clip_dim=clip_encoder.embed_dim, word_dim=clip_encoder.word_dim,
                           context_length=clip_encoder.context_length)


def build_sam_head(config: ModelConfig, sam_weights: str | Path | None) -> AnySamHead:
    """The SAM head of ``config.sam``'s family (SAM 1 or SAM 2.1), base weights loaded before LoRA is added."""
    if isinstance(config.sam, Sam2Config):
        sam2_parts = build_sam2_parts(config.sam, config.input_size)
        if sam_weights is not None:
            load_sam2_weights(sam2_parts, sam_weights)
        return Sam2Head(**sam2_parts, cfg=config.sam)
    parts = build_sam_parts(config.sam, config.input_size)
    if sam_weights is not None:
        load_sam_weights(parts, sam_weights)
    return SamHead(**parts, cfg=config.sam)


def _real_constants(model: nn.Module) -> None:
    """Rebuild on the CPU the constants a meta-device build left empty: buffers that no state dict holds, so that
    no checkpoint can fill them (open_clip's causal text mask; our normalisation constants are made on the CPU)."""
    for module in model.modules():
        for name, buffer in list(module._buffers.items()):
            if buffer is None or not buffer.is_meta or name not in module._non_persistent_buffers_set:
                continue
            side = buffer.shape[-1]
            if name != "attn_mask" or buffer.shape != (side, side):
                raise RuntimeError(f"{type(module).__name__}.{name} cannot be rebuilt after a meta-device build")
            # open_clip's ``build_causal_mask``: -inf above the diagonal, 0 elsewhere.
            module._buffers[name] = torch.full((side, side), float("-inf"), device="cpu").triu_(1)


def build_model(config: ModelConfig, clip_weights: str | Path | None = None,
                sam_weights: str | Path | None = None) -> nn.Module:
    """Build the model of ``config``.

    Base weights are loaded from local files before the LoRA adapters are added; without files the base is
    randomly initialised. Initialisation is seeded by ``config.seed`` (without touching the global RNG), so
    two builds of one config are identical: a checkpoint of a random-base model reloads exactly.

    Args:
        config: the model config (``load_config``).
        clip_weights: local open_clip checkpoint, or None for random init.
        sam_weights: local SAM checkpoint (segment_anything ``.pth`` for SAM 1, Meta's ``.pt`` for SAM 2.1),
            or None for random init.

    Built under ``torch.device("meta")`` it allocates nothing but its four normalisation constants (CPU):
    ``checkpoint.io.load_model`` then assigns the checkpoint's tensors in place.

    Returns:
        The model (train mode, CPU), frozen weights in ``config.frozen_dtype``, each layer computing in fp32 or
        under autocast (``device.cast_weights_per_layer``), with ``base_weights`` recording the files' names and
        SHA-256.
    """
    if clip_weights is not None:  # open_clip reads it: refuse a damaged file or a general pickle first
        check_base_file("clip", clip_weights)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        clip_encoder = ClipDualEncoder(model=create_open_clip(config.clip, clip_weights), cfg=config.clip)
        model = MODEL_REGISTRY[config.arch](config, clip_encoder, build_sam_head(config, sam_weights))
        if config.ranker is not None:
            model.ranker = build_ranker(config.ranker, clip_encoder)
    if config.frozen_dtype == "bfloat16":
        low = low_precision_keys(model)
        for name, param in model.named_parameters():
            if name in low and not param.requires_grad and param.is_floating_point():
                param.data = param.data.to(torch.bfloat16)
    _real_constants(model)
    cast_weights_per_layer(model)
    model.base_weights = {"clip": weight_record(clip_weights), "sam": weight_record(sam_weights)}
    return model
