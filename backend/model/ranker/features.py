"""Candidate objects of one mask and what a ranker reads of each: the connected components of the thresholded
low-resolution mask and their geometry.

A referring phrase names one object, but a mask often lights up several (the named building and a similar one).
``ranker.ComponentRanker`` chooses among them with the phrase in view. It reads where each candidate lies, how
large it is and how sure the mask is of it, not the image features inside it: with those, a ranker trained on
12 000 synthetic phrases learnt its training scenes rather than a rule (held-out choice IoU 44.8 with them,
49.5 without; benchmarks/RESULTS.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage

# Features per candidate (see ``_geometry``), and those a ranker with ``relations`` (``_relations``) and with
# ``subjects`` (``_subject``) adds.
FEATURES = 10
RELATION_FEATURES = 8
SUBJECT_FEATURES = 3


def feature_count(relations: bool, subjects: bool = False) -> int:
    """Features per candidate: the geometry, plus the relational and the subject ones when asked for."""
    return FEATURES + (RELATION_FEATURES if relations else 0) + (SUBJECT_FEATURES if subjects else 0)


@dataclass
class Candidates:
    """The candidates of a batch of masks, padded to the largest count K.

    Attributes:
        labels: B×D×D int64, 0 = background, k + 1 = candidate k (at most ``max_candidates``).
        features: B×K×F per-candidate features (F = ``feature_count``), zeros where padded.
        valid: B×K bool, True for a real candidate.
    """

    labels: torch.Tensor
    features: torch.Tensor
    valid: torch.Tensor


def label_components(probs: np.ndarray, threshold: float, max_candidates: int, close_gaps: int = 0) -> np.ndarray:
    """8-connected components of ``probs > threshold``, numbered by decreasing probability mass.

    Args:
        probs: D×D probabilities.
        threshold: foreground is strictly above it.
        max_candidates: components beyond this many (the least massive) are dropped (label 0).
        close_gaps: first close the foreground with a 3×3 square this many times (0: not at all), so that the
            fragments of one weakly drawn object, up to about twice this many pixels apart, and the gaps between
            them form one candidate.

    Returns:
        D×D int64 labels, 0 = background, 1 = the most massive component.
    """
    square = np.ones((3, 3), bool)
    foreground = probs > threshold
    if close_gaps > 0:
        # Padded so that closing does not erode at the border (scipy treats outside as background).
        padded = np.pad(foreground, close_gaps)
        closed = ndimage.binary_closing(padded, square, iterations=close_gaps)
        foreground |= closed[close_gaps:-close_gaps, close_gaps:-close_gaps]
    labels, count = ndimage.label(foreground, structure=square)
    if count == 0:
        return labels.astype(np.int64)
    mass = ndimage.sum_labels(probs, labels, index=np.arange(1, count + 1))
    order = np.argsort(-mass, kind="stable")[:max_candidates]
    remap = np.zeros(count + 1, np.int64)
    remap[order + 1] = np.arange(1, len(order) + 1)
    return remap[labels]


def _geometry(onehot: torch.Tensor, probs: torch.Tensor, valid_frac: tuple[float, float]) -> torch.Tensor:
    """K×FEATURES geometry of K×D×D candidate masks over D×D ``probs``.

    Centre x, y and width, height as fractions of the image (the unpadded part of the input, ``valid_frac`` of
    the square), log area fraction, mean and max probability, share of the total probability mass, rank by mass
    scaled to [0, 1], and the candidate count / 16.
    """
    k, d, _ = onehot.shape
    vh, vw = valid_frac
    grid = (torch.arange(d, dtype=probs.dtype, device=probs.device) + 0.5) / d
    area = onehot.flatten(1).sum(dim=1).clamp(min=1)
    rows, cols = onehot.any(dim=2), onehot.any(dim=1)
    cy = (onehot.sum(dim=2) * grid).sum(dim=1) / area / vh
    cx = (onehot.sum(dim=1) * grid).sum(dim=1) / area / vw
    height = rows.sum(dim=1) / d / vh
    width = cols.sum(dim=1) / d / vw
    inside = onehot * probs
    mass = inside.flatten(1).sum(dim=1)
    mean = mass / area
    peak = inside.flatten(1).amax(dim=1)
    log_area = torch.log(area / (d * d * vh * vw))
    rank = torch.arange(k, dtype=probs.dtype, device=probs.device) / max(k - 1, 1)
    count = torch.full_like(mean, k / 16)
    return torch.stack([cx, cy, width, height, log_area, mean, peak, mass / mass.sum().clamp(min=1e-6), rank,
                        count], dim=1)


def _relations(onehot: np.ndarray, anchor: np.ndarray | None, valid_frac: tuple[float, float]) -> np.ndarray:
    """K×RELATION_FEATURES: how K×D×D candidates relate to each other and to the anchor's D×D bool mask.

    Rank by area (largest 0, scaled to [0, 1]); then, when there is an anchor: 1, the share of the candidate
    inside the anchor, the shortest distance from the candidate to the anchor and the distance between their
    centres (fractions of the image's longer side), the rank of the shortest distance among the candidates
    (nearest 0, scaled to [0, 1]), and the centre offset x, y from the anchor's centre (fractions of the
    image's width and height). Without an anchor those seven are 0.
    """
    k, d, _ = onehot.shape
    out = np.zeros((k, RELATION_FEATURES), np.float32)
    scale = max(k - 1, 1)
    area = onehot.reshape(k, -1).sum(axis=1)
    out[np.argsort(-area, kind="stable"), 0] = np.arange(k) / scale
    if anchor is None or not anchor.any():
        return out
    vh, vw = valid_frac
    side = d * max(vh, vw)
    to_anchor = ndimage.distance_transform_edt(~anchor)
    ay, ax = (np.nonzero(anchor)[i].mean() for i in (0, 1))
    for i, member in enumerate(onehot):
        ys, xs = np.nonzero(member)
        out[i, 1] = 1.0
        out[i, 2] = anchor[member].mean()
        out[i, 3] = to_anchor[member].min() / side
        out[i, 4] = np.hypot(ys.mean() - ay, xs.mean() - ax) / side
        out[i, 6] = (xs.mean() - ax) / (d * vw)
        out[i, 7] = (ys.mean() - ay) / (d * vh)
    out[np.argsort(out[:, 3], kind="stable"), 5] = np.arange(k) / scale
    return out


def _subject(onehot: torch.Tensor, subject: torch.Tensor | None) -> torch.Tensor:
    """K×SUBJECT_FEATURES: 1, and the mean and highest probability inside each of K×D×D candidates of the D×D
    mask of the phrase's subject ("the tank" of "the tank closest to the right edge"); zeros without one."""
    k = onehot.shape[0]
    if subject is None:
        return onehot.new_zeros(k, SUBJECT_FEATURES)
    inside = onehot * subject.to(onehot)
    area = onehot.flatten(1).sum(dim=1).clamp(min=1)
    return torch.stack([torch.ones_like(area), inside.flatten(1).sum(dim=1) / area, inside.flatten(1).amax(dim=1)],
                       dim=1)


def candidate_features(mask_logits: torch.Tensor, valid_frac: tuple[float, float], *, threshold: float = 0.5,
                       max_candidates: int = 16, close_gaps: int = 0, relations: bool = False,
                       anchors: list[torch.Tensor | None] | None = None, subjects: bool = False,
                       subject_probs: list[torch.Tensor | None] | None = None) -> Candidates:
    """Candidates and their features for a batch of masks.

    Args:
        mask_logits: B×1×D×D low-resolution mask logits in the model-input frame.
        valid_frac: (height, width) of the image as fractions of the padded square input.
        threshold: foreground probability threshold.
        max_candidates: at most this many candidates per mask, the most massive.
        close_gaps: closing iterations before the components are found (``label_components``).
        relations: add the relational features (``_relations``) to the geometry.
        anchors: per mask, the D×D probabilities of its phrase's anchor (``relation_anchor``) in the same
            frame, or None where the phrase has none; None: no phrase has one.
        subjects: add the subject features (``_subject``).
        subject_probs: per mask, the D×D probabilities of its phrase's subject (``relation_subject``), or None
            where the phrase is its own subject; None: every phrase is.

    Returns:
        ``Candidates`` with K = the largest count in the batch (at least 1).
    """
    probs = torch.sigmoid(mask_logits.detach().float())[:, 0]
    labels = torch.stack([torch.from_numpy(label_components(p.cpu().numpy(), threshold, max_candidates,
                                                            close_gaps))
                          for p in probs]).to(probs.device)
    k = max(int(labels.max()), 1)
    ids = torch.arange(1, k + 1, device=probs.device)
    onehot = (labels[:, None] == ids[None, :, None, None]).float()  # B×K×D×D, one mask per candidate slot
    features = torch.stack([_geometry(masks, p, valid_frac) for masks, p in zip(onehot, probs, strict=True)])
    if relations:
        anchors = anchors if anchors is not None else [None] * len(labels)
        related = np.zeros((len(labels), k, RELATION_FEATURES), np.float32)
        for i, (masks, anchor) in enumerate(zip(onehot.bool().cpu().numpy(), anchors, strict=True)):
            count = int(labels[i].max())
            if count:
                related[i, :count] = _relations(masks[:count],
                                                None if anchor is None else anchor.float().cpu().numpy() > 0.5,
                                                valid_frac)
        features = torch.cat([features, torch.from_numpy(related).to(features)], dim=2)
    if subjects:
        subject_probs = subject_probs if subject_probs is not None else [None] * len(labels)
        subject = torch.stack([_subject(masks, probs_s) for masks, probs_s in zip(onehot, subject_probs, strict=True)])
        features = torch.cat([features, subject], dim=2)
    valid = ids[None] <= labels.flatten(1).amax(dim=1)[:, None]
    features = features * valid[..., None]
    return Candidates(labels=labels, features=features, valid=valid)
