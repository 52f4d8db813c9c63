"""SAM 2.1's mask decoder (Meta's names under ``sam_mask_decoder.*``), as SAM 2.1 checkpoints are built.

Output tokens ``[object score, IoU, mask 0..3]`` precede the prompt tokens in the two-way transformer. The
upscaler adds two high-resolution skips: ``conv_s1`` of the stride-8 level after the first transposed conv and
``conv_s0`` of the stride-4 level after the second (both convs are applied once per image, by the encoder side,
see ``Sam2Head.encode_image``). The IoU head ends in a sigmoid. The object-score head is computed and returned
but gates nothing (the method uses the masks as they are).

Single-mask output: training takes mask 0; in eval mode, when mask 0 is unstable (the area above +0.05 over the
area above −0.05 is below 0.98) the mask among 1–3 with the highest predicted IoU replaces it, as
``build_sam2(..., apply_postprocessing=True)`` does.
"""

from __future__ import annotations

import torch
from segment_anything.modeling.common import LayerNorm2d
from torch import nn

from .common import MLP
from .transformer import TwoWayTransformer

STABILITY_DELTA = 0.05
STABILITY_THRESHOLD = 0.98
NUM_MULTIMASK_OUTPUTS = 3


def stability_scores(mask_logits: torch.Tensor, delta: float = STABILITY_DELTA) -> torch.Tensor:
    """#(logit > delta) / #(logit > −delta) per mask (1 when both are empty). Args: B×M×H×W. Returns: B×M."""
    flat = mask_logits.flatten(-2)
    inner = (flat > delta).sum(-1).float()
    outer = (flat > -delta).sum(-1).float()
    return torch.where(outer > 0, inner / outer.clamp(min=1), torch.ones_like(outer))


def stable_single_mask(masks: torch.Tensor, iou: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mask 0, or the best-IoU mask among 1–3 where mask 0 is unstable.

    Args: masks: B×4×H×W logits; iou: B×4 predicted IoU. Returns: (B×1×H×W logits, B×1 IoU).
    """
    best = iou[:, 1:].argmax(dim=-1) + 1
    rows = torch.arange(masks.shape[0], device=masks.device)
    stable = stability_scores(masks[:, :1]) >= STABILITY_THRESHOLD  # B×1
    chosen = torch.where(stable[:, 0], torch.zeros_like(best), best)
    return masks[rows, chosen][:, None], iou[rows, chosen][:, None]


class MaskDecoder(nn.Module):
    """Transformer over prompt tokens and the image embedding, hypernetwork mask heads, IoU and object heads."""

    def __init__(self, *, transformer_dim: int, transformer: TwoWayTransformer, iou_head_depth: int = 3,
                 iou_head_hidden_dim: int = 256) -> None:
        """Args:
            transformer_dim: token width d (256).
            transformer: the two-way transformer.
            iou_head_depth, iou_head_hidden_dim: IoU head MLP depth and width.
        """
        super().__init__()
        d = transformer_dim
        self.num_mask_tokens = NUM_MULTIMASK_OUTPUTS + 1
        self.transformer = transformer
        self.obj_score_token = nn.Embedding(1, d)
        self.iou_token = nn.Embedding(1, d)
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, d)
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(d, d // 4, kernel_size=2, stride=2), LayerNorm2d(d // 4), nn.GELU(),
            nn.ConvTranspose2d(d // 4, d // 8, kernel_size=2, stride=2), nn.GELU())
        self.conv_s0 = nn.Conv2d(d, d // 8, kernel_size=1)
        self.conv_s1 = nn.Conv2d(d, d // 4, kernel_size=1)
        self.output_hypernetworks_mlps = nn.ModuleList(
            MLP(input_dim=d, hidden_dim=d, output_dim=d // 8, num_layers=3) for _ in range(self.num_mask_tokens))
        self.iou_prediction_head = MLP(input_dim=d, hidden_dim=iou_head_hidden_dim, output_dim=self.num_mask_tokens,
                                       num_layers=iou_head_depth, sigmoid_output=True)
        self.pred_obj_score_head = MLP(input_dim=d, hidden_dim=d, output_dim=1, num_layers=3)

    def predict_masks(self, image_embeddings: torch.Tensor, image_pe: torch.Tensor, sparse: torch.Tensor,
                      dense: torch.Tensor, high_res: tuple[torch.Tensor, torch.Tensor]
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """All four masks.

        Args:
            image_embeddings: B×d×g×g, or 1×d×g×g shared by all B prompts.
            image_pe: 1×d×g×g dense positional encoding.
            sparse: B×N×d prompt tokens.
            dense: B×d×g×g dense prompt embeddings.
            high_res: (feat_s0 B×d/8×4g×4g, feat_s1 B×d/4×2g×2g) after ``conv_s0``/``conv_s1`` (batch 1 or B).

        Returns:
            (mask logits B×4×4g×4g, predicted IoU B×4, object-score logits B×1).
        """
        batch = sparse.shape[0]
        output_tokens = torch.cat([self.obj_score_token.weight, self.iou_token.weight, self.mask_tokens.weight])
        tokens = torch.cat([output_tokens[None].expand(batch, -1, -1), sparse], dim=1)
        src = image_embeddings + dense
        b, c, h, w = src.shape
        hs, src = self.transformer(src, image_pe, tokens)
        mask_tokens_out = hs[:, 2:2 + self.num_mask_tokens]
        up1, norm1, act1, up2, act2 = self.output_upscaling
        feat_s0, feat_s1 = high_res
        upscaled = act1(norm1(up1(src.transpose(1, 2).reshape(b, c, h, w)) + feat_s1))
        upscaled = act2(up2(upscaled) + feat_s0)
        hyper_in = torch.stack([mlp(mask_tokens_out[:, i]) for i, mlp in enumerate(self.output_hypernetworks_mlps)],
                               dim=1)
        b, c, h, w = upscaled.shape
        masks = (hyper_in @ upscaled.reshape(b, c, h * w)).reshape(b, -1, h, w)
        return masks, self.iou_prediction_head(hs[:, 1]), self.pred_obj_score_head(hs[:, 0])

    def forward(self, image_embeddings: torch.Tensor, image_pe: torch.Tensor, sparse: torch.Tensor,
                dense: torch.Tensor, high_res: tuple[torch.Tensor, torch.Tensor]
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Single-mask output (``multimask_output=False``). Args: as ``predict_masks``.

        Returns:
            (mask logits B×1×4g×4g, predicted IoU B×1): mask 0 in training; in eval, mask 0 unless unstable.
        """
        masks, iou, _ = self.predict_masks(image_embeddings, image_pe, sparse, dense, high_res)
        if self.training:
            return masks[:, :1], iou[:, :1]
        return stable_single_mask(masks, iou)
