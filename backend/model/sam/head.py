"""``SamHead``: segment_anything's image encoder, prompt encoder and mask decoder, driven by our prompts."""

from __future__ import annotations

from functools import partial

import torch
from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, TwoWayTransformer
from torch import nn

from ..config import SamConfig
from .mask_head import PromptedMaskHead

# SAM's pixel statistics on the 0–255 scale (ImageNet mean/std × 255), as segment_anything's ``Sam`` uses.
PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)


def build_sam_parts(cfg: SamConfig, input_size: int) -> dict[str, nn.Module]:
    """Randomly initialised SAM parts sized by ``cfg`` (``build_sam_vit_*`` layout), keyed as in a SAM .pth."""
    grid = input_size // cfg.patch_size
    return {
        "image_encoder": ImageEncoderViT(
            depth=cfg.encoder_depth, embed_dim=cfg.encoder_embed_dim, img_size=input_size, mlp_ratio=4,
            norm_layer=partial(nn.LayerNorm, eps=1e-6), num_heads=cfg.encoder_num_heads,
            patch_size=cfg.patch_size, qkv_bias=True, use_rel_pos=True,
            global_attn_indexes=cfg.encoder_global_attn_indexes, window_size=cfg.window_size,
            out_chans=cfg.prompt_embed_dim),
        "prompt_encoder": PromptEncoder(
            embed_dim=cfg.prompt_embed_dim, image_embedding_size=(grid, grid),
            input_image_size=(input_size, input_size), mask_in_chans=cfg.mask_in_chans),
        "mask_decoder": MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=cfg.decoder_depth, embedding_dim=cfg.prompt_embed_dim,
                                          mlp_dim=cfg.decoder_mlp_dim, num_heads=cfg.decoder_num_heads),
            transformer_dim=cfg.prompt_embed_dim, iou_head_depth=3, iou_head_hidden_dim=cfg.iou_head_hidden_dim),
    }


class SamHead(PromptedMaskHead):
    """Frozen SAM image encoder (+ optional LoRA) and trainable prompt encoder and mask decoder."""

    def __init__(self, *, image_encoder: ImageEncoderViT, prompt_encoder: PromptEncoder,
                 mask_decoder: MaskDecoder, cfg: SamConfig) -> None:
        """Args:
            image_encoder, prompt_encoder, mask_decoder: segment_anything parts, weights already loaded.
            cfg: the SAM part of the model config (LoRA settings).
        """
        super().__init__()
        self.image_encoder = image_encoder
        self.prompt_encoder = prompt_encoder
        self.mask_decoder = mask_decoder
        self._freeze_encoder(PIXEL_MEAN, PIXEL_STD, cfg.lora)

    @property
    def prompt_module(self) -> PromptEncoder:
        return self.prompt_encoder

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """Args: images: B×3×S×S in [0, 1]. Returns: B×Cp×g×g image embeddings (g = S / patch)."""
        mean, std = self.pixel_mean.to(images.device), self.pixel_std.to(images.device)  # CPU after a meta build
        return self.image_encoder((images * 255.0 - mean) / std)

    def _decode(self, image_embeddings: torch.Tensor, sparse: torch.Tensor, dense: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mask decoder, single-mask output. Embeddings: 1 image for all prompts, or one per prompt."""
        image_pe = self.prompt_encoder.get_dense_pe()
        if image_embeddings.shape[0] == 1:
            masks, iou = self.mask_decoder.predict_masks(image_embeddings, image_pe, sparse, dense)
        else:  # segment_anything repeats one image per prompt batch: decode per image instead
            outs = [self.mask_decoder.predict_masks(image_embeddings[i:i + 1], image_pe, sparse[i:i + 1],
                                                    dense[i:i + 1]) for i in range(sparse.shape[0])]
            masks, iou = torch.cat([o[0] for o in outs]), torch.cat([o[1] for o in outs])
        return masks[:, :1], iou[:, 0]
