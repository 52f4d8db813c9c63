"""Names: the authors' RSRefSeg 2 ``state_dict`` keys (mmengine + PEFT + Hugging Face SigLIP + Meta SAM 2.1) onto
ours (open_clip towers, Meta-named SAM 2.1 parts, our prompter). Pure string work, no tensors.

The layout is described in AUTHORS_CHECKPOINTS.md §2 and follows from the authors' ``refseg/models/models.py`` and
``configs_RSRefSeg2/*_infer.py``. A name is mapped in two steps: ``split_part`` strips the wrapper prefix and says
which part the key belongs to; the part's ``rename_*`` function gives our plain module name (before our LoRA
wrappers, which ``convert`` resolves against the model's real state-dict names).
"""

from __future__ import annotations

import re

# (authors' prefix, part); checked in order, so the longer SAM prefix comes first.
PREFIXES = (
    ("clip_vision_encoder.base_model.model.model.", "vision"),
    ("clip_text_encoder.base_model.model.model.", "text"),
    ("clip_text_encoder.base_model.model.", "text_scalar"),
    ("backbone.model.image_encoder.base_model.model.", "hiera"),
    ("backbone.model.", "sam"),
    ("prompter.", "prompter"),
    ("decode_head.", "dropped"),
)
# Our model's prefix for each part's plain names.
OUR_PREFIX = {"vision": "clip_encoder.model.visual.trunk.", "text": "clip_encoder.model.text.",
              "text_scalar": "clip_encoder.model.", "hiera": "sam_head.image_encoder.", "sam": "sam_head.",
              "prompter": "prompter."}

# Where the authors put PEFT LoRA adapters (relative to the part); an adapter anywhere else is an error.
LORA_SITES = {
    "vision": re.compile(r"encoder\.layers\.\d+\.self_attn\.(q|k|v|out)_proj|head\.(attention\.out_proj|mlp\.fc[12])"),
    "text": re.compile(r"encoder\.layers\.\d+\.self_attn\.(q|k|v|out)_proj|head"),
    "hiera": re.compile(r"trunk\.blocks\.\d+\.attn\.(qkv|proj)|neck\.convs\.\d+\.conv"),
}
LORA_SUFFIXES = (".lora_A.default.weight", ".lora_B.default.weight")
BASE_INFIX = ".base_layer."

# Keys that exist in some files but carry nothing the model uses: dropped by name. HF's ``position_ids`` is a
# buffer that older transformers versions saved; SAM 2's video-memory modules are deleted by the authors' code
# before training, but a file that still has them is accepted.
_IGNORED = re.compile(r"(vision|text):embeddings\.position_ids"
                      r"|sam:(memory_attention|memory_encoder|obj_ptr_proj|obj_ptr_tpos_proj|mask_downsample)\..+"
                      r"|sam:(maskmem_tpos_enc|no_mem_pos_enc|no_obj_ptr|no_obj_embed_spatial)")


def split_part(key: str) -> tuple[str, str] | None:
    """(part, name inside the part) of an authors' key, or None when no known prefix matches."""
    for prefix, part in PREFIXES:
        if key.startswith(prefix):
            return part, key[len(prefix):]
    return None


def is_ignored(part: str, name: str) -> bool:
    """Whether a key is known and deliberately not converted (besides ``decode_head.*``)."""
    return part == "dropped" or bool(_IGNORED.fullmatch(f"{part}:{name}"))


