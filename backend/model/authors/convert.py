"""``import_authors``: the authors' released ``.pth`` → our whole-model ``.safetensors`` + ``.json`` checkpoint.

The file is opened with ``torch.load(weights_only=True, mmap=True)``: nothing in it runs (a file holding other
Python objects is refused, with no fallback to full unpickling) and tensors are read from disk only when they are
converted, one at a time, straight into the output file. Peak memory is about the file's size (its pages, mapped)
plus the largest tensor being converted. The authors' LoRA stays unmerged (``plan``): the base weights are
written in bf16 as released, so the output is about the size of the input (≈ 2.9 GB for the paper model).
The result loads with ``backend.model.checkpoint.io.load_model`` like any
checkpoint saved with ``include_base=True``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import torch

from backend.errors import BackendError
from backend.files.scratch import create_scratch

from ..build import build_model
from ..checkpoint.io import CheckpointMeta
from ..checkpoint.sidecar import FORMAT, FORMAT_VERSION
from ..checkpoint.stored_config import stored_metadata
from ..config import ModelConfig, load_config
from ..weight_io.files import kind_of, read_torch_pickle
from .plan import build_plan
from .stream_write import write_streamed

PAPER_CONFIG = "rsrefseg2-paper"
_HINT = ("download rrsisd.pth or refsegrs.pth again from the Hugging Face repo KyanChen/RSRefSeg2; a file holding "
         "Python objects besides tensors is never loaded")
_THIRD_PARTY = "as re-evaluated by a third party with the authors' code"
# What the two released files are (AUTHORS_CHECKPOINTS.md §0); any other name gets a generic description.
AUTHORS_META = {
    "rsrefseg2-rrsisd": CheckpointMeta(
        title="RSRefSeg 2 — RRSIS-D (authors' weights)", dataset="RRSIS-D",
        description=f"The authors' RSRefSeg 2 (SigLIP 2 so400m + SAM 2.1 Hiera-L) trained on RRSIS-D: gIoU 69.06 / "
                    f"cIoU 79.66 on the RRSIS-D test split ({_THIRD_PARTY}; the paper reports gIoU 69.17)."),
    "rsrefseg2-refsegrs": CheckpointMeta(
        title="RSRefSeg 2 — RefSegRS (authors' weights)", dataset="RefSegRS",
        description=f"The authors' RSRefSeg 2 (SigLIP 2 so400m + SAM 2.1 Hiera-L) trained on RefSegRS: gIoU 77.36 "
                    f"/ cIoU 81.21 on the RefSegRS test split ({_THIRD_PARTY}; the paper reports 77.39 / 81.24)."),
}


def meta_for(name: str, source: Path) -> CheckpointMeta:
    """The sidecar meta of an imported checkpoint called ``name`` (known names carry their reported scores)."""
    return AUTHORS_META.get(name) or CheckpointMeta(
        title=f"RSRefSeg 2 — {name} (authors' weights)",
        description=f"The authors' RSRefSeg 2 weights, imported from {source.name}.")


def read_authors_state(path: Path) -> dict[str, torch.Tensor]:
    """The ``state_dict`` of an authors' file, memory-mapped, read with ``weights_only=True`` only.

    Raises:
        BackendError("weights"): missing file, not a PyTorch file, a general pickle (refused; nothing ran), or no
            ``state_dict`` of named tensors inside.
    """
    if not path.is_file():
        raise BackendError("weights", f"{path} does not exist", "give the path of the downloaded .pth file")
    kind = kind_of(path)
    if kind not in ("zip", "pickle"):
        raise BackendError("weights", f"{path} is not a PyTorch file (the authors' checkpoints are .pth files "
                                      "written by torch.save)", _HINT)
    data = read_torch_pickle(path, "weights", _HINT, mmap=kind == "zip")  # legacy files cannot be mapped
    state = data.get("state_dict") if isinstance(data, dict) else None
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in state.items()):
        raise BackendError("weights", f"{path} has no 'state_dict' of named tensors (not an RSRefSeg 2 checkpoint "
                                      "of the authors)", _HINT)
    return state


def target_state(config: ModelConfig) -> dict[str, torch.Tensor]:
    """Our model's state dict on the meta device (names, shapes and dtypes; no memory, nothing downloaded)."""
    with torch.device("meta"):
        return build_model(config).state_dict()


