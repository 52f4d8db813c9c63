"""Building blocks of the cascaded second-order prompter (METHOD.md §2).

Conventions everywhere: q, k and v are projected to an internal width (512, 8 heads), attention is
``scaled_dot_product_attention`` without dropout, out-projection returns to the query width; every attention
and MLP is residual and followed by its own LayerNorm (post-norm); positional embeddings are added to q and k,
never to v.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Attention(nn.Module):
    """Multi-head attention with separate q/k/v widths and an internal width ``attn_dim``."""

    def __init__(self, *, q_dim: int, kv_dim: int, attn_dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.q_proj = nn.Linear(q_dim, attn_dim)
        self.k_proj = nn.Linear(kv_dim, attn_dim)
        self.v_proj = nn.Linear(kv_dim, attn_dim)
        self.out_proj = nn.Linear(attn_dim, q_dim)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        return x.reshape(b, n, self.num_heads, c // self.num_heads).transpose(1, 2)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Args: q: B×Nq×q_dim; k, v: B×Nk×kv_dim. Returns: B×Nq×q_dim."""
        out = F.scaled_dot_product_attention(self._heads(self.q_proj(q)), self._heads(self.k_proj(k)),
                                             self._heads(self.v_proj(v)))
        b, _, n, _ = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(b, n, -1))


class MLP(nn.Module):
    """``Linear → GELU → Linear`` (dim → hidden → dim)."""

    def __init__(self, *, dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x: B×N×dim. Returns: B×N×dim."""
        return self.fc2(F.gelu(self.fc1(x)))


class AttnUpdate(nn.Module):
    """``x ← LN(x + Attn(x + pe, k, v))``, optionally followed by ``x ← LN(x + MLP(x))``."""

    def __init__(self, *, q_dim: int, kv_dim: int, attn_dim: int, num_heads: int, mlp_dim: int | None) -> None:
        """Args:
            q_dim, kv_dim: widths of the updated tokens and of the key/value tokens.
            attn_dim, num_heads: internal attention width and heads.
            mlp_dim: hidden width of the following MLP, or None for attention only.
        """
        super().__init__()
        self.attn = Attention(q_dim=q_dim, kv_dim=kv_dim, attn_dim=attn_dim, num_heads=num_heads)
        self.norm = nn.LayerNorm(q_dim)
        self.mlp = MLP(dim=q_dim, hidden_dim=mlp_dim) if mlp_dim is not None else None
        self.mlp_norm = nn.LayerNorm(q_dim) if mlp_dim is not None else None

    def forward(self, x: torch.Tensor, x_pe: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Args: x, x_pe: B×N×q_dim (or broadcastable PE); k: B×M×kv_dim (PE already added); v: B×M×kv_dim.

        Returns: the updated B×N×q_dim tokens.
        """
        x = self.norm(x + self.attn(x + x_pe, k, v))
        if self.mlp is not None:
            x = self.mlp_norm(x + self.mlp(x))
        return x


class TextDecompositionLayer(nn.Module):
    """Stage 0, one layer: two query sets exchange information with the text and with each other."""

    def __init__(self, *, dim: int, attn_dim: int, num_heads: int, mlp_dim: int) -> None:
        super().__init__()
        kw = {"q_dim": dim, "kv_dim": dim, "attn_dim": attn_dim, "num_heads": num_heads}
        self.self_q1 = AttnUpdate(**kw, mlp_dim=None)
        self.self_q2 = AttnUpdate(**kw, mlp_dim=None)
        self.text_q1 = AttnUpdate(**kw, mlp_dim=mlp_dim)
        self.text_q2 = AttnUpdate(**kw, mlp_dim=mlp_dim)
        self.q1_from_q2 = AttnUpdate(**kw, mlp_dim=mlp_dim)
        self.q2_from_q1 = AttnUpdate(**kw, mlp_dim=mlp_dim)

    def forward(self, q1: torch.Tensor, q2: torch.Tensor, pe1: torch.Tensor, pe2: torch.Tensor,
                text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Args: q1, q2: B×K×C; pe1, pe2: 1×K×C; text: B×L×C (no PE). Returns: updated (q1, q2)."""
        q1 = self.self_q1(q1, pe1, q1 + pe1, q1)
        q2 = self.self_q2(q2, pe2, q2 + pe2, q2)
        q1 = self.text_q1(q1, pe1, text, text)
        q2 = self.text_q2(q2, pe2, text, text)
        q1 = self.q1_from_q2(q1, pe1, q2 + pe2, q2)
        q2 = self.q2_from_q1(q2, pe2, q1 + pe1, q1)
        return q1, q2


class ActivationLayer(nn.Module):
    """Stage 1, one layer: the query set attends to itself, then image tokens attend to it (first order)."""

    def __init__(self, *, dim: int, attn_dim: int, num_heads: int, mlp_dim: int) -> None:
        super().__init__()
        kw = {"q_dim": dim, "kv_dim": dim, "attn_dim": attn_dim, "num_heads": num_heads}
        self.self_q = AttnUpdate(**kw, mlp_dim=None)
        self.image_from_q = AttnUpdate(**kw, mlp_dim=mlp_dim)

    def forward(self, q: torch.Tensor, pe_q: torch.Tensor, image: torch.Tensor, pe_image: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Args: q: B×K×C; pe_q: 1×K×C; image: B×N×C; pe_image: 1×N×C. Returns: updated (q, image)."""
        q = self.self_q(q, pe_q, q + pe_q, q)
        image = self.image_from_q(image, pe_image, q + pe_q, q)
        return q, image


class PromptLayer(nn.Module):
    """Stage 2, one layer: second-order activation of the image tokens, then prompt-token updates."""

    def __init__(self, *, dim: int, prompt_dim: int, attn_dim: int, num_heads: int, mlp_dim: int) -> None:
        super().__init__()
        self.activation = ActivationLayer(dim=dim, attn_dim=attn_dim, num_heads=num_heads, mlp_dim=mlp_dim)
        pkw = {"q_dim": prompt_dim, "attn_dim": attn_dim, "num_heads": num_heads}
        self.self_p = AttnUpdate(**pkw, kv_dim=prompt_dim, mlp_dim=None)
        self.p_from_q = AttnUpdate(**pkw, kv_dim=dim, mlp_dim=mlp_dim)
        self.p_from_image = AttnUpdate(**pkw, kv_dim=dim, mlp_dim=mlp_dim)

    def forward(self, q: torch.Tensor, pe_q: torch.Tensor, image: torch.Tensor, pe_image: torch.Tensor,
                prompts: torch.Tensor, pe_p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Args: q: B×K×C; image: B×N×C; prompts: B×P×Cp; pe_*: 1×…, matching.

        Returns: updated (q, image, prompts).
        """
        q, image = self.activation(q, pe_q, image, pe_image)
        prompts = self.self_p(prompts, pe_p, prompts + pe_p, prompts)
        prompts = self.p_from_q(prompts, pe_p, q + pe_q, q)
        prompts = self.p_from_image(prompts, pe_p, image + pe_image, image)
        return q, image, prompts
