"""What the SAM 1 and SAM 2.1 heads share: a frozen, normalised image encoder and decoding through a prompt encoder.

A subclass holds its family's parts under the names of that family's checkpoints, says which module is its
prompt encoder (``prompt_module``) and how its mask decoder runs (``_decode``); decoding from the prompter's
prompts and from SAM's own box/point prompts is the same for both.
"""

from __future__ import annotations

import torch
from segment_anything.modeling import PromptEncoder
from torch import nn

from ..config import LoRAConfig
from ..lora import apply_lora


class PromptedMaskHead(nn.Module):
    """Base of ``SamHead`` and ``Sam2Head``; not built on its own."""

    image_encoder: nn.Module

    def _freeze_encoder(self, mean: tuple[float, float, float], std: tuple[float, float, float],
                        lora: LoRAConfig | None) -> None:
        """Freeze ``image_encoder``, register the pixel statistics (not saved) and wrap LoRA adapters if configured."""
        self.image_encoder.requires_grad_(False)
        self.register_buffer("pixel_mean", torch.tensor(mean, device="cpu").view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(std, device="cpu").view(1, 3, 1, 1), persistent=False)
        self.lora_names = [] if lora is None else apply_lora(self.image_encoder, lora.target, lora)

    @property
    def prompt_module(self) -> PromptEncoder:
        """The family's prompt encoder."""
        raise NotImplementedError

    def _decode(self, image_embeddings: torch.Tensor, sparse: torch.Tensor, dense: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """The family's mask decoder, single-mask output. Returns (mask_logits B×1×D×D, predicted IoU B)."""
        raise NotImplementedError

    def dense_pe(self, grid: int) -> torch.Tensor:
        """SAM's random-Fourier PE sampled at cell centres of a grid×grid lattice. Returns Cp×grid×grid."""
        return self.prompt_module.pe_layer((grid, grid))

    def decode(self, image_embeddings: torch.Tensor, sparse: torch.Tensor, dense_logits: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Decode with the prompter's prompts.

        Args:
            image_embeddings: ``encode_image``'s B×…×g×g output (or 1×…×g×g shared by all B prompts).
            sparse: B×N×Cp prompt tokens.
            dense_logits: B×1×D×D dense prompt (D = 4g), fed through SAM's mask-downscaling path.

        Returns:
            (mask_logits B×1×D×D, predicted IoU B).
        """
        _, dense = self.prompt_module(points=None, boxes=None, masks=dense_logits)
        return self._decode(image_embeddings, sparse, dense)

    def decode_with_box(self, image_embeddings: torch.Tensor, box: torch.Tensor | None,
                        point: torch.Tensor | None, mask_logits_prior: torch.Tensor | None
                        ) -> tuple[torch.Tensor, torch.Tensor]:
        """Decode with SAM's own prompt encoder (zero-shot mode and box refinement).

        Args:
            image_embeddings: ``encode_image``'s 1×…×g×g output.
            box: B×4 (x0, y0, x1, y1) in input-frame pixels, or None.
            point: B×2 (x, y) foreground point in input-frame pixels, or None.
            mask_logits_prior: B×1×D×D logits as SAM's mask input, or None.

        Returns:
            (mask_logits B×1×D×D, predicted IoU B).
        """
        points = None
        if point is not None:
            points = (point[:, None, :], torch.ones(point.shape[0], 1, device=point.device, dtype=torch.long))
        sparse, dense = self.prompt_module(points=points, boxes=box, masks=mask_logits_prior)
        return self._decode(image_embeddings, sparse, dense)

    def decode_with_clicks(self, image_embeddings: torch.Tensor, sparse: torch.Tensor, mask_logits: torch.Tensor,
                           points: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                           box: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Decode with the prompter's sparse tokens plus a user's points and box through SAM's prompt encoder.

        The point/box tokens are appended after the prompter's tokens; ``mask_logits`` (the phrase's dense
        prompt, or a previous answer's logits so that a click edits that answer) goes through SAM's
        mask-downscaling path as in ``decode``.

        Args:
            image_embeddings: ``encode_image``'s 1×…×g×g output.
            sparse: B×N×Cp prompt tokens from the prompter.
            mask_logits: B×1×D×D mask prompt (D = 4g).
            points: B×K×2 (x, y) in input-frame pixels, or None.
            labels: B×K int64, 1 = include, 0 = exclude (SAM's convention); with ``points``.
            box: B×4 (x0, y0, x1, y1) in input-frame pixels, or None.

        Returns:
            (mask_logits B×1×D×D, predicted IoU B).
        """
        if (points is None) != (labels is None):
            raise ValueError("points and labels go together")
        clicks = None if points is None else (points, labels)
        user, dense = self.prompt_module(points=clicks, boxes=box, masks=mask_logits)
        return self._decode(image_embeddings, torch.cat([sparse, user.to(sparse.dtype)], dim=1), dense)
