"""RSRefSeg (v1)'s prompter: global and local text filters over CLIP features → SAM prompts (METHOD.md §3)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .v2 import PrompterOutput


def _conv_bn_gelu(c_in: int, c_out: int, kernel: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2),
                         nn.BatchNorm2d(c_out), nn.GELU())


class TextFilterPrompter(nn.Module):
    """Text-filtered CLIP features → a conv pyramid → ceil(ceil(g/2)/2)² sparse tokens (49 for g = 27).

    The dense prompt is the global text–patch logit map (before the sigmoid) upsampled to D×D.
    """

    def __init__(self, *, dim: int, hidden_dim: int, prompt_dim: int, mask_size: int) -> None:
        """Args:
            dim: C, CLIP joint width.
            hidden_dim: conv width (256 in the method; the method's value equals SAM's prompt width).
            prompt_dim: Cp, SAM's prompt width (also the width of SAM's positional encoding).
            mask_size: D, side of the dense prompt.
        """
        super().__init__()
        self.mask_size = mask_size
        self.reduce = _conv_bn_gelu(3 * dim, prompt_dim, 1, 1)
        self.down = nn.Sequential(_conv_bn_gelu(prompt_dim, hidden_dim, 3, 2),
                                  _conv_bn_gelu(hidden_dim, hidden_dim, 3, 2))
        self.out = nn.Conv2d(hidden_dim, prompt_dim, 1)

    def forward(self, image: torch.Tensor, text_tokens: torch.Tensor, text_pooled: torch.Tensor,
                logit_scale: torch.Tensor, logit_bias: torch.Tensor, grid_pe: torch.Tensor) -> PrompterOutput:
        """Args:
            image: B×C×g×g CLIP patch features v.
            text_tokens: B×L×C text tokens t_i (padding included, as in the method).
            text_pooled: B×C pooled text g.
            logit_scale, logit_bias: CLIP's scalars s, b (frozen in v1).
            grid_pe: Cp×g×g SAM's random-Fourier PE at cell centres (i + 0.5) / g.

        Returns:
            sparse B×N×Cp (N = ceil(ceil(g/2)/2)²) and dense B×1×D×D logits; no q1/q2.
        """
        v_hat = F.normalize(image, dim=1)
        scale = logit_scale.exp()
        local = torch.einsum("bchw,blc->blhw", v_hat, F.normalize(text_tokens, dim=-1)) * scale + logit_bias
        f_loc = (image + image * torch.sigmoid(local).mean(dim=1, keepdim=True)) / 2
        global_logits = (torch.einsum("bchw,bc->bhw", v_hat, F.normalize(text_pooled, dim=-1)) * scale
                         + logit_bias)[:, None]
        f_glob = torch.sigmoid(global_logits) * image
        x = self.reduce(torch.cat([f_loc, f_glob, image], dim=1)) + grid_pe[None]
        sparse = self.out(self.down(x)).flatten(2).transpose(1, 2)
        dense = F.interpolate(global_logits, size=(self.mask_size, self.mask_size), mode="bilinear",
                              align_corners=False)
        return PrompterOutput(sparse=sparse, dense=dense)
