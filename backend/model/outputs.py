"""Data passed between the model, the predictor and the training loop."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class ImageEmbeddings:
    """Text-independent image features, cached per image by the predictor.

    Attributes:
        clip: B×C×g×g CLIP patch features.
        sam: B×Cp×gs×gs SAM image embeddings (SAM 2.1: B×4·Cp×gs×gs, the embedding and its two high-res skips
            packed losslessly, see ``sam2/head.py``).
    """

    clip: torch.Tensor
    sam: torch.Tensor

    def to(self, device: torch.device) -> ImageEmbeddings:
        return ImageEmbeddings(clip=self.clip.to(device), sam=self.sam.to(device))

    def select(self, index: torch.Tensor) -> ImageEmbeddings:
        """The embeddings of images ``index`` (B int64, repeats allowed), e.g. one per phrase of a batch that
        encoded each image once; gradients flow back to the shared encodings."""
        return ImageEmbeddings(clip=self.clip[index], sam=self.sam[index])


@dataclass
class RefSegOutput:
    """One referring-segmentation pass.

    Attributes:
        mask_logits: B×1×D×D low-resolution mask logits (D = 4 × SAM's embedding grid).
        scores: B confidence: mean probability inside the predicted mask (0 when the mask is empty).
        clip_patch: B×C×g×g raw CLIP patch map (the InfoNCE loss's image side).
        q1, q2: B×K×C decomposed text queries after stage 0 (RSRefSeg 2), None for RSRefSeg.
        iou_pred: B SAM's predicted IoU of the mask.
        sparse_prompt: B×P×Cp the prompter's sparse prompt tokens.
        dense_prompt: B×1×D×D the prompter's dense prompt logits (SAM's mask input).
    """

    mask_logits: torch.Tensor
    scores: torch.Tensor
    clip_patch: torch.Tensor
    q1: torch.Tensor | None = None
    q2: torch.Tensor | None = None
    iou_pred: torch.Tensor | None = None
    sparse_prompt: torch.Tensor | None = None
    dense_prompt: torch.Tensor | None = None


def mask_scores(mask_logits: torch.Tensor) -> torch.Tensor:
    """Mean foreground probability inside the thresholded mask. Args: B×1×H×W logits. Returns: B."""
    probs = torch.sigmoid(mask_logits.detach().float()).flatten(1)
    inside = probs > 0.5
    return (probs * inside).sum(dim=1) / inside.sum(dim=1).clamp(min=1)
