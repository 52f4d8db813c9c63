"""SAM 2.1's image path (Hiera trunk, FPN neck, prompt encoder, mask decoder) with Meta's parameter names.

May import ``backend.model.config``, ``backend.model.weight_io`` (its loader), ``backend.model.sam`` (the shared
``PromptedMaskHead``) and ``backend.model.prompter.blocks`` (the attention it shares); never the architectures.
"""

from .head import Sam2Head, build_sam2_parts
from .weights import load_sam2_weights

__all__ = ["Sam2Head", "build_sam2_parts", "load_sam2_weights"]
