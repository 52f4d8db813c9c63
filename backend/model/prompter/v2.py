"""RSRefSeg 2's cascaded second-order prompter (METHOD.md §2), producing SAM's sparse and dense prompts."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..config import PrompterConfig
from .blocks import MLP, ActivationLayer, PromptLayer, TextDecompositionLayer
from .dense_cosine import upsampled_cosine


@dataclass
class PrompterOutput:
    """What a prompter hands to SAM (and to the losses).

    Attributes:
        sparse: B×N×Cp prompt tokens for SAM's mask decoder.
        dense: B×1×D×D dense prompt logits (SAM's mask input).
        q1, q2: B×K×C decomposed text queries after stage 0 (None for prompters without them).
    """

    sparse: torch.Tensor
    dense: torch.Tensor
    q1: torch.Tensor | None = None
    q2: torch.Tensor | None = None


class CascadedPrompter(nn.Module):
    """Text decomposition → first-order activation → second-order activation + prompt generation."""

    def __init__(self, *, cfg: PrompterConfig, dim: int, prompt_dim: int, mask_size: int) -> None:
        """Args:
            cfg: prompter sizes (attention width and heads, MLP width, query/prompt counts, depths, PE grid).
            dim: C, the CLIP joint width of patch and text tokens.
            prompt_dim: Cp, SAM's prompt embedding width.
            mask_size: D, the side of the dense prompt (4 × SAM's embedding grid).
        """
        super().__init__()
        kw = {"dim": dim, "attn_dim": cfg.attn_dim, "num_heads": cfg.num_heads, "mlp_dim": cfg.mlp_dim}
        self.num_queries = cfg.num_queries
        self.mask_size = mask_size
        self.query_pe1 = nn.Parameter(torch.randn(cfg.num_queries, dim))
        self.query_pe2 = nn.Parameter(torch.randn(cfg.num_queries, dim))
        self.image_pe = nn.Parameter(torch.randn(1, dim, cfg.pe_grid, cfg.pe_grid))
        self.prompts = nn.Parameter(torch.randn(cfg.num_prompts, prompt_dim))
        self.prompt_pe = nn.Parameter(torch.randn(cfg.num_prompts, prompt_dim))
        self.text_layers = nn.ModuleList(TextDecompositionLayer(**kw) for _ in range(cfg.text_layers))
        self.activation_layers = nn.ModuleList(ActivationLayer(**kw) for _ in range(cfg.activation_layers))
        self.prompt_layers = nn.ModuleList(PromptLayer(**kw, prompt_dim=prompt_dim) for _ in range(cfg.prompt_layers))
        self.sparse_head = MLP(dim=prompt_dim, hidden_dim=cfg.mlp_dim)
        self.dense_conv = nn.Sequential(
            nn.Conv2d(dim, dim // 2, 3, padding=1), nn.BatchNorm2d(dim // 2), nn.GELU(),
            nn.Conv2d(dim // 2, dim, 3, padding=1),
        )

    def _image_pe(self, grid: int) -> torch.Tensor:
        """The learned image PE at ``grid``² (bicubic when it differs). Returns 1×grid²×C."""
        pe = self.image_pe
        if pe.shape[-1] != grid:
            pe = F.interpolate(pe, size=(grid, grid), mode="bicubic", align_corners=False)
        return pe.flatten(2).transpose(1, 2)

    def forward(self, image: torch.Tensor, text_tokens: torch.Tensor, text_pooled: torch.Tensor,
                logit_scale: torch.Tensor, logit_bias: torch.Tensor) -> PrompterOutput:
        """Args:
            image: B×C×g×g CLIP patch features.
            text_tokens: B×L×C text tokens (no key-padding mask, as in the method).
            text_pooled: B×C pooled sentence embedding.
            logit_scale, logit_bias: CLIP's scalars (trainable in RSRefSeg 2).

        Returns:
            sparse B×P×Cp, dense B×1×D×D logits, q1 and q2 B×K×C (stage-0 outputs).
        """
        b, c, g, _ = image.shape
        q1 = F.adaptive_avg_pool1d(text_tokens.transpose(1, 2), self.num_queries).transpose(1, 2)
        q2 = q1
        pe1, pe2 = self.query_pe1[None], self.query_pe2[None]
        for layer in self.text_layers:
            q1, q2 = layer(q1, q2, pe1, pe2, text_tokens)
        decomposed = (q1, q2)

        v, v_pe = image.flatten(2).transpose(1, 2), self._image_pe(g)
        for layer in self.activation_layers:
            q1, v = layer(q1, pe1, v, v_pe)
        p, p_pe = self.prompts[None].expand(b, -1, -1), self.prompt_pe[None]
        for layer in self.prompt_layers:
            q2, v, p = layer(q2, pe2, v, v_pe, p, p_pe)
        sparse = self.sparse_head(p)

        # Bilinear upsampling to D² (align_corners=True), per-pixel L2 norm, cosine with the pooled text:
        # computed exactly at grid resolution (see dense_cosine) instead of materialising B×C×D×D.
        refined = self.dense_conv(v.transpose(1, 2).reshape(b, c, g, g))
        cosine = upsampled_cosine(refined, text_pooled, self.mask_size)
        dense = (cosine * logit_scale.exp() + logit_bias)[:, None]
        return PrompterOutput(sparse=sparse, dense=dense, q1=decomposed[0], q2=decomposed[1])
