"""The one place that turns user options (checkpoint, config, weights, device, mode) into a predictor.

Used by the worker's ``load`` request and by ``python -m backend segment``:

* a checkpoint → ``backend.model.checkpoint.io.load_model`` (base weights verified against the checkpoint's record;
  when not given, they are looked up in the weights folder);
* a config name without a checkpoint → a randomly initialised model (for tests; a warning is logged);
* ``mode="zero-shot"`` without a checkpoint → the base CLIP and SAM weights are required (given, or found in
  the weights folder for the config's CLIP model and SAM size).

Base weight options may be file paths or names known to ``backend.weights.manager``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from backend.errors import BackendError
from backend.weights import manager as weights

log = logging.getLogger(__name__)

ZERO_SHOT_CONFIG = "rsrefseg2-b16"
SAM_SIZES = {768: "vit_b", 1024: "vit_l", 1280: "vit_h"}  # SAM image-encoder width → segment_anything size


def _sam_size(config: Any) -> str:
    if config.sam.family != "sam1":  # SAM 2.1 configs name their size, e.g. "sam2.1_hiera_large"
        return config.sam.name
    return SAM_SIZES.get(config.sam.encoder_embed_dim, f"custom-{config.sam.encoder_embed_dim}d")


def _cached_for(checkpoint: Path, kind: str) -> Path | None:
    """The weights-folder file for the base weights recorded in the checkpoint's sidecar (None if none/absent)."""
    from backend.model.checkpoint.sidecar import read_sidecar

    try:  # the checked reader: a huge, deeply nested or malformed sidecar is never parsed here
        record = read_sidecar(checkpoint)["base_weights"][kind]
    except BackendError:
        return None  # load_model reports an unreadable sidecar itself
    if not isinstance(record, dict):
        return None
    found = _from_cache(kind, file=record.get("file"), sha256=record.get("sha256"))
    log.info("%s base weights for %s from the weights folder: %s", kind, checkpoint.name, found or "not found")
    return found


def _from_cache(kind: str, *, file: str | None = None, sha256: str | None = None,
                arch: str | None = None) -> Path | None:
    """A base-weight file in the weights folder matching a recorded file name, a known hash or an architecture."""
    folder = weights.weights_dir()
    if file and (folder / file).is_file():
        return folder / file
    for name, path in weights.installed(folder).items():
        entry = weights.REGISTRY[name]
        if path is not None and entry.kind == kind and (
                (sha256 is not None and entry.sha256 == sha256) or (arch is not None and entry.arch == arch)):
            return path
    return None


def _resolve(option: str | None) -> Path | None:
    return None if option is None else weights.resolve(option)


# Embeddings kept per loaded model: enough for a second phrase on an 8000² view refined in 1024² tiles (81 tiles)
# to re-use every tile. At the paper's size one entry is ~9 MB (SAM 256×64² + SigLIP 1152×32², float32).
CACHED_IMAGES = 96