_VISION = (
    (r"embeddings\.patch_embedding\.(weight|bias)", r"patch_embed.proj.\1"),
    (r"embeddings\.position_embedding\.weight", "pos_embed"),
    (r"encoder\.layers\.(\d+)\.layer_norm([12])\.(weight|bias)", r"blocks.\1.norm\2.\3"),
    (r"encoder\.layers\.(\d+)\.self_attn\.out_proj\.(weight|bias)", r"blocks.\1.attn.proj.\2"),
    (r"encoder\.layers\.(\d+)\.mlp\.(fc[12])\.(weight|bias)", r"blocks.\1.mlp.\2.\3"),
    (r"post_layernorm\.(weight|bias)", r"norm.\1"),
    (r"head\.probe", "attn_pool.latent"),
    (r"head\.attention\.out_proj\.(weight|bias)", r"attn_pool.proj.\1"),
    (r"head\.layernorm\.(weight|bias)", r"attn_pool.norm.\1"),
    (r"head\.mlp\.(fc[12])\.(weight|bias)", r"attn_pool.mlp.\1.\2"),
)
_TEXT = (
    (r"embeddings\.token_embedding\.weight", "token_embedding.weight"),
    (r"embeddings\.position_embedding\.weight", "positional_embedding"),
    (r"encoder\.layers\.(\d+)\.layer_norm([12])\.(weight|bias)", r"transformer.resblocks.\1.ln_\2.\3"),
    (r"encoder\.layers\.(\d+)\.self_attn\.out_proj\.(weight|bias)", r"transformer.resblocks.\1.attn.out_proj.\2"),
    (r"encoder\.layers\.(\d+)\.mlp\.fc1\.(weight|bias)", r"transformer.resblocks.\1.mlp.c_fc.\2"),
    (r"encoder\.layers\.(\d+)\.mlp\.fc2\.(weight|bias)", r"transformer.resblocks.\1.mlp.c_proj.\2"),
    (r"final_layer_norm\.(weight|bias)", r"ln_final.\1"),
    (r"head\.(weight|bias)", r"text_projection.\1"),
)
# SigLIP's separate q/k/v projections, fused in this order into open_clip's packed projection.
QKV = re.compile(r"encoder\.layers\.(\d+)\.self_attn\.([qkv])_proj\.(weight|bias)")
# The vision MAP head's packed in-projection (q, k, v rows), split into timm's ``q`` and ``kv``.
MAP_IN_PROJ = re.compile(r"head\.attention\.in_proj_(weight|bias)")


def _rename(table: tuple[tuple[str, str], ...], name: str) -> str | None:
    for pattern, replacement in table:
        if re.fullmatch(pattern, name):
            return re.sub(f"^{pattern}$", replacement, name)
    return None


def fused_qkv_name(part: str, layer: str, tensor: str) -> str:
    """Our plain name of the packed q/k/v projection of ``layer`` (``tensor``: weight or bias)."""
    if part == "vision":
        return f"blocks.{layer}.attn.qkv.{tensor}"
    return f"transformer.resblocks.{layer}.attn.in_proj_{tensor}"


def rename_vision(name: str) -> str | None:
    """Our name (under ``visual.trunk.``) of a SigLIP vision tensor that maps one to one, else None."""
    return _rename(_VISION, name)


def rename_text(name: str) -> str | None:
    """Our name (under ``text.``) of a SigLIP text tensor that maps one to one, else None."""
    return _rename(_TEXT, name)


def rename_text_scalar(name: str) -> str | None:
    """``logit_scale`` / ``logit_bias`` (shape [1] there, [] here); anything else at that level is unknown."""
    return name if name in ("logit_scale", "logit_bias") else None


def rename_sam(name: str) -> str | None:
    """SAM 2.1's prompt encoder, mask decoder and ``no_mem_embed`` keep Meta's names."""
    return name if re.match(r"(sam_prompt_encoder|sam_mask_decoder)\.|no_mem_embed$", name) else None


def rename_hiera(name: str) -> str | None:
    """The Hiera trunk and FPN neck keep Meta's names."""
    return name if re.match(r"(trunk|neck)\.", name) else None


# The authors' prompter blocks run their modules in the order of the ``*_operation_order`` lists of
# ``configs_RSRefSeg2/*_infer.py``; each (attention, norm[, mlp, norm]) run is one of our ``AttnUpdate`` modules.
_PROMPTER_BLOCKS = {"two_queries_text_attn_layers": "text_layers", "queries1_to_img_attn_layers": "activation_layers",
                    "prompt_queries2_img_attn_layers": "prompt_layers"}
