"""Meta's SAM 2.1 code as a test-time reference (PyPI ``sam2==1.1.0``, image path identical to
facebookresearch/sam2 at 2b90b9f), installed apart by ``scripts/setup.sh`` into ``.venv/reference/sam2``.

It is never installed into the environment (it ships a top-level ``training`` package that would shadow ours):
the folder is appended to the END of ``sys.path`` and only ``sam2.modeling.*`` is imported. Models are built from
their classes, never through ``sam2.build_sam`` (hydra configs).
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from backend.model.config import Sam2Config

REFERENCE_DIR = Path(__file__).resolve().parents[2] / ".venv" / "reference" / "sam2"
MODULES = ("backbones.hieradet", "backbones.image_encoder", "position_encoding", "sam2_base", "memory_attention",
           "memory_encoder", "sam.transformer")


def reference_modules() -> SimpleNamespace:
    """``sam2.modeling`` modules by short name; skips the test when the reference folder is absent."""
    if not (REFERENCE_DIR / "sam2" / "modeling").is_dir():
        pytest.skip(f"SAM 2 reference not installed in {REFERENCE_DIR} (scripts/setup.sh installs it)")
    if str(REFERENCE_DIR) not in sys.path:
        sys.path.append(str(REFERENCE_DIR))
    return SimpleNamespace(**{name.rsplit(".", 1)[-1]: importlib.import_module(f"sam2.modeling.{name}")
                              for name in MODULES})


def _memory_modules(ref: SimpleNamespace, d: int) -> tuple[torch.nn.Module, torch.nn.Module]:
    """Tiny memory attention and memory encoder, so the state dict has SAM 2.1's memory keys."""
    def rope(**extra) -> torch.nn.Module:
        return ref.transformer.RoPEAttention(embedding_dim=d, num_heads=1, downsample_rate=1, dropout=0.1,
                                             rope_theta=10000.0, feat_sizes=[16, 16], **extra)

    layer = ref.memory_attention.MemoryAttentionLayer(
        activation="relu", cross_attention=rope(rope_k_repeat=True, kv_in_dim=16), d_model=d, dim_feedforward=32,
        dropout=0.1, pos_enc_at_attn=False, pos_enc_at_cross_attn_keys=True, pos_enc_at_cross_attn_queries=False,
        self_attention=rope())
    attention = ref.memory_attention.MemoryAttention(d_model=d, pos_enc_at_input=True, layer=layer, num_layers=1)
    encoder = ref.memory_encoder.MemoryEncoder(
        out_dim=16, in_dim=d,
        mask_downsampler=ref.memory_encoder.MaskDownSampler(embed_dim=d, kernel_size=3, stride=2, padding=1),
        fuser=ref.memory_encoder.Fuser(ref.memory_encoder.CXBlock(dim=d, kernel_size=7, padding=3), num_layers=1),
        position_encoding=ref.position_encoding.PositionEmbeddingSine(num_pos_feats=16))
    return attention, encoder


def build_reference_sam2(cfg: Sam2Config, input_size: int, *, perturb: bool = True) -> torch.nn.Module:
    """Meta's ``SAM2Base`` with SAM 2.1's yaml flags at ``cfg``'s trunk size (decoder sizes are fixed there:
    d = neck width, 8 heads, MLP 2048, IoU hidden 256, mask_in_chans 16), plus ``build_sam2``'s postprocessing
    (stability fallback). Eval mode; with ``perturb`` every parameter is randomly moved off its init."""
    ref = reference_modules()
    d = cfg.prompt_embed_dim
    trunk = ref.hieradet.Hiera(embed_dim=cfg.embed_dim, num_heads=cfg.num_heads, stages=cfg.stages,
                               global_att_blocks=cfg.global_att_blocks, window_spec=cfg.window_spec,
                               window_pos_embed_bkg_spatial_size=cfg.window_pos_embed_bkg_spatial_size)
    neck = ref.image_encoder.FpnNeck(
        position_encoding=ref.position_encoding.PositionEmbeddingSine(num_pos_feats=d), d_model=d,
        backbone_channel_list=trunk.channel_list, fpn_top_down_levels=list(cfg.fpn_top_down_levels),
        fpn_interp_model="nearest")
    attention, encoder = _memory_modules(ref, d)
    model = ref.sam2_base.SAM2Base(
        image_encoder=ref.image_encoder.ImageEncoder(trunk=trunk, neck=neck, scalp=1),
        memory_attention=attention, memory_encoder=encoder, num_maskmem=7, image_size=input_size,
        sigmoid_scale_for_mem_enc=20.0, sigmoid_bias_for_mem_enc=-10.0, use_mask_input_as_output_without_sam=True,
        directly_add_no_mem_embed=True, no_obj_embed_spatial=True, use_high_res_features_in_sam=True,
        multimask_output_in_sam=True, iou_prediction_use_sigmoid=True, use_obj_ptrs_in_encoder=True,
        add_tpos_enc_to_obj_ptrs=True, proj_tpos_enc_in_obj_ptrs=True, use_signed_tpos_enc_to_obj_ptrs=True,
        only_obj_ptrs_in_the_past_for_eval=True, pred_obj_scores=True, pred_obj_scores_mlp=True,
        fixed_no_obj_ptr=True, multimask_output_for_tracking=True, use_multimask_token_for_obj_ptr=True,
        multimask_min_pt_num=0, multimask_max_pt_num=1, use_mlp_for_obj_ptr_proj=True,
        sam_mask_decoder_extra_args={"dynamic_multimask_via_stability": True,
                                     "dynamic_multimask_stability_delta": 0.05,
                                     "dynamic_multimask_stability_thresh": 0.98})
    if perturb:
        generator = torch.Generator().manual_seed(1)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.05 * torch.randn(p.shape, generator=generator))
    return model.eval()
