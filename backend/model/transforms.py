"""Input geometry shared by the predictor and the training package (METHOD.md §1).

Images: resize (long side to ``size`` when ``keep_ratio``, else stretch), scale to [0, 1], pad bottom/right
with 0 to ``size``². Outputs: logits bilinear to the input size, crop the padding, bilinear to the original
size, in that order.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def resized_hw(height: int, width: int, size: int, keep_ratio: bool) -> tuple[int, int]:
    """(h, w) of the valid, unpadded region inside the ``size``² model input."""
    if not keep_ratio:
        return size, size
    scale = size / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def _to_chw_float(image: np.ndarray | torch.Tensor) -> torch.Tensor:
    tensor = torch.as_tensor(np.asarray(image))
    if tensor.ndim != 3 or tensor.shape[-1] != 3:
        raise ValueError(f"expected an H×W×3 RGB image, got shape {tuple(tensor.shape)}")
    if tensor.dtype == torch.uint8:
        tensor = tensor.float() / 255.0
    elif tensor.is_floating_point():
        tensor = tensor.float()
    else:
        raise ValueError(f"expected uint8 or float in [0, 1], got {tensor.dtype}")
    return tensor.permute(2, 0, 1)


def resize_and_pad(image: np.ndarray | torch.Tensor, size: int, keep_ratio: bool
                   ) -> tuple[torch.Tensor, tuple[int, int]]:
    """Model input from an RGB image.

    Args:
        image: H×W×3, uint8 (0–255) or float in [0, 1].
        size: side S of the square model input.
        keep_ratio: resize the long side to S and pad (RSRefSeg 2), or stretch to S×S (RSRefSeg).

    Returns:
        (3×S×S float32 tensor in [0, 1], valid (h, w) of the image inside it).
    """
    chw = _to_chw_float(image)
    valid = resized_hw(chw.shape[1], chw.shape[2], size, keep_ratio)
    resized = F.interpolate(chw[None], size=valid, mode="bilinear", align_corners=False)[0].clamp(0, 1)
    return F.pad(resized, (0, size - valid[1], 0, size - valid[0]), value=0.0), valid


def resize_and_pad_mask(mask: np.ndarray | torch.Tensor, size: int, keep_ratio: bool, pad_value: int = 255
                        ) -> torch.Tensor:
    """Label mask to the model-input frame (nearest), padded with ``pad_value`` (ignored by the losses).

    Args:
        mask: H×W integer/bool labels.
        size, keep_ratio: as ``resize_and_pad``.
        pad_value: label of the padding.

    Returns:
        S×S uint8 tensor.
    """
    labels = torch.as_tensor(np.asarray(mask)).to(torch.uint8)
    valid = resized_hw(labels.shape[0], labels.shape[1], size, keep_ratio)
    resized = F.interpolate(labels[None, None].float(), size=valid, mode="nearest")[0, 0].to(torch.uint8)
    return F.pad(resized, (0, size - valid[1], 0, size - valid[0]), value=pad_value)


def unpad_and_resize(logits: torch.Tensor, valid_hw: tuple[int, int], out_hw: tuple[int, int],
                     input_size: int | None = None) -> torch.Tensor:
    """Low-resolution logits back to the original image frame.

    Args:
        logits: B×1×D×D.
        valid_hw: the (h, w) returned by ``resize_and_pad``.
        out_hw: the original (H, W).
        input_size: the model input side S (None: 4·D, SAM's ratio of input to mask size).

    Returns:
        B×1×H×W logits.
    """
    size = input_size or 4 * logits.shape[-1]
    full = F.interpolate(logits, size=(size, size), mode="bilinear", align_corners=False)
    cropped = full[..., :valid_hw[0], :valid_hw[1]]
    return F.interpolate(cropped, size=tuple(out_hw), mode="bilinear", align_corners=False)
