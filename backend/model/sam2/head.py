"""``Sam2Head``: SAM 2.1's image path behind the interface of the SAM 1 ``SamHead``.

``encode_image`` returns ONE tensor per image, as SAM 1's head does, so the predictor's cache, the model's
``decode`` and the training loop handle both families alike. It packs the three levels SAM 2 decodes from,
losslessly: the stride-16 image embedding (with ``no_mem_embed`` added) and the two high-resolution skips after
the decoder's ``conv_s1`` (stride 8) and ``conv_s0`` (stride 4), folded onto the stride-16 grid with
``pixel_unshuffle``. With d = 256: B×(d + 4·d/4 + 16·d/8)×g×g = B×4d×g×g (16.8 MB per 1024² image in
float32). ``decode`` unpacks them.

The prompt encoder is segment_anything's ``PromptEncoder``: SAM 2's is the same module with the same
parameter names (``pe_layer``, ``point_embeddings``, ``not_a_point_embed``, ``mask_downscaling``,
``no_mask_embed``), so it is reused rather than copied.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from segment_anything.modeling import PromptEncoder
from torch import nn

from ..config import Sam2Config
from ..sam.mask_head import PromptedMaskHead
from .hiera import Hiera
from .image_encoder import FpnNeck, ImageEncoder
from .mask_decoder import MaskDecoder
from .transformer import TwoWayTransformer

# ImageNet statistics on the [0, 1] scale, as SAM 2's image transforms normalise.
PIXEL_MEAN = (0.485, 0.456, 0.406)
PIXEL_STD = (0.229, 0.224, 0.225)
STRIDE = 16  # input pixels per cell of the image embedding


def build_sam2_parts(cfg: Sam2Config, input_size: int) -> dict[str, nn.Module | nn.Parameter]:
    """Randomly initialised SAM 2.1 image-path parts, keyed by their top-level names in a SAM 2.1 ``.pt``."""
    d, grid = cfg.prompt_embed_dim, input_size // STRIDE
    trunk = Hiera(embed_dim=cfg.embed_dim, num_heads=cfg.num_heads, stages=cfg.stages,
                  global_att_blocks=cfg.global_att_blocks, window_spec=cfg.window_spec,
                  window_pos_embed_bkg_spatial_size=cfg.window_pos_embed_bkg_spatial_size)
    neck = FpnNeck(d_model=d, backbone_channel_list=trunk.channel_list, fpn_top_down_levels=cfg.fpn_top_down_levels)
    transformer = TwoWayTransformer(depth=cfg.decoder_depth, embedding_dim=d, num_heads=cfg.decoder_num_heads,
                                    mlp_dim=cfg.decoder_mlp_dim)
    no_mem_embed = nn.Parameter(torch.zeros(1, 1, d))
    nn.init.trunc_normal_(no_mem_embed, std=0.02)
    return {
        "image_encoder": ImageEncoder(trunk=trunk, neck=neck, scalp=1),
        "sam_prompt_encoder": PromptEncoder(embed_dim=d, image_embedding_size=(grid, grid),
                                            input_image_size=(input_size, input_size),
                                            mask_in_chans=cfg.mask_in_chans),
        "sam_mask_decoder": MaskDecoder(transformer_dim=d, transformer=transformer,
                                        iou_head_hidden_dim=cfg.iou_head_hidden_dim),
        "no_mem_embed": no_mem_embed,
    }


def pack_levels(embedding: torch.Tensor, feat_s1: torch.Tensor, feat_s0: torch.Tensor) -> torch.Tensor:
    """Args: embedding B×d×g×g; feat_s1 B×d/4×2g×2g; feat_s0 B×d/8×4g×4g. Returns: B×4d×g×g (feat_s0's dtype)."""
    dtype = feat_s0.dtype
    return torch.cat([embedding.to(dtype), F.pixel_unshuffle(feat_s1, 2).to(dtype), F.pixel_unshuffle(feat_s0, 4)],
                     dim=1)


def unpack_levels(packed: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """Inverse of ``pack_levels``. Returns: (embedding B×d×g×g, (feat_s0 B×d/8×4g×4g, feat_s1 B×d/4×2g×2g))."""
    d = packed.shape[1] // 4
    embedding, s1, s0 = packed.split([d, d, 2 * d], dim=1)
    return embedding, (F.pixel_shuffle(s0, 4), F.pixel_shuffle(s1, 2))


class Sam2Head(PromptedMaskHead):
    """Frozen Hiera + FPN (+ optional LoRA); trainable prompt encoder, mask decoder and ``no_mem_embed``.

    Attribute names equal SAM 2.1 checkpoint names (``image_encoder``, ``sam_prompt_encoder``,
    ``sam_mask_decoder``, ``no_mem_embed``). ``decode`` and ``decode_with_box`` take the packed levels and
    return B×1×4g×4g logits (``multimask_output=False``, with the stability fallback in eval).
    """

    def __init__(self, *, image_encoder: ImageEncoder, sam_prompt_encoder: PromptEncoder,
                 sam_mask_decoder: MaskDecoder, no_mem_embed: nn.Parameter, cfg: Sam2Config) -> None:
        """Args:
            image_encoder, sam_prompt_encoder, sam_mask_decoder, no_mem_embed: from ``build_sam2_parts``,
                weights already loaded.
            cfg: the SAM part of the model config (LoRA settings).
        """
        super().__init__()
        self.image_encoder = image_encoder
        self.sam_prompt_encoder = sam_prompt_encoder
        self.sam_mask_decoder = sam_mask_decoder
        self.no_mem_embed = no_mem_embed
        self._freeze_encoder(PIXEL_MEAN, PIXEL_STD, cfg.lora)

    @property
    def prompt_module(self) -> PromptEncoder:
        return self.sam_prompt_encoder

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """Args: images: B×3×S×S in [0, 1]. Returns: B×4d×g×g packed levels (g = S / 16; see module doc)."""
        feat_s0, feat_s1, embedding = self.image_encoder(
            (images - self.pixel_mean.to(images.device)) / self.pixel_std.to(images.device))  # CPU after a meta build
        embedding = embedding + self.no_mem_embed.view(1, -1, 1, 1)
        decoder = self.sam_mask_decoder
        return pack_levels(embedding, decoder.conv_s1(feat_s1), decoder.conv_s0(feat_s0))

    def _decode(self, packed: torch.Tensor, sparse: torch.Tensor, dense: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Unpack the levels and run SAM 2.1's decoder. Returns (mask_logits B×1×4g×4g, predicted IoU B)."""
        embedding, high_res = unpack_levels(packed)
        masks, iou = self.sam_mask_decoder(embedding, self.sam_prompt_encoder.get_dense_pe(), sparse, dense,
                                           high_res)
        return masks, iou[:, 0]
