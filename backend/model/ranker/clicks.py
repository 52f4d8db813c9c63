"""A user's include/exclude clicks applied to an answer through the candidates the answer was chosen from.

SAM's prompt encoder turns clicks into point tokens, but those tokens only mean something to a mask decoder that
was trained with clicks (SAM's and SAM 2.1's pretrained prompt encoders were; a model trained from random init on
the prompter's prompts alone, like the bundled demo, never saw a point token). So a click also acts on the
answer's candidates, the connected regions of the decoder's mask that the ranker compares: an include click draws
the candidate under it into the answer, an exclude click removes the candidate (and the answer's region) under it.
This is what a click means to a user whatever the decoder learnt, and it makes "the clicked object is out" hold for
every model.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .features import label_components

# An include click on no candidate takes the region around it where the decoder's probability is at least this.
INCLUDE_FLOOR = 0.1
# Logit margins: an included region is drawn this far above the answer threshold, an excluded one this far below.
INCLUDE_MARGIN = 1.0
EXCLUDE_LOGIT = -12.0
# How far (in ranker logits) a candidate the clicks rule out falls below the clicked one.
CLICK_RANK = 30.0


def click_cells(points: torch.Tensor, input_size: int, mask_size: int) -> list[tuple[int, int]]:
    """K×2 (x, y) input-frame pixels → the (row, col) cells of the D×D low-res mask they fall in (clipped)."""
    scale = mask_size / input_size
    cells = []
    for x, y in points.detach().cpu().tolist():
        cells.append((min(max(int(math.floor(y * scale)), 0), mask_size - 1),
                      min(max(int(math.floor(x * scale)), 0), mask_size - 1)))
    return cells


def click_ranks(ranks: torch.Tensor, candidates: np.ndarray, cells: list[tuple[int, int]],
                click_labels: list[int]) -> torch.Tensor:
    """The ranker's 1×K logits after the clicks: they say which object the phrase names.

    A phrase names one object, so an include click tells the ranker which: the candidates under include clicks
    become its choice (equal first), every other candidate drops out (``rerank_logits`` scales it by
    softmax_k / softmax_max, here e^-``CLICK_RANK``). A candidate under an exclude click drops out too.

    Args:
        ranks: 1×K ranker logits.
        candidates: D×D int64 labels (k + 1 = candidate k).
        cells, click_labels: the clicks (``click_cells``; 1 = include, 0 = exclude).

    Returns:
        1×K logits.
    """
    out = ranks.detach().float().clone()
    finite = out[torch.isfinite(out)]
    if finite.numel() == 0:
        return out
    top, bottom = float(finite.max()), float(finite.min())
    if any(label == 1 for label in click_labels):
        out = out - CLICK_RANK
    for cell, label in zip(cells, click_labels, strict=True):
        k = int(candidates[cell]) - 1
        if k >= 0:
            out[0, k] = top if label == 1 else bottom - 2 * CLICK_RANK
    return out


def outside_box(logits: torch.Tensor, box: torch.Tensor, input_size: int) -> torch.Tensor:
    """``logits`` with every cell outside a user's box pushed to ``EXCLUDE_LOGIT``: the box says the object
    lies inside, whatever the decoder made of SAM's box tokens (the demo decoder never saw them either).

    Args:
        logits: 1×1×D×D mask logits in the model-input frame.
        box: 1×4 (x0, y0, x1, y1) in input-frame pixels.
        input_size: the model-input side in pixels.

    Returns:
        1×1×D×D logits.
    """
    size = logits.shape[-1]
    scale = size / input_size
    x0, y0, x1, y1 = (float(v) * scale for v in box[0].tolist())
    centres = torch.arange(size, device=logits.device, dtype=torch.float32) + 0.5
    rows = (centres >= y0) & (centres <= y1)
    cols = (centres >= x0) & (centres <= x1)
    inside = rows[:, None] & cols[None, :]
    return torch.where(inside, logits, logits.clamp(max=EXCLUDE_LOGIT))


def _component_at(probs: np.ndarray, threshold: float, cell: tuple[int, int]) -> np.ndarray:
    """The 8-connected component of ``probs > threshold`` holding ``cell`` (D×D bool; empty when below)."""
    labels = label_components(probs, threshold, max_candidates=probs.size)
    label = labels[cell]
    return labels == label if label > 0 else np.zeros(probs.shape, bool)


def apply_clicks(logits: torch.Tensor, candidates: np.ndarray, decoded_probs: np.ndarray,
                 cells: list[tuple[int, int]], click_labels: list[int], answer_threshold: float = 0.5,
                 previous_probs: np.ndarray | None = None) -> torch.Tensor:
    """The answer's logits after the clicks, in click order (a later click overrides an earlier one).

    Args:
        logits: 1×1×D×D answer logits (after ranking, if any).
        candidates: D×D int64 candidate labels of the decoded mask (0 = none; ``Candidates.labels``).
        decoded_probs: D×D decoder probabilities before ranking (an include click off every candidate takes the
            region around it above ``INCLUDE_FLOOR``).
        previous_probs: D×D probabilities of the answer the clicks edit (``mask_input``), or None: an include
            click that the decoder has no support for keeps the previous answer's region under it (a decoder that
            never saw point tokens can lose the very object clicked on; demo model on the sample).
        cells: the clicks' (row, col) cells (``click_cells``).
        click_labels: per click, 1 = include, 0 = exclude.
        answer_threshold: the probability a pixel needs to be part of an answer.

    Returns:
        1×1×D×D logits.
    """
    out = logits.detach().float().clone()
    answer_logit = math.log(answer_threshold / (1 - answer_threshold))
    for cell, label in zip(cells, click_labels, strict=True):
        chosen = candidates[cell]
        region = candidates == chosen if chosen > 0 else np.zeros(candidates.shape, bool)
        if label == 1:
            if not region.any():
                region = _component_at(decoded_probs, INCLUDE_FLOOR, cell)
            if not region.any() and previous_probs is not None:
                region = _component_at(previous_probs, answer_threshold, cell)
            mask = torch.as_tensor(region, device=out.device)
            out[0, 0] = torch.where(mask, out[0, 0].clamp(min=answer_logit + INCLUDE_MARGIN), out[0, 0])
        else:
            answer = torch.sigmoid(out[0, 0]).cpu().numpy()
            region = region | _component_at(answer, answer_threshold, cell)
            r, c = cell
            region[max(r - 1, 0):r + 2, max(c - 1, 0):c + 2] = True  # the clicked pixel, whatever the upsampling
            mask = torch.as_tensor(region, device=out.device)
            out[0, 0] = torch.where(mask, out[0, 0].clamp(max=EXCLUDE_LOGIT), out[0, 0])
    return out
