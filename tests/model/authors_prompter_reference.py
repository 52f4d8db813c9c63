"""The authors' cascaded prompter, run from their weights and operation-order lists (a test-only reference).

Semantics as the authors' ``CascadedPrompter`` runs with ``configs_RSRefSeg2/*_infer.py`` (AUTHORS_CHECKPOINTS.md
§2.3): every attention and MLP is residual, every norm replaces its stream; queries get their PE on q and k, never
on v; queries start as the text tokens average-pooled to K; the dense prompt is the refined image map through
conv–BN–GELU–conv, bilinearly upsampled (align_corners) to the mask size, cosine with the pooled text, times
exp(logit_scale) plus logit_bias. Written for the tests; it shares no code with ``backend.model``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from authors_layout import BLOCKS

Weights = dict[str, torch.Tensor]


def _attention(w: Weights, name: str, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int) -> torch.Tensor:
    def split(x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], x.shape[1], heads, -1).transpose(1, 2)

    qh = split(F.linear(q, w[f"{name}.q_proj.weight"], w[f"{name}.q_proj.bias"]))
    kh = split(F.linear(k, w[f"{name}.k_proj.weight"], w[f"{name}.k_proj.bias"]))
    vh = split(F.linear(v, w[f"{name}.v_proj.weight"], w[f"{name}.v_proj.bias"]))
    attn = torch.softmax(qh @ kh.transpose(-1, -2) / qh.shape[-1] ** 0.5, dim=-1) @ vh
    out = attn.transpose(1, 2).reshape(q.shape[0], q.shape[1], -1)
    return F.linear(out, w[f"{name}.out_proj.weight"], w[f"{name}.out_proj.bias"])


def _mlp(w: Weights, name: str, x: torch.Tensor) -> torch.Tensor:
    hidden = F.gelu(F.linear(x, w[f"{name}.layers.0.weight"], w[f"{name}.layers.0.bias"]))
    return F.linear(hidden, w[f"{name}.layers.1.weight"], w[f"{name}.layers.1.bias"])


def _norm(w: Weights, name: str, x: torch.Tensor) -> torch.Tensor:
    return F.layer_norm(x, x.shape[-1:], w[f"{name}.weight"], w[f"{name}.bias"], eps=1e-5)


def _text_block(w: Weights, name: str, s: dict[str, torch.Tensor], heads: int) -> None:
    """Two query streams ``q1``/``q2`` with PEs ``pe1``/``pe2`` against the text tokens ``text``."""
    for op in BLOCKS["two_queries_text_attn_layers"]:
        full = f"{name}.{op}"
        if op.startswith("self_attn_query_query"):
            n = op[-1]
            s["q" + n] = s["q" + n] + _attention(w, full, s["q" + n] + s["pe" + n], s["q" + n] + s["pe" + n],
                                                 s["q" + n], heads)
        elif op.startswith("cross_attn_query_text_query"):
            n = op[len("cross_attn_query_text_query")]
            s["q" + n] = s["q" + n] + _attention(w, full, s["q" + n] + s["pe" + n], s["text"], s["text"], heads)
        elif op.startswith("cross_attn_query_query_query"):
            a, b = op[-8], op[-1]
            s["q" + a] = s["q" + a] + _attention(w, full, s["q" + a] + s["pe" + a], s["q" + b] + s["pe" + b],
                                                 s["q" + b], heads)
        else:
            n = op[len("mlp_query") if op.startswith("mlp") else len("norm_query")]
            s["q" + n] = s["q" + n] + _mlp(w, full, s["q" + n]) if op.startswith("mlp") else _norm(w, full, s["q" + n])


def _pit_block(w: Weights, name: str, order: list[str], s: dict[str, torch.Tensor], heads: int) -> None:
    """Streams ``text`` (the queries, PE ``text_pe``), ``img`` (PE ``img_pe``), ``prompt`` (PE ``prompt_pe``)."""
    def pe(stream: str) -> torch.Tensor:
        return s[stream] + s[f"{stream}_pe"]

    for op in order:
        full = f"{name}.{op}"
        if op.startswith("self_attn_prompt"):
            s["prompt"] = s["prompt"] + _attention(w, full, pe("prompt"), pe("prompt"), s["prompt"], heads)
        elif op.startswith("self_attn_text"):
            s["text"] = s["text"] + _attention(w, full, pe("text"), pe("text"), s["text"], heads)
        elif op.startswith("cross_attn_img_text"):
            s["img"] = s["img"] + _attention(w, full, pe("img"), pe("text"), s["text"], heads)
        elif op.startswith("cross_attn_prompt_text"):
            s["prompt"] = s["prompt"] + _attention(w, full, pe("prompt"), pe("text"), s["text"], heads)
        elif op.startswith("cross_attn_prompt_img"):
            s["prompt"] = s["prompt"] + _attention(w, full, pe("prompt"), pe("img"), s["img"], heads)
        else:
            stream = op.split("_")[1]
            s[stream] = s[stream] + _mlp(w, full, s[stream]) if op.startswith("mlp") else _norm(w, full, s[stream])


def authors_prompter(w: Weights, image: torch.Tensor, text: torch.Tensor, pooled: torch.Tensor,
                     logit_scale: torch.Tensor, logit_bias: torch.Tensor, *, heads: int, queries: int,
                     mask_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Args: w: the prompter's weights under the authors' names (float32, LoRA-free); image: B×N×C patch tokens;
    text: B×L×C tokens; pooled: B×C; logit_scale, logit_bias: [1]. Returns: (sparse B×P×Cp, dense B×1×D×D)."""
    b, n, c = image.shape
    q = F.adaptive_avg_pool1d(text.transpose(1, 2), queries).transpose(1, 2)
    s = {"q1": q, "q2": q, "pe1": w["text_query_pe_embedding1"][None], "pe2": w["text_query_pe_embedding2"][None],
         "text": text}
    for i in range(2):
        _text_block(w, f"two_queries_text_attn_layers.{i}", s, heads)
    grid = int(n ** 0.5)
    img_pe = w["img_pe"].flatten(2).transpose(1, 2)
    first = {"text": s["q1"], "text_pe": s["pe1"], "img": image, "img_pe": img_pe}
    for i in range(2):
        _pit_block(w, f"queries1_to_img_attn_layers.{i}", BLOCKS["queries1_to_img_attn_layers"], first, heads)
    prompts = w["prompt_embedding"][None].expand(b, -1, -1)
    second = {"text": s["q2"], "text_pe": s["pe2"], "img": first["img"], "img_pe": img_pe, "prompt": prompts,
              "prompt_pe": w["prompt_pe_embedding"][None]}
    for i in range(2):
        _pit_block(w, f"prompt_queries2_img_attn_layers.{i}", BLOCKS["prompt_queries2_img_attn_layers"], second, heads)
    sparse = _mlp(w, "sparse_prompt_mlp", second["prompt"])
    fmap = second["img"].transpose(1, 2).reshape(b, c, grid, grid)
    fmap = F.conv2d(fmap, w["dense_prompt_conv.0.weight"], w["dense_prompt_conv.0.bias"], padding=1)
    fmap = F.batch_norm(fmap, w["dense_prompt_conv.1.running_mean"], w["dense_prompt_conv.1.running_var"],
                        w["dense_prompt_conv.1.weight"], w["dense_prompt_conv.1.bias"], training=False)
    fmap = F.conv2d(F.gelu(fmap), w["dense_prompt_conv.3.weight"], w["dense_prompt_conv.3.bias"], padding=1)
    fmap = F.interpolate(fmap, size=(mask_size, mask_size), mode="bilinear", align_corners=True)
    fmap = fmap / fmap.norm(dim=1, keepdim=True)
    sentence = pooled / pooled.norm(dim=1, keepdim=True)
    dense = torch.einsum("bchw,bc->bhw", fmap, sentence)[:, None]
    return sparse, dense * logit_scale.exp() + logit_bias
