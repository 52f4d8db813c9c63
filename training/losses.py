"""Training losses of RSRefSeg 2 and RSRefSeg v1 (METHOD.md §4).

v2 total = 5·BCE + 5·Dice + 0.5·query decorrelation + 0.5·region–text InfoNCE; v1 total = 5·BCE. Ours, off
unless weighted: a distractor term for image-grouped batches (``distractor_loss``).

Label maps are B×S×S int64 at the model input size with {0, 1, 255}; 255 (padding) is ignored. The mask
logits (B×1×D×D) are upsampled bilinearly (``align_corners=False``) to S×S first.

- BCE follows mmseg's sigmoid cross-entropy: ignored pixels get weight 0 but still count in the mean's
  denominator (the mean is over all B·S·S pixels).
- Dice is the V-Net form per sample, 1 − 2Σpt / (Σp² + ε + Σt² + ε), ε = 1e-3, averaged over the batch.
  Unlike the authors' code, ignored pixels are masked out of all three sums (they only exist for non-square
  images, where the original would count padding as predicted background).
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from training.data.io import IGNORE_INDEX

DICE_EPS = 1e-3


def upsample_logits(logits: torch.Tensor, size: int) -> torch.Tensor:
    """B×1×D×D logits → B×S×S, bilinear, ``align_corners=False``."""
    return F.interpolate(logits.float(), size=(size, size), mode="bilinear", align_corners=False)[:, 0]


def bce_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """mmseg-style sigmoid BCE. logits B×S×S, labels B×S×S in {0, 1, 255}; mean over all pixels."""
    valid = (labels != IGNORE_INDEX).float()
    target = labels.clamp(max=1).float()
    per_pixel = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    return (per_pixel * valid).sum() / labels.numel()


def dice_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """V-Net Dice on sigmoid probabilities, ignored pixels masked. logits and labels B×S×S → scalar."""
    valid = (labels != IGNORE_INDEX).float()
    prob = torch.sigmoid(logits) * valid
    target = labels.clamp(max=1).float() * valid
    inter = (prob * target).flatten(1).sum(1)
    denom = (prob**2).flatten(1).sum(1) + DICE_EPS + (target**2).flatten(1).sum(1) + DICE_EPS
    return (1 - 2 * inter / denom).mean()


def distractor_loss(logits: torch.Tensor, labels: torch.Tensor, image_index: torch.Tensor) -> torch.Tensor:
    """Mean BCE towards 0 on the other phrases' objects of the same image, per phrase, averaged over phrases.

    In an image-grouped batch the targets of a phrase's siblings are objects the phrase does not name but that
    look like candidates (a referring model's typical error is the right kind of object in the wrong place). A
    whole-image BCE weighs those pixels like any background pixel; this term weighs each distractor object as
    much as a whole phrase, whatever its size.

    Args:
        logits: B×S×S mask logits at label resolution.
        labels: B×S×S in {0, 1, 255}.
        image_index: B int64, the image of each phrase (phrases with the same index share an image).

    Returns:
        Scalar: the mean over phrases that have distractor pixels (0 when none has).
    """
    target = (labels == 1).float()
    per_image = torch.zeros((int(image_index.max()) + 1, *target.shape[1:]), device=target.device)
    per_image.index_add_(0, image_index, target)
    others = ((per_image[image_index] - target) > 0) & (labels == 0)
    count = others.flatten(1).sum(1)
    has = count > 0
    if not bool(has.any()):
        return logits.sum() * 0.0
    per_phrase = (F.softplus(logits.float()) * others).flatten(1).sum(1) / count.clamp(min=1)
    return per_phrase[has].mean()


def decorrelation_loss(q1: torch.Tensor, q2: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of cos²(mean of Q1's tokens, mean of Q2's tokens). q1, q2: B×3×C."""
    return (F.cosine_similarity(q1.mean(1), q2.mean(1), dim=-1) ** 2).mean()


def gather_with_local_grad(x: torch.Tensor) -> torch.Tensor:
    """All-gather B×C features across ranks without gradient, with this rank's slice swapped back in (so its
    gradient flows). Returns the (world·B)×C tensor in rank order; ``x`` itself without a process group."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.detach().contiguous())
    parts[dist.get_rank()] = x
    return torch.cat(parts)


def region_text_features(clip_patch: torch.Tensor, labels: torch.Tensor, q2: torch.Tensor
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """L2-normalised region (image) and text features for InfoNCE.

    Args:
        clip_patch: B×C×g×g raw CLIP patch map.
        labels: B×S×S in {0, 1, 255} (255 counts as background here).
        q2: B×3×C decomposed text queries.

    Returns:
        (B×C region features, B×C text features), both unit-norm.
    """
    if clip_patch.shape[1] != q2.shape[-1]:
        raise ValueError(f"InfoNCE needs the CLIP patch width ({clip_patch.shape[1]}) to equal the query width "
                         f"({q2.shape[-1]}); check the model config")
    grid = clip_patch.shape[-2:]
    target = (labels == 1).float()[:, None]
    small = F.interpolate(target, size=grid, mode="bilinear", align_corners=True) > 0.5
    region = (clip_patch.float() * small).flatten(2).mean(-1)
    return F.normalize(region, dim=-1), F.normalize(q2.float().mean(1), dim=-1)


class RefSegLoss(nn.Module):
    """The training loss of either architecture, with the InfoNCE head's own trainable scale and bias."""

    def __init__(self, *, arch: str = "rsrefseg2", bce_weight: float = 5.0, dice_weight: float = 5.0,
                 decorrelation_weight: float = 0.5, contrastive_weight: float = 0.5,
                 distractor_weight: float = 0.0) -> None:
        """
        Args:
            arch: "rsrefseg2" (all four terms) or "rsrefseg" (v1: BCE only).
            bce_weight, dice_weight, decorrelation_weight, contrastive_weight: term weights (METHOD.md §4).
            distractor_weight: weight of ``distractor_loss`` (either arch; applied only to image-grouped batches).
        """
        super().__init__()
        self.arch = arch
        self.bce_weight, self.dice_weight = bce_weight, dice_weight
        self.decorrelation_weight, self.contrastive_weight = decorrelation_weight, contrastive_weight
        self.distractor_weight = distractor_weight
        if arch not in ("rsrefseg2", "rsrefseg"):
            raise ValueError(f"unknown arch {arch!r}; expected 'rsrefseg2' or 'rsrefseg'")
        if arch == "rsrefseg2":  # v1 has no InfoNCE, so no head parameters (DDP would see them unused)
            self.logit_scale2 = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
            self.logit_bias2 = nn.Parameter(torch.tensor(math.log(0.5)))

    def contrastive(self, clip_patch: torch.Tensor, labels: torch.Tensor, q2: torch.Tensor) -> torch.Tensor:
        """Symmetric region–text InfoNCE over the whole gathered batch, halved.

        Every rank computes the same loss on the full (world·B)² logit matrix, as the authors do; only its own
        features carry gradient. (Cross-entropy over this rank's rows alone would, after DDP averages the
        gradients, weigh this term about world-size times more than the authors' run does.)
        """
        region, text = region_text_features(clip_patch, labels, q2)
        all_region, all_text = gather_with_local_grad(region), gather_with_local_grad(text)
        logits = self.logit_scale2.exp() * all_region @ all_text.T + self.logit_bias2  # region × text
        targets = torch.arange(logits.shape[0], device=logits.device)
        return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2

    def forward(self, output: object, labels: torch.Tensor,
                image_index: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """
        Args:
            output: the model's ``RefSegOutput`` (``mask_logits`` B×1×D×D; v2 also ``q1``, ``q2`` B×3×C and
                ``clip_patch`` B×C×g×g).
            labels: B×S×S int64 in {0, 1, 255}.
            image_index: B int64, the image of each phrase in an image-grouped batch (None: independent phrases,
                no distractor term).

        Returns:
            ``loss`` (the weighted total) and each weighted term (``bce``, ``dice``, ``decorrelation``,
            ``contrastive``, and ``distractor`` when weighted and grouped) as scalars.
        """
        logits = upsample_logits(output.mask_logits, labels.shape[-1])
        terms = {"bce": self.bce_weight * bce_loss(logits, labels)}
        if self.arch == "rsrefseg2":
            terms["dice"] = self.dice_weight * dice_loss(logits, labels)
            terms["decorrelation"] = self.decorrelation_weight * decorrelation_loss(output.q1, output.q2)
            terms["contrastive"] = self.contrastive_weight * self.contrastive(output.clip_patch, labels, output.q2)
        if self.distractor_weight and image_index is not None:
            terms["distractor"] = self.distractor_weight * distractor_loss(logits, labels, image_index)
        terms["loss"] = sum(terms.values())
        return terms
