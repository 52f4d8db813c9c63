"""``ClipDualEncoder``: dense image features and token-level text features from an open_clip model."""

from __future__ import annotations

import contextlib
import copy
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import open_clip
import torch
import torch.nn.functional as F
from torch import nn

from ..config import ClipConfig
from ..lora import apply_lora
from .gemma_tokenizer import GemmaTokenizer, tokenizer_folder
from .towers import native_vision_tokens, text_tokens, timm_vision_tokens, word_embeddings

# timm's ViTs (open_clip's SigLIP towers) pack q, k and v into one ``attn.qkv`` Linear where Hugging Face's SigLIP,
# which the authors adapt with PEFT, has separate q/k/v_proj: each projection gets its own adapter.
PACKED_QKV = r"(.+\.)?attn\.qkv"


# What open_clip's factory logs (through the root logger) when it builds a named model without weights.
RANDOM_INIT_WARNING = "No pretrained weights loaded for model"


class _DropRandomInitWarning(logging.Filter):
    """Drops open_clip's "No pretrained weights loaded … Model initialized randomly" record, and nothing else."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(RANDOM_INIT_WARNING)


@contextlib.contextmanager
def _weights_assigned_afterwards(device: torch.device) -> Iterator[None]:
    """Silence open_clip's random-init warning for a build on the meta device, and only there.

    On the meta device no weight is initialised at all: such a build is the empty frame a checkpoint with its base
    weights (``checkpoint.io.load_model``) then fills with its own tensors, so "initialized randomly" would be
    false on every run with a trained checkpoint. Any other build without weights is random and keeps the warning.
    """
    if device.type != "meta":
        yield
        return
    root, drop = logging.getLogger(), _DropRandomInitWarning()
    root.addFilter(drop)
    try:
        yield
    finally:
        root.removeFilter(drop)


def create_open_clip(cfg: ClipConfig, weights: str | Path | None) -> nn.Module:
    """The open_clip model of ``cfg`` with weights from a local file (None: random init, nothing downloaded;
    on the meta device: no init, the weights are assigned afterwards)."""
    if cfg.model_cfg is None:
        # open_clip moves the model to ``device``: keep it on the default device (meta for size-only builds). A new
        # tensor's device, because torch.get_default_device() ignores a `with torch.device(...)` block before 2.7.
        device = torch.empty(0).device
        with _weights_assigned_afterwards(device):
            return open_clip.create_model(cfg.name, pretrained=None if weights is None else str(weights),
                                          load_weights=weights is not None, device=device)
    model_cfg = copy.deepcopy(cfg.model_cfg)
    custom_text = model_cfg.pop("custom_text", False)
    model = (open_clip.CustomTextCLIP if custom_text else open_clip.CLIP)(**model_cfg)
    if weights is not None:
        open_clip.load_checkpoint(model, str(weights))
    return model


class ClipDualEncoder(nn.Module):
    """open_clip dual encoder exposing ``encode_image_dense`` and ``encode_text`` (plus scale and bias)."""

    def __init__(self, *, model: nn.Module, cfg: ClipConfig) -> None:
        """Args:
            model: an open_clip ``CLIP``/``CustomTextCLIP`` (weights already loaded); frozen here, then LoRA
                adapters are added per ``cfg``.
            cfg: the CLIP part of the model config.
        """
        super().__init__()
        self.cfg = cfg
        self.model = model
        model.requires_grad_(False)
        if getattr(model, "logit_bias", None) is None:  # CLIP has no bias: a zero one keeps one code path
            model.logit_bias = nn.Parameter(torch.zeros_like(model.logit_scale), requires_grad=False)
        self._timm = hasattr(model.visual, "trunk")
        if self._timm and model.visual.trunk.num_features != self.embed_dim:
            raise ValueError(f"timm vision tower width {model.visual.trunk.num_features} differs from the joint "
                             f"width {self.embed_dim}: only SigLIP-style towers (width = embed_dim) are supported")
        if not cfg.project_tokens and getattr(model, "text", model).transformer.width != self.embed_dim:
            raise ValueError("project_tokens=false needs a text tower whose width equals embed_dim")
        if self._timm and tuple(model.visual.trunk.patch_embed.img_size) != (cfg.image_size, cfg.image_size):
            model.visual.trunk.set_input_size(img_size=cfg.image_size)
        self.register_buffer("mean", torch.tensor(cfg.mean, device="cpu").view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(cfg.std, device="cpu").view(1, 3, 1, 1), persistent=False)
        self.lora_names: list[str] = []
        if cfg.vision_lora is not None:
            self.lora_names += apply_lora(model.visual, cfg.vision_lora.target, cfg.vision_lora, PACKED_QKV)
        if cfg.text_lora is not None:
            text_root = model.text if hasattr(model, "text") else model.transformer
            self.lora_names += apply_lora(text_root, cfg.text_lora.target, cfg.text_lora)
        self._tokenizer = None

    @property
    def embed_dim(self) -> int:
        """C, the joint embedding width (output of the text projection)."""
        proj = getattr(self.model, "text", self.model).text_projection
        return proj.weight.shape[0] if isinstance(proj, nn.Module) else proj.shape[1]

    @property
    def word_dim(self) -> int:
        """W, the width of the text tower's input word embeddings (``encode_words``)."""
        return getattr(self.model, "text", self.model).token_embedding.embedding_dim

    @property
    def context_length(self) -> int:
        """The most tokens the text tower reads (its position embeddings)."""
        return getattr(self.model, "text", self.model).positional_embedding.shape[0]

    @property
    def logit_scale(self) -> nn.Parameter:
        """The model's log temperature (scalar parameter)."""
        return self.model.logit_scale

    @property
    def logit_bias(self) -> nn.Parameter:
        """The model's logit bias (SigLIP's own; a zero parameter for CLIP)."""
        return self.model.logit_bias

    def encode_image_dense(self, images: torch.Tensor, clear_last_block: bool = False) -> torch.Tensor:
        """Dense patch features.

        Args:
            images: B×3×S×S in [0, 1] at the model input size; resized bilinearly (no antialias) to the CLIP
                input size, then normalised.
            clear_last_block: ClearCLIP last block (zero-shot mode; see ``clip.towers``).

        Returns:
            B×C×g×g patch features (post final LN, in the joint space).
        """
        size = self.cfg.image_size
        if images.shape[-1] != size or images.shape[-2] != size:
            images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
        images = (images - self.mean.to(images.device)) / self.std.to(images.device)  # CPU after a meta build
        forward = timm_vision_tokens if self._timm else native_vision_tokens
        tokens = forward(self.model.visual, images, clear_last_block)
        grid = int(round(tokens.shape[1] ** 0.5))
        return tokens.transpose(1, 2).reshape(tokens.shape[0], -1, grid, grid)

    def _make_tokenizer(self) -> Callable[[list[str]], tuple[torch.Tensor, torch.Tensor]]:
        """SigLIP 2's Gemma tokenizer when ``cfg.tokenizer_files`` names one, else open_clip's (lengths from EOT)."""
        if self.cfg.tokenizer_files is not None:
            tower = getattr(self.model, "text", self.model)
            return GemmaTokenizer(folder=tokenizer_folder(self.cfg.tokenizer_files),
                                  context_length=self.cfg.context_length or tower.positional_embedding.shape[0])
        tokenizer = open_clip.get_tokenizer(self.cfg.tokenizer or self.cfg.name, context_length=self.cfg.context_length)
        eot = getattr(tokenizer, "eot_token_id", None)
        if eot is None:
            raise ValueError(f"open_clip's tokenizer for {self.cfg.tokenizer or self.cfg.name!r} is not CLIP's BPE; "
                             "SigLIP 2 models name their tokenizer.json with clip.tokenizer_files")

        def tokenize(texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
            ids = tokenizer(texts)  # SOT, tokens, EOT, zeros (0 is also a real token: "!")
            return ids, (ids == eot).int().argmax(dim=1) + 1

        return tokenize

    def tokenize(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids padded to the longest text of the batch, and the padding mask (True = padding).

        Padding is found from each text's length, never from the pad id's value (Gemma's is 0, but other
        tokenizers differ, and CLIP's pads with 0, a real token).

        Returns:
            (ids B×L long, pad_mask B×L bool).
        """
        if self._tokenizer is None:  # lazy: SigLIP 2's tokenizer needs files that may only exist at run time
            self._tokenizer = self._make_tokenizer()
        ids, lengths = self._tokenizer(list(texts))
        length = int(lengths.max())
        pad = torch.arange(length)[None] >= lengths[:, None]
        device = self.logit_scale.device
        return ids[:, :length].to(device), pad.to(device)

    def encode_text(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Token and pooled text features.

        Args:
            texts: B strings.

        Returns:
            (tokens B×L×C, pooled B×C, pad_mask B×L bool with True at padding positions).
        """
        ids, pad = self.tokenize(texts)
        tokens, pooled = text_tokens(self.model, ids, self.cfg.project_tokens)
        return tokens, pooled, pad

    def encode_words(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Context-free word features: token plus position embeddings, before the text transformer.

        A small text tower trained on few phrases can map words that matter little to its own loss ("left",
        "right") to nearly the same contextual tokens; these features still tell them apart.

        Returns:
            (words B×L×W, pad_mask B×L bool with True at padding positions).
        """
        ids, pad = self.tokenize(texts)
        return word_embeddings(self.model, ids), pad
