"""Hiera, SAM 2's hierarchical image trunk (Ryali et al. 2023; the "hieradet" variant SAM 2.1 ships).

Four stages of transformer blocks on a B×H×W×C token grid. The first block of every later stage doubles the
width and the heads and max-pools the queries 2×2, so the grid halves (stride 4 → 8 → 16 → 32). Blocks attend
inside non-overlapping windows (zero-padded to whole windows) except the ``global_att_blocks``. Positions: a
bicubic-resized background embedding plus a window embedding tiled over the stride-4 grid. Parameter names follow
Meta's SAM 2.1 checkpoints (``patch_embed.proj``, ``pos_embed``, ``pos_embed_window``, ``blocks.N.{norm1,attn.qkv,
attn.proj,norm2,mlp.layers.M,proj}``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .common import MLP

Q_STRIDE = 2  # query pooling at every stage change


def window_partition(x: torch.Tensor, window: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Split a grid into windows, zero-padding bottom/right to whole windows.

    Args: x: B×H×W×C. Returns: (B·nW × window × window × C, padded (Hp, Wp)).
    """
    b, h, w, c = x.shape
    pad_h, pad_w = -h % window, -w % window
    if pad_h or pad_w:
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    hp, wp = h + pad_h, w + pad_w
    x = x.view(b, hp // window, window, wp // window, window, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, window, window, c), (hp, wp)


def window_unpartition(windows: torch.Tensor, window: int, padded_hw: tuple[int, int],
                       hw: tuple[int, int]) -> torch.Tensor:
    """Inverse of ``window_partition``. Args: windows: B·nW×window×window×C. Returns: B×H×W×C (padding cut)."""
    (hp, wp), (h, w) = padded_hw, hw
    b = windows.shape[0] // ((hp // window) * (wp // window))
    x = windows.reshape(b, hp // window, wp // window, window, window, -1).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, hp, wp, -1)[:, :h, :w, :]


def pool_grid(x: torch.Tensor, pool: nn.Module) -> torch.Tensor:
    """2-D pooling of a channels-last grid. Args: x: B×H×W×C. Returns: B×H'×W'×C."""
    return pool(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


class MultiScaleAttention(nn.Module):
    """Multi-head self-attention whose queries are optionally pooled (the stage-change blocks)."""

    def __init__(self, *, dim: int, dim_out: int, num_heads: int, q_pool: nn.Module | None) -> None:
        """Args:
            dim, dim_out: input and output widths.
            num_heads: attention heads.
            q_pool: pooling applied to the queries' grid, or None.
        """
        super().__init__()
        self.num_heads = num_heads
        self.q_pool = q_pool
        self.qkv = nn.Linear(dim, 3 * dim_out)
        self.proj = nn.Linear(dim_out, dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x: B×H×W×dim. Returns: B×H'×W'×dim_out (H' = H / 2 with query pooling)."""
        b, h, w, _ = x.shape
        q, k, v = self.qkv(x).reshape(b, h * w, 3, self.num_heads, -1).unbind(2)  # each B×HW×heads×c
        if self.q_pool is not None:
            q = pool_grid(q.reshape(b, h, w, -1), self.q_pool)
            h, w = q.shape[1:3]
            q = q.reshape(b, h * w, self.num_heads, -1)
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        return self.proj(out.transpose(1, 2).reshape(b, h, w, -1))


class MultiScaleBlock(nn.Module):
    """Pre-norm transformer block: (windowed) attention with optional query pooling, then an MLP."""

    def __init__(self, *, dim: int, dim_out: int, num_heads: int, window_size: int, pool_queries: bool,
                 mlp_ratio: float = 4.0) -> None:
        """Args:
            dim, dim_out: input and output widths (they differ only at a stage change).
            num_heads: attention heads.
            window_size: window side for attention (0: global attention).
            pool_queries: max-pool queries and the shortcut 2×2 (a stage change).
            mlp_ratio: MLP hidden width / dim_out.
        """
        super().__init__()
        self.dim, self.dim_out = dim, dim_out
        self.window_size = window_size
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.pool = nn.MaxPool2d(kernel_size=Q_STRIDE, stride=Q_STRIDE) if pool_queries else None
        self.attn = MultiScaleAttention(dim=dim, dim_out=dim_out, num_heads=num_heads, q_pool=self.pool)
        self.norm2 = nn.LayerNorm(dim_out, eps=1e-6)
        self.mlp = MLP(input_dim=dim_out, hidden_dim=int(dim_out * mlp_ratio), output_dim=dim_out, num_layers=2,
                       activation=nn.GELU)
        if dim != dim_out:
            self.proj = nn.Linear(dim, dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x: B×H×W×dim. Returns: B×H'×W'×dim_out."""
        shortcut = x
        x = self.norm1(x)
        if self.dim != self.dim_out:
            shortcut = self.proj(x)
            if self.pool is not None:
                shortcut = pool_grid(shortcut, self.pool)
        window = self.window_size
        if window:
            x, padded_hw = window_partition(x, window)
        x = self.attn(x)
        if window:
            h, w = shortcut.shape[1:3]
            if self.pool is not None:  # the windows shrank with the pooled queries
                window //= Q_STRIDE
                padded_hw = (h + -h % window, w + -w % window)
            x = window_unpartition(x, window, padded_hw, (h, w))
        x = shortcut + x
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    """7×7 stride-4 convolution to tokens. Parameter ``proj`` as in Meta's checkpoints."""

    def __init__(self, *, embed_dim: int, in_chans: int = 3) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=7, stride=4, padding=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x: B×3×S×S. Returns: B×S/4×S/4×embed_dim (channels last)."""
        return self.proj(x).permute(0, 2, 3, 1)


class Hiera(nn.Module):
    """The trunk. Returns one feature map per stage."""

    def __init__(self, *, embed_dim: int, num_heads: int, stages: tuple[int, ...],
                 global_att_blocks: tuple[int, ...], window_spec: tuple[int, ...],
                 window_pos_embed_bkg_spatial_size: tuple[int, int]) -> None:
        """Args:
            embed_dim, num_heads: first-stage width and heads (both double at every stage change).
            stages: blocks per stage.
            global_att_blocks: blocks with global attention.
            window_spec: window side per stage. A stage's first block still uses the previous stage's window
                (on the grid before pooling), as in Meta's Hiera.
            window_pos_embed_bkg_spatial_size: side of the background positional embedding.
        """
        super().__init__()
        self.stage_ends = [sum(stages[:i + 1]) - 1 for i in range(len(stages))]
        self.patch_embed = PatchEmbed(embed_dim=embed_dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, embed_dim, *window_pos_embed_bkg_spatial_size))
        self.pos_embed_window = nn.Parameter(torch.zeros(1, embed_dim, window_spec[0], window_spec[0]))
        self.blocks = nn.ModuleList()
        dim, stage = embed_dim, 0
        for i in range(sum(stages)):
            window = 0 if i in global_att_blocks else window_spec[stage]
            stage_change = i - 1 in self.stage_ends
            dim_out = dim
            if stage_change:
                dim_out, num_heads, stage = 2 * dim, 2 * num_heads, stage + 1
            self.blocks.append(MultiScaleBlock(dim=dim, dim_out=dim_out, num_heads=num_heads, window_size=window,
                                               pool_queries=stage_change))
            dim = dim_out
        self.channel_list = [self.blocks[i].dim_out for i in reversed(self.stage_ends)]

    def position_embedding(self, hw: tuple[int, int]) -> torch.Tensor:
        """Background embedding resized to the grid plus the tiled window embedding. Returns 1×H×W×C."""
        pos = F.interpolate(self.pos_embed, size=hw, mode="bicubic")
        window = self.pos_embed_window
        pos = pos + window.tile(1, 1, hw[0] // window.shape[2], hw[1] // window.shape[3])
        return pos.permute(0, 2, 3, 1)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Args: images: B×3×S×S (normalised). Returns: 4 maps B×C_i×S/(4·2^i)×S/(4·2^i), finest first."""
        x = self.patch_embed(images)
        x = x + self.position_embedding(x.shape[1:3])
        outputs = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in self.stage_ends:
                outputs.append(x.permute(0, 3, 1, 2))
        return outputs
