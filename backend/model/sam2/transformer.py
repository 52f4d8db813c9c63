"""SAM 2's two-way transformer: prompt tokens and image tokens attend to each other (Meta's names).

Same structure as SAM 1's, but the MLPs are named ``mlp.layers.N`` and attention runs through
``F.scaled_dot_product_attention`` (memory-efficient kernels on CUDA, plain maths on CPU and MPS).
"""

from __future__ import annotations

import torch
from torch import nn

from ..prompter.blocks import Attention as PrompterAttention
from .common import MLP


def _attention(*, embedding_dim: int, num_heads: int, downsample_rate: int = 1) -> nn.Module:
    """SAM 2's attention: the prompter's multi-head attention (same ``q/k/v/out_proj`` names as Meta's) with q, k
    and v projected to ``embedding_dim / downsample_rate``."""
    internal = embedding_dim // downsample_rate
    if internal % num_heads:
        raise ValueError(f"{num_heads} heads do not divide the attention width {internal}")
    return PrompterAttention(q_dim=embedding_dim, kv_dim=embedding_dim, attn_dim=internal, num_heads=num_heads)


class TwoWayAttentionBlock(nn.Module):
    """Token self-attention, tokens→image cross-attention, token MLP, image→tokens cross-attention (post-norm)."""

    def __init__(self, *, embedding_dim: int, num_heads: int, mlp_dim: int, attention_downsample_rate: int = 2,
                 skip_first_layer_pe: bool = False) -> None:
        """Args:
            embedding_dim, num_heads, mlp_dim: token width, heads and MLP hidden width.
            attention_downsample_rate: internal width divisor of the two cross-attentions.
            skip_first_layer_pe: the first block's self-attention replaces the tokens and adds no PE.
        """
        super().__init__()
        self.self_attn = _attention(embedding_dim=embedding_dim, num_heads=num_heads)
        self.norm1 = nn.LayerNorm(embedding_dim)
        self.cross_attn_token_to_image = _attention(embedding_dim=embedding_dim, num_heads=num_heads,
                                                   downsample_rate=attention_downsample_rate)
        self.norm2 = nn.LayerNorm(embedding_dim)
        self.mlp = MLP(input_dim=embedding_dim, hidden_dim=mlp_dim, output_dim=embedding_dim, num_layers=2)
        self.norm3 = nn.LayerNorm(embedding_dim)
        self.norm4 = nn.LayerNorm(embedding_dim)
        self.cross_attn_image_to_token = _attention(embedding_dim=embedding_dim, num_heads=num_heads,
                                                   downsample_rate=attention_downsample_rate)
        self.skip_first_layer_pe = skip_first_layer_pe

    def forward(self, queries: torch.Tensor, keys: torch.Tensor, query_pe: torch.Tensor, key_pe: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Args: queries, query_pe: B×N×C tokens; keys, key_pe: B×HW×C image. Returns: (queries, keys)."""
        if self.skip_first_layer_pe:
            queries = self.self_attn(q=queries, k=queries, v=queries)
        else:
            q = queries + query_pe
            queries = queries + self.self_attn(q=q, k=q, v=queries)
        queries = self.norm1(queries)
        q, k = queries + query_pe, keys + key_pe
        queries = self.norm2(queries + self.cross_attn_token_to_image(q=q, k=k, v=keys))
        queries = self.norm3(queries + self.mlp(queries))
        q = queries + query_pe
        keys = self.norm4(keys + self.cross_attn_image_to_token(q=k, k=q, v=queries))
        return queries, keys


class TwoWayTransformer(nn.Module):
    """``depth`` two-way blocks and a final tokens→image attention."""

    def __init__(self, *, depth: int, embedding_dim: int, num_heads: int, mlp_dim: int,
                 attention_downsample_rate: int = 2) -> None:
        """Args: as ``TwoWayAttentionBlock``; depth: number of blocks."""
        super().__init__()
        self.layers = nn.ModuleList(
            TwoWayAttentionBlock(embedding_dim=embedding_dim, num_heads=num_heads, mlp_dim=mlp_dim,
                                 attention_downsample_rate=attention_downsample_rate, skip_first_layer_pe=i == 0)
            for i in range(depth))
        self.final_attn_token_to_image = _attention(embedding_dim=embedding_dim, num_heads=num_heads,
                                                   downsample_rate=attention_downsample_rate)
        self.norm_final_attn = nn.LayerNorm(embedding_dim)

    def forward(self, image_embedding: torch.Tensor, image_pe: torch.Tensor, point_embedding: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Args:
            image_embedding: B×C×h×w.
            image_pe: B×C×h×w positional encoding of the image.
            point_embedding: B×N×C prompt tokens (also their positional encoding).

        Returns:
            (tokens B×N×C, image tokens B×hw×C).
        """
        keys = image_embedding.flatten(2).transpose(1, 2)
        key_pe = image_pe.flatten(2).transpose(1, 2)
        queries = point_embedding
        for layer in self.layers:
            queries, keys = layer(queries, keys, point_embedding, key_pe)
        q, k = queries + point_embedding, keys + key_pe
        queries = self.norm_final_attn(queries + self.final_attn_token_to_image(q=q, k=k, v=keys))
        return queries, keys