def load_predictor(checkpoint: str | None = None, config: str | None = None, clip_weights: str | None = None,
                   sam_weights: str | None = None, device: str = "auto", mode: str = "trained",
                   cache_size: int = CACHED_IMAGES, precision: str = "auto") -> Any:
    """Build a ready ``ReferringPredictor`` from user options.

    Args:
        checkpoint: a trained ``.safetensors`` checkpoint (its ``.json`` sidecar beside it), or None.
        config: a bundled config name ("tiny", "rsrefseg2-b16", …) or a JSON path, used without a checkpoint.
        clip_weights, sam_weights: base weights as paths or ``backend.weights.manager`` names; None = look in the
            weights folder when the model needs them.
        device: "auto", "cpu", "cuda", "cuda:N" or "mps".
        mode: "trained" (the checkpoint's prompter) or "zero-shot" (CLIP similarity prompts, base weights only).
        cache_size: how many images' (views' or tiles') embeddings the predictor keeps for re-queries.
        precision: compute precision, "auto" (bf16 where the device computes it natively), "fp32" or "bf16".

    Returns:
        The predictor, its model in eval mode on the chosen device.

    Raises:
        BackendError: "checkpoint" (missing/unreadable checkpoint or config), "weights" (base weights missing
            or not matching), "device" (accelerator not available), "bad_request" (unknown mode or precision).
    """
    from backend.model.authors.location import resolve_checkpoint
    from backend.model.checkpoint.io import load_model
    from backend.model.device import PRECISIONS, select_device
    from backend.predictor import ReferringPredictor

    if mode not in ("trained", "zero-shot"):
        raise BackendError("bad_request", f"unknown mode {mode!r}", "use 'trained' or 'zero-shot'")
    if (precision or "auto") not in PRECISIONS:  # refused before a multi-gigabyte model is read
        raise BackendError("bad_request", f"unknown precision {precision!r}", "use auto, fp32 or bf16")
    # An empty text is "not given" (a cleared settings field), never a name or a path.
    checkpoint, config = checkpoint or None, config or None
    clip_weights, sam_weights = clip_weights or None, sam_weights or None
    try:
        torch_device = select_device(device)
    except RuntimeError as exc:  # torch's own parser: "Invalid device string"
        raise BackendError("device", f"{device!r} is not a device name",
                           "use auto, cpu, cuda, cuda:N (N = 0, 1, …) or mps") from exc
    clip_path, sam_path = _resolve(clip_weights), _resolve(sam_weights)
    if checkpoint is not None:
        path = resolve_checkpoint(checkpoint)  # a path, or the name of an imported checkpoint
        if not path.is_file():
            raise BackendError("checkpoint", f"checkpoint not found: {path}",
                               "give the path of a trained .safetensors checkpoint (with its .json beside it), or "
                               "the name of an imported one (python -m backend weights import-authors)")
        clip_path = clip_path or _cached_for(path, "clip")
        sam_path = sam_path or _cached_for(path, "sam")
        model = load_model(path, clip_weights=clip_path, sam_weights=sam_path, device=torch_device)
    else:
        model = _build_without_checkpoint(config, clip_path, sam_path, mode).to(torch_device).eval()
    return ReferringPredictor(model, device=torch_device, mode=mode, cache_size=cache_size,
                              precision=precision or "auto")


def _build_without_checkpoint(config: str | None, clip_path: Path | None, sam_path: Path | None,
                              mode: str) -> Any:
    """A model from a config: random init for tests, or base weights only for zero-shot."""
    from backend.model.build import build_model
    from backend.model.config import load_config

    if config is None and mode != "zero-shot":
        raise BackendError("checkpoint", "no checkpoint given",
                           "pass a trained checkpoint, or use mode 'zero-shot' with the base CLIP and SAM weights")
    name = config or ZERO_SHOT_CONFIG
    try:
        cfg = load_config(name)
    except (FileNotFoundError, ValueError, TypeError, KeyError, AttributeError) as exc:
        reason = f"it lacks the key {exc}" if isinstance(exc, KeyError) else str(exc)
        raise BackendError("checkpoint", f"cannot use model config {name!r}: {reason}",
                           "give a bundled config name or a config JSON file") from exc
    if mode == "zero-shot":
        clip_path = clip_path or _from_cache("clip", arch=cfg.clip.name)
        sam_path = sam_path or _from_cache("sam", arch=_sam_size(cfg))
        missing = [k for k, p in (("CLIP", clip_path), ("SAM", sam_path)) if p is None]
        if missing:
            raise BackendError("weights", f"zero-shot mode needs the base {' and '.join(missing)} weights "
                               f"({cfg.clip.name}, SAM {_sam_size(cfg)})",
                               "pass them as clip_weights/sam_weights, or install them with "
                               "`python -m backend weights download NAME` (see `weights list`)")
    else:
        log.warning("building config %r with %s: its outputs are meaningless (use this for tests only)", name,
                    "random weights" if clip_path is None and sam_path is None else "an untrained prompter")
    return build_model(cfg, clip_weights=clip_path, sam_weights=sam_path)


def describe(predictor: Any) -> str:
    """A one-line description of the predictor's model, e.g. "rsrefseg2 · CLIP ViT-B-16 448px · SAM vit_b ·
    1024px · trained · fp32" (stored in the output's ``model`` attribute and shown in the plugin)."""
    cfg = predictor.model.config
    return (f"{cfg.arch} · CLIP {cfg.clip.name} {cfg.clip.image_size}px · SAM {_sam_size(cfg)} · "
            f"{cfg.input_size}px · {predictor.mode} · {predictor.precision}")