_PROMPTER_MODULES = {
    "text_layers": {
        "self_attn_query_query1": "self_q1.attn", "norm_query1_1": "self_q1.norm",
        "self_attn_query_query2": "self_q2.attn", "norm_query2_1": "self_q2.norm",
        "cross_attn_query_text_query1_text": "text_q1.attn", "norm_query1_2": "text_q1.norm",
        "mlp_query1_2": "text_q1.mlp", "norm_query1_3": "text_q1.mlp_norm",
        "cross_attn_query_text_query2_text": "text_q2.attn", "norm_query2_2": "text_q2.norm",
        "mlp_query2_2": "text_q2.mlp", "norm_query2_3": "text_q2.mlp_norm",
        "cross_attn_query_query_query1_query2": "q1_from_q2.attn", "norm_query1_4": "q1_from_q2.norm",
        "mlp_query1_3": "q1_from_q2.mlp", "norm_query1_5": "q1_from_q2.mlp_norm",
        "cross_attn_query_query_query2_query1": "q2_from_q1.attn", "norm_query2_4": "q2_from_q1.norm",
        "mlp_query2_3": "q2_from_q1.mlp", "norm_query2_5": "q2_from_q1.mlp_norm",
    },
    "activation_layers": {
        "self_attn_text_text_1": "self_q.attn", "norm_text_1": "self_q.norm",
        "cross_attn_img_text_1": "image_from_q.attn", "norm_img_1": "image_from_q.norm",
        "mlp_img_1": "image_from_q.mlp", "norm_img_2": "image_from_q.mlp_norm",
    },
    "prompt_layers": {
        "self_attn_text_1": "activation.self_q.attn", "norm_text_1": "activation.self_q.norm",
        "cross_attn_img_text_1": "activation.image_from_q.attn", "norm_img_1": "activation.image_from_q.norm",
        "mlp_img_1": "activation.image_from_q.mlp", "norm_img_2": "activation.image_from_q.mlp_norm",
        "self_attn_prompt_1": "self_p.attn", "norm_prompt_1": "self_p.norm",
        "cross_attn_prompt_text_1": "p_from_q.attn", "norm_prompt_2": "p_from_q.norm",
        "mlp_prompt_2": "p_from_q.mlp", "norm_prompt_3": "p_from_q.mlp_norm",
        "cross_attn_prompt_img_1": "p_from_image.attn", "norm_prompt_4": "p_from_image.norm",
        "mlp_prompt_3": "p_from_image.mlp", "norm_prompt_5": "p_from_image.mlp_norm",
    },
}
_PROMPTER_TOP = (
    (r"text_query_pe_embedding([12])", r"query_pe\1"),
    (r"img_pe", "image_pe"),
    (r"prompt_pe_embedding", "prompt_pe"),
    (r"prompt_embedding", "prompts"),
    (r"sparse_prompt_mlp\.layers\.0\.(weight|bias)", r"sparse_head.fc1.\1"),
    (r"sparse_prompt_mlp\.layers\.1\.(weight|bias)", r"sparse_head.fc2.\1"),
    (r"dense_prompt_conv\.([013])\.(weight|bias|running_mean|running_var|num_batches_tracked)", r"dense_conv.\1.\2"),
)
_ATTENTION_TENSOR = re.compile(r"(q_proj|k_proj|v_proj|out_proj)\.(weight|bias)")
_NORM_TENSOR = re.compile(r"(weight|bias)")
_MLP_TENSOR = re.compile(r"layers\.([01])\.(weight|bias)")


def rename_prompter(name: str) -> str | None:
    """Our prompter name of an authors' ``CascadedPrompter`` tensor (METHOD.md §2), else None."""
    top = _rename(_PROMPTER_TOP, name)
    if top is not None:
        return top
    match = re.fullmatch(r"([a-z0-9_]+)\.(\d+)\.([a-z0-9_]+)\.(.+)", name)
    if match is None or match[1] not in _PROMPTER_BLOCKS:
        return None
    block = _PROMPTER_BLOCKS[match[1]]
    module = _PROMPTER_MODULES[block].get(match[3])
    if module is None:
        return None
    tensor = match[4]
    if module.endswith(".attn") and _ATTENTION_TENSOR.fullmatch(tensor):
        return f"{block}.{match[2]}.{module}.{tensor}"
    if module.endswith("norm") and _NORM_TENSOR.fullmatch(tensor):
        return f"{block}.{match[2]}.{module}.{tensor}"
    mlp = _MLP_TENSOR.fullmatch(tensor)
    if module.endswith(".mlp") and mlp:
        return f"{block}.{match[2]}.{module}.fc{int(mlp[1]) + 1}.{mlp[2]}"
    return None


RENAME = {"vision": rename_vision, "text": rename_text, "text_scalar": rename_text_scalar, "sam": rename_sam,
          "hiera": rename_hiera, "prompter": rename_prompter}