def _check_adapter_scale(config: ModelConfig) -> None:
    """The authors' adapters are kept unmerged, so our slots must apply them at the authors' scale, 1 (alpha = r).

    Raises:
        BackendError("weights"): a model config whose LoRA scale differs (the import would change the outputs).
    """
    for name, lora in (("clip.vision_lora", config.clip.vision_lora), ("clip.text_lora", config.clip.text_lora),
                       ("sam.lora", config.sam.lora)):
        if lora is not None and lora.alpha != lora.rank:
            raise BackendError("weights", f"the model config's {name} has scale alpha/rank = {lora.alpha}/{lora.rank}"
                                          ", but the authors' adapters were trained at scale 1",
                               "import with the rsrefseg2-paper config (alpha = rank = 16)")


def _write_sidecar(path: Path, config: ModelConfig, meta: CheckpointMeta) -> Path:
    sidecar = path.with_suffix(".json")
    data = {"format": FORMAT, "format_version": FORMAT_VERSION, "arch": config.arch, "include_base": True,
            "base_weights": {"clip": None, "sam": None}, "config": config.to_dict(), "meta": meta.to_dict()}
    fd, tmp = create_scratch(path.parent, prefix=f".{sidecar.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as stream:
        json.dump(data, stream, indent=2)
    os.replace(tmp, sidecar)
    return sidecar


def import_authors(source: str | Path, dest: str | Path, *, config: ModelConfig | None = None,
                   meta: CheckpointMeta | None = None,
                   progress: Callable[[int, int], None] | None = None) -> Path:
    """Convert an authors' RSRefSeg 2 checkpoint into our checkpoint format.

    Args:
        source: ``rrsisd.pth`` / ``refsegrs.pth`` (``{"state_dict": ...}`` in the authors' layout).
        dest: the ``.safetensors`` to write; its ``.json`` sidecar is written beside it.
        config: the model the weights are for (default ``rsrefseg2-paper``; tests pass tiny configs).
        meta: the sidecar's meta (title, dataset, description); default: generic, naming the source file.
        progress: called with (tensors written, total).

    Returns:
        The ``.safetensors`` path.

    Raises:
        BackendError("weights"): the file cannot be read safely, or its keys/shapes do not fit the model (every
            offending key named); nothing is written then.
    """
    source, dest = Path(source), Path(dest)
    if dest.suffix != ".safetensors":
        raise ValueError(f"checkpoints are .safetensors files, got {dest.name!r}")
    config = config or load_config(PAPER_CONFIG)
    _check_adapter_scale(config)
    state = read_authors_state(source)
    target = target_state(config)
    plan = build_plan(state, target, seed=config.seed, source_name=source.name)
    meta_read = lambda key: torch.empty(state[key].shape, dtype=state[key].dtype, device="meta")  # noqa: E731
    entries = []
    for key in sorted(plan):
        recipe = plan[key]
        dtype = recipe.make(meta_read).dtype if recipe.sources else torch.float32
        entries.append((key, tuple(target[key].shape), dtype))

    def make(key: str) -> torch.Tensor:
        with torch.no_grad():
            return plan[key].make(state.__getitem__).contiguous()

    # Widest items first, as safetensors writes them: every tensor then starts aligned to its item size, so that
    # ``map_safetensors`` maps each one in place.
    entries.sort(key=lambda entry: -entry[2].itemsize)
    dest.parent.mkdir(parents=True, exist_ok=True)
    write_streamed(dest, entries, make, {**stored_metadata(config), "source": source.name}, progress)
    _write_sidecar(dest, config, meta or meta_for(dest.stem, source))
    return dest
