"""Zero-shot referring segmentation from base CLIP and SAM weights alone (no trained checkpoint).

Dense CLIP features are made spatially meaningful with ClearCLIP's training-free last block (query–query
attention, no residual, no feed-forward; see ``clip.towers``). The cosine map between those patch features
and the pooled text gives a peak cell (→ a foreground point) and the connected region of cells whose
min–max-normalised similarity is at least ``REGION_THRESHOLD`` around the peak (→ a box). SAM's own prompt
encoder turns the point and box into a mask. Nouns and colours work to the extent CLIP separates them;
relations ("the tank left of the road") need the trained model.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..outputs import ImageEmbeddings
from .base import ReferringSegmenter

REGION_THRESHOLD = 0.5


def encode_images_zero_shot(model: ReferringSegmenter, images: torch.Tensor) -> ImageEmbeddings:
    """Like ``model.encode_images`` but with ClearCLIP dense features. images: B×3×S×S in [0, 1]."""
    return ImageEmbeddings(clip=model.clip_encoder.encode_image_dense(images, clear_last_block=True),
                           sam=model.sam_head.encode_image(images))


def similarity_maps(clip_map: torch.Tensor, pooled: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of every patch with every text. Args: clip_map 1×C×g×g; pooled N×C. Returns N×g×g."""
    return torch.einsum("chw,nc->nhw", F.normalize(clip_map[0], dim=0), F.normalize(pooled, dim=-1))


def _peak_region(sim: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Peak cell and its connected high-similarity region. Args: sim g×g; valid g×g bool.

    Returns: (peak (row, col) long tensor, region g×g bool).
    """
    sim = sim.masked_fill(~valid, float("-inf"))
    peak_index = int(sim.flatten().argmax())
    peak = torch.tensor(divmod(peak_index, sim.shape[1]))
    lo, hi = sim[valid].min(), sim[valid].max()
    allowed = valid & ((sim - lo) / (hi - lo).clamp(min=1e-6) >= REGION_THRESHOLD)
    region = torch.zeros_like(allowed)
    region[peak[0], peak[1]] = True
    while True:  # flood fill by 8-connected dilation restricted to the allowed cells
        grown = F.max_pool2d(region[None, None].float(), 3, stride=1, padding=1)[0, 0].bool() & allowed
        if torch.equal(grown, region):
            return peak, region
        region = grown


def zero_shot_prompts(clip_map: torch.Tensor, pooled: torch.Tensor, valid_hw: tuple[int, int],
                      input_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Boxes and points for SAM from text–patch similarity.

    Args:
        clip_map: 1×C×g×g ClearCLIP patch features of the padded model input.
        pooled: N×C pooled text embeddings.
        valid_hw: the unpadded (h, w) inside the S×S input; cells in the padding are ignored.
        input_size: S.

    Returns:
        (boxes N×4 (x0, y0, x1, y1), points N×2 (x, y)), in input-frame pixels.
    """
    grid = clip_map.shape[-1]
    cell = input_size / grid
    rows = (torch.arange(grid) + 0.5) * cell < valid_hw[0]
    cols = (torch.arange(grid) + 0.5) * cell < valid_hw[1]
    valid = (rows[:, None] & cols[None, :]).to(clip_map.device)
    boxes, points = [], []
    for sim in similarity_maps(clip_map.float(), pooled.float()):
        peak, region = _peak_region(sim, valid)
        ys, xs = torch.nonzero(region, as_tuple=True)
        boxes.append(torch.stack([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]).float() * cell)
        points.append((peak.flip(0).float() + 0.5) * cell)
    return torch.stack(boxes).to(clip_map.device), torch.stack(points).to(clip_map.device)
