"""RSRefSeg (v1): CLIP → global and local text filters → SAM (METHOD.md §3)."""

from __future__ import annotations

import torch

from ..prompter.v2 import PrompterOutput
from .base import ReferringSegmenter


class RSRefSeg(ReferringSegmenter):
    """Trains the prompter, SAM's prompt encoder and mask decoder and all LoRA adapters; CLIP's logit
    scale and bias stay frozen."""

    def prompt(self, clip_map: torch.Tensor, texts: list[str]) -> PrompterOutput:
        tokens, pooled, _ = self.clip_encoder.encode_text(texts)  # padding tokens included, as in the method
        grid_pe = self.sam_head.dense_pe(clip_map.shape[-1])
        return self.prompter(clip_map, tokens, pooled, self.clip_encoder.logit_scale,
                             self.clip_encoder.logit_bias, grid_pe)
