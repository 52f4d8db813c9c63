"""SAM 2's image encoder: the Hiera trunk and an FPN neck, with Meta's names (``trunk.*``, ``neck.convs.N.conv``).

The neck projects each stage to ``d_model`` with a 1×1 lateral conv (``convs[0]`` takes the coarsest stage) and
adds the nearest-upsampled coarser level only on ``fpn_top_down_levels``. ``scalp`` coarsest levels are dropped:
SAM 2.1 keeps three levels, strides 4, 8 and 16. The neck's sine positional encodings feed only the video
memory modules, so they are not computed here.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from .hiera import Hiera


class FpnNeck(nn.Module):
    """Feature pyramid without output convs."""

    def __init__(self, *, d_model: int, backbone_channel_list: list[int], fpn_top_down_levels: tuple[int, ...]
                 ) -> None:
        """Args:
            d_model: output width of every level.
            backbone_channel_list: the trunk's stage widths, coarsest first (``Hiera.channel_list``).
            fpn_top_down_levels: levels (0 = finest) that add the upsampled coarser level.
        """
        super().__init__()
        self.d_model = d_model
        self.backbone_channel_list = list(backbone_channel_list)
        self.fpn_top_down_levels = tuple(fpn_top_down_levels)
        self.convs = nn.ModuleList(
            nn.Sequential(OrderedDict(conv=nn.Conv2d(dim, d_model, kernel_size=1))) for dim in backbone_channel_list)

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        """Args: features: the trunk's maps, finest first. Returns: as many B×d×h×w maps, finest first.

        The top-down sum is float32 (the upsampled level is cast up), as in Meta's neck.
        """
        last = len(self.convs) - 1
        outputs: list[torch.Tensor] = [features[0]] * len(features)
        previous = None
        for level in range(last, -1, -1):  # coarse to fine
            lateral = self.convs[last - level](features[level])
            if previous is not None and level in self.fpn_top_down_levels:
                upsampled = F.interpolate(previous.float(), scale_factor=2.0, mode="nearest")
                previous = lateral + upsampled
            else:
                previous = lateral
            outputs[level] = previous
        return outputs


class ImageEncoder(nn.Module):
    """Trunk + neck, dropping the ``scalp`` coarsest levels."""

    def __init__(self, *, trunk: Hiera, neck: FpnNeck, scalp: int = 1) -> None:
        """Args: trunk, neck: the parts (channel lists must agree); scalp: coarsest levels to drop."""
        super().__init__()
        if trunk.channel_list != neck.backbone_channel_list:
            raise ValueError(f"trunk widths {trunk.channel_list} do not match the neck's {neck.backbone_channel_list}")
        self.trunk = trunk
        self.neck = neck
        self.scalp = scalp

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Args: images: B×3×S×S normalised. Returns: [B×d×S/4², B×d×S/8², B×d×S/16²] (SAM 2.1, scalp 1)."""
        levels = self.neck(self.trunk(images))
        return levels[:len(levels) - self.scalp]

