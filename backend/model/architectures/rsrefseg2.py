"""RSRefSeg 2: CLIP → cascaded second-order prompter → SAM (METHOD.md §1–§2)."""

from __future__ import annotations

import torch
from torch import nn

from ..clip.encoder import ClipDualEncoder
from ..config import ModelConfig
from ..prompter.v2 import PrompterOutput
from ..sam.mask_head import PromptedMaskHead
from .base import ReferringSegmenter


class RSRefSeg2(ReferringSegmenter):
    """Trains the prompter, SAM's prompt encoder and mask decoder, all LoRA adapters and CLIP's
    logit scale and bias (used by the dense prompt). Everything else is frozen."""

    def __init__(self, *, clip_encoder: ClipDualEncoder, prompter: nn.Module, sam_head: PromptedMaskHead,
                 config: ModelConfig) -> None:
        """Args: as ``ReferringSegmenter``; ``prompter`` is a ``CascadedPrompter``."""
        super().__init__(clip_encoder=clip_encoder, prompter=prompter, sam_head=sam_head, config=config)
        self.clip_encoder.logit_scale.requires_grad_(True)
        self.clip_encoder.logit_bias.requires_grad_(True)

    def prompt(self, clip_map: torch.Tensor, texts: list[str]) -> PrompterOutput:
        tokens, pooled, _ = self.clip_encoder.encode_text(texts)  # the method uses no key-padding mask
        return self.prompter(clip_map, tokens, pooled, self.clip_encoder.logit_scale,
                             self.clip_encoder.logit_bias)
