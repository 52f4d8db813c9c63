"""Token-level forward passes through open_clip's towers (what ``encode_image``/``encode_text`` pool away).

Two vision tower kinds are supported: open_clip's native ``VisionTransformer`` (CLIP ViT-B/16, the tiny test
config) and ``TimmModel`` wrapping a timm ViT (the SigLIP/SigLIP2 models). Text towers are either the CLIP
layout (text modules on the model itself) or ``CustomTextCLIP.text`` (SigLIP).

``clear_last_block=True`` runs the last vision block the ClearCLIP way (Lan et al., ECCV 2024): query–query
self-attention, with the residual connection and the feed-forward network removed. It is training-free and
makes CLIP's patch tokens spatially discriminative enough for zero-shot text–patch similarity.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from open_clip.transformer import text_global_pool
from torch import nn


def _qq_attention(q: torch.Tensor, v: torch.Tensor, heads: int) -> torch.Tensor:
    """q–q attention. Args: q, v: B×L×C. Returns: B×L×C."""
    b, n, c = q.shape
    q = q.reshape(b, n, heads, c // heads).transpose(1, 2)
    v = v.reshape(b, n, heads, c // heads).transpose(1, 2)
    out = F.scaled_dot_product_attention(q, q, v)
    return out.transpose(1, 2).reshape(b, n, c)


def _clear_native_block(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """ClearCLIP on an open_clip ``ResidualAttentionBlock`` (nn.MultiheadAttention). x: B×L×W → B×L×W."""
    attn: nn.MultiheadAttention = block.attn
    q, _, v = F.linear(block.ln_1(x), attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)
    return attn.out_proj(_qq_attention(q, v, attn.num_heads))


def _clear_timm_block(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """ClearCLIP on a timm ViT ``Block``. x: B×L×W → B×L×W."""
    attn = block.attn
    b, n, c = x.shape
    q, _, v = attn.qkv(block.norm1(x)).chunk(3, dim=-1)
    heads = attn.num_heads
    q = attn.q_norm(q.reshape(b, n, heads, c // heads)).reshape(b, n, c)
    return attn.proj(_qq_attention(q, v, heads))


def _resized_native_pos(visual: nn.Module, grid: int) -> torch.Tensor:
    """open_clip's (1+g0²)×W positional embedding resized bicubically to (1+grid²)×W."""
    pos = visual.positional_embedding
    cls_pos, patch_pos = pos[:1], pos[1:]
    g0 = int(round(patch_pos.shape[0] ** 0.5))
    if g0 == grid:
        return pos
    patch_pos = patch_pos.reshape(1, g0, g0, -1).permute(0, 3, 1, 2)
    patch_pos = F.interpolate(patch_pos, size=(grid, grid), mode="bicubic", align_corners=False)
    return torch.cat([cls_pos, patch_pos.permute(0, 2, 3, 1).reshape(grid * grid, -1)], dim=0)


def native_vision_tokens(visual: nn.Module, images: torch.Tensor, clear_last_block: bool) -> torch.Tensor:
    """Patch tokens of open_clip's ``VisionTransformer`` after ``ln_post`` and the projection.

    Args:
        visual: ``model.visual``.
        images: B×3×S×S normalised.
        clear_last_block: run the last block the ClearCLIP way.

    Returns:
        B×g²×C tokens in the joint space (C = embed_dim).
    """
    if getattr(visual, "attn_pool", None) is not None:
        raise ValueError("open_clip vision towers with attentional pooling (CoCa) are not supported")
    x = visual.conv1(images)
    grid = x.shape[-1]
    x = x.flatten(2).transpose(1, 2)
    cls = visual.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
    x = torch.cat([cls, x], dim=1) + _resized_native_pos(visual, grid).to(x.dtype)
    x = visual.ln_pre(x)
    blocks = visual.transformer.resblocks
    batch_first = getattr(visual.transformer, "batch_first", True)
    x = x if batch_first else x.transpose(0, 1)
    for block in blocks[:-1]:
        x = block(x)
    x = x if batch_first else x.transpose(0, 1)
    x = _clear_native_block(blocks[-1], x) if clear_last_block else _run_block(blocks[-1], x, batch_first)
    x = visual.ln_post(x)[:, 1:]
    return x @ visual.proj if visual.proj is not None else x


def _run_block(block: nn.Module, x: torch.Tensor, batch_first: bool) -> torch.Tensor:
    return block(x) if batch_first else block(x.transpose(0, 1)).transpose(0, 1)


def timm_vision_tokens(visual: nn.Module, images: torch.Tensor, clear_last_block: bool) -> torch.Tensor:
    """Patch tokens of a timm ViT inside open_clip's ``TimmModel``, after the final norm.

    Args:
        visual: ``model.visual`` (a ``TimmModel``; its trunk's input size must equal the image size).
        images: B×3×S×S normalised.
        clear_last_block: run the last block the ClearCLIP way.

    Returns:
        B×g²×C tokens (SigLIP: the post-LN ``last_hidden_state`` patch tokens, C = width = embed_dim).
    """
    trunk = visual.trunk
    x = trunk.norm_pre(trunk.patch_drop(trunk._pos_embed(trunk.patch_embed(images))))
    for block in trunk.blocks[:-1]:
        x = block(x)
    x = _clear_timm_block(trunk.blocks[-1], x) if clear_last_block else trunk.blocks[-1](x)
    return trunk.norm(x)[:, trunk.num_prefix_tokens:]


def word_embeddings(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    """What the text tower reads before any attention: each token's embedding plus its position embedding.

    Args:
        model: an open_clip ``CLIP`` or ``CustomTextCLIP``.
        ids: B×L token ids.

    Returns:
        B×L×W context-free word features (W the text tower's width).
    """
    tower = getattr(model, "text", model)
    length = ids.shape[1]
    return tower.token_embedding(ids) + tower.positional_embedding[:length].to(tower.token_embedding.weight.dtype)


def text_tokens(model: nn.Module, ids: torch.Tensor, project_tokens: bool
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token and pooled text features.

    Args:
        model: an open_clip ``CLIP`` or ``CustomTextCLIP``.
        ids: B×L token ids (already trimmed to the longest sequence in the batch).
        project_tokens: pass tokens through the text projection too.

    Returns:
        (tokens B×L×C, pooled B×C): final-LN tokens (projected if asked) and the pooled, projected embedding.
    """
    tower = getattr(model, "text", model)
    if getattr(tower, "cls_emb", None) is not None or getattr(tower, "use_pad_mask", False):
        raise ValueError("open_clip text towers with a class token or padding mask (CoCa) are not supported")
    length = ids.shape[1]
    x = word_embeddings(model, ids)
    mask = tower.attn_mask
    x = tower.transformer(x, attn_mask=None if mask is None else mask[:length, :length])
    x = tower.ln_final(x)
    pool_type = getattr(tower, "pool_type", None) or getattr(model, "text_pool_type", "argmax")
    eos = getattr(tower, "eos_id", None) or getattr(model, "text_eos_id", None)
    pooled = text_global_pool(x, ids, pool_type=pool_type, eos_token_id=eos)
    proj = tower.text_projection

    def project(t: torch.Tensor) -> torch.Tensor:
        if proj is None:
            return t
        return proj(t) if isinstance(proj, nn.Module) else t @ proj

    return (project(x) if project_tokens else x), project(pooled)
