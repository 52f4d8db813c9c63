"""The sidecar JSON of a checkpoint, read and checked completely before anything is built from it.

A sidecar is written by ``save_checkpoint``; one edited by hand, cut short or made by another version must fail
with a message that names the file and every problem found (missing keys, wrong types, non-positive sizes, an
architecture this version does not know), never with a library's exception from deep inside the builder. The
model config is checked against the config dataclasses' own type hints, so new config fields are covered without
touching this file.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import types
import typing
from pathlib import Path
from typing import Any

from backend.errors import BackendError
from backend.files.bounded_json import JsonLimitError, loads_bounded

from ..config import ARCHS, SAM_FAMILIES, ModelConfig, Sam2Config, SamConfig

FORMAT = "rsrefseg2-checkpoint"
FORMAT_VERSION = 1
META_TEXT_KEYS = ("title", "description", "dataset")

# Numbers in the config are sizes and must be > 0, except these (by field name).
_ANY_SIGN = {"seed", "alpha"}
_RANGED = {"input_size"}  # bounds of their own (``_check_input_size``)
_NON_NEGATIVE = {"dropout", "mean", "window_size", "encoder_global_attn_indexes", "global_att_blocks",
                 "fpn_top_down_levels", "close_gaps"}
# Sizes inside an inline open_clip model config (``clip.model_cfg``), checked wherever they appear.
_OPEN_CLIP_SIZES = {"embed_dim", "image_size", "layers", "width", "head_width", "heads", "patch_size",
                    "context_length", "vocab_size", "mlp_ratio"}
_SHA256 = re.compile(r"[0-9a-f]{64}")
_MAX_PROBLEMS = 6
MAX_SIDECAR_BYTES = 16 << 20
MAX_INPUT_SIZE = 4096  # model input side in pixels (the paper's models: 1024 for SAM, 512 for CLIP)
GSD_RANGE_M = (1e-3, 1e4)  # metres per pixel a training resolution can be (1 mm drone to 10 km products)


def _shown(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if typing.get_origin(tp) is tuple:
        return "a list"
    return {bool: "true/false", int: "an integer", float: "a number", str: "a string", dict: "an object",
            type(None): "null"}.get(typing.get_origin(tp) or tp, getattr(tp, "__name__", str(tp)))


def _number(value: Any, tp: type, where: str, name: str, problems: list[str]) -> None:
    ok = (isinstance(value, (int, float) if tp is float else int) and not isinstance(value, bool)
          and math.isfinite(value))
    if not ok:
        problems.append(f"{where} must be {_type_name(tp)}, got {_shown(value)}")
    elif name not in _ANY_SIGN | _RANGED and (value < 0 or (value == 0 and name not in _NON_NEGATIVE)):
        problems.append(f"{where} must be {'non-negative' if name in _NON_NEGATIVE else 'positive'}, got {value}")


def _check(value: Any, tp: Any, where: str, name: str, problems: list[str]) -> None:
    """Append to ``problems`` what is wrong with ``value`` as a ``tp`` (a config field's type hint)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return
        branches = [a for a in args if a is not type(None)]
        attempts = [[] for _ in branches]
        for branch, found in zip(branches, attempts, strict=True):
            _check(value, branch, where, name, found)
        if all(attempts):
            problems.extend(attempts[0] if len(branches) == 1 else
                            [f"{where} must be {_type_name(tp)}, got {_shown(value)}"])
        return
    if dataclasses.is_dataclass(tp):
        _check_dataclass(value, tp, where, problems)
    elif tp in (int, float):
        _number(value, tp, where, name, problems)
    elif tp is bool or tp is str:
        if not isinstance(value, tp):
            problems.append(f"{where} must be {_type_name(tp)}, got {_shown(value)}")
    elif origin is tuple:
        fixed = not (len(args) == 2 and args[1] is Ellipsis)
        if not isinstance(value, list) or (fixed and len(value) != len(args)):
            size = f" of {len(args)}" if fixed else ""
            problems.append(f"{where} must be a list{size}, got {_shown(value)}")
            return
        for i, item in enumerate(value):
            _check(item, args[i] if fixed else args[0], f"{where}[{i}]", name, problems)
    elif (origin or tp) is dict:
        if not isinstance(value, dict):
            problems.append(f"{where} must be an object, got {_shown(value)}")
        elif name == "model_cfg":
            _check_open_clip_sizes(value, where, problems)


def _check_open_clip_sizes(value: Any, where: str, problems: list[str]) -> None:
    for key, item in (value.items() if isinstance(value, dict) else ()):
        if isinstance(item, dict):
            _check_open_clip_sizes(item, f"{where}.{key}", problems)
        elif key in _OPEN_CLIP_SIZES:
            for i, size in enumerate(item if isinstance(item, list) else [item]):
                _number(size, float, f"{where}.{key}" + (f"[{i}]" if isinstance(item, list) else ""), key,
                        problems)


def _check_dataclass(value: Any, cls: type, where: str, problems: list[str]) -> None:
    if not isinstance(value, dict):
        problems.append(f"{where} must be an object, got {_shown(value)}")
        return
    hints = typing.get_type_hints(cls)
    if cls is ModelConfig:  # the sam section's class depends on its family
        hints["sam"] = _sam_class(value.get("sam"), where, problems)
    declared = {f.name: f for f in dataclasses.fields(cls)}
    for key in sorted(set(value) - set(declared)):
        problems.append(f"{where}.{key} is not a known setting")
    for key, f in declared.items():
        if key in value:
            if hints[key] is not None:
                _check(value[key], hints[key], f"{where}.{key}", key, problems)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            problems.append(f"{where}.{key} is missing")


def _sam_class(sam: Any, where: str, problems: list[str]) -> type | None:
    """The SAM config class for the section's family (None, after noting the problem, for an unknown one)."""
    family = sam.get("family", "sam1") if isinstance(sam, dict) else "sam1"
    if family in SAM_FAMILIES:
        return SamConfig if family == "sam1" else Sam2Config
    problems.append(f"{where}.sam.family {_shown(family)} is not a SAM family this version knows "
                    f"({', '.join(SAM_FAMILIES)})")
    return None


def check_meta(meta: Any, where: str, problems: list[str]) -> None:
    """Append what is wrong with the sidecar's optional ``meta`` object (title, description, dataset: strings;
    gsd_range_m: null or [lo, hi] inside ``GSD_RANGE_M`` with lo <= hi). Other keys are left alone."""
    if not isinstance(meta, dict):
        problems.append(f"{where} must be an object, got {_shown(meta)}")
        return
    for key in META_TEXT_KEYS:
        if key in meta and meta[key] is not None and not isinstance(meta[key], str):
            problems.append(f"{where}.{key} must be a string, got {_shown(meta[key])}")
    gsd = meta.get("gsd_range_m")
    if gsd is None:
        return
    numbers = isinstance(gsd, list) and len(gsd) == 2 and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in gsd)
    if not numbers or not GSD_RANGE_M[0] <= gsd[0] <= gsd[1] <= GSD_RANGE_M[1]:  # NaN fails every comparison
        problems.append(f"{where}.gsd_range_m must be [lo, hi], two numbers of metres per pixel with "
                        f"{GSD_RANGE_M[0]:g} <= lo <= hi <= {GSD_RANGE_M[1]:g}, got {_shown(gsd)}")


def _check_input_size(config: dict[str, Any], problems: list[str]) -> None:
    """``config.input_size`` (its type is checked with the other fields) must be a multiple of SAM's
    stride and at most ``MAX_INPUT_SIZE``: a hand-edited 100000 would build a 6250² positional embedding."""
    size, sam = config.get("input_size"), config.get("sam")
    if not isinstance(size, int) or isinstance(size, bool) or not isinstance(sam, dict):
        return
    patch = sam.get("patch_size", 16)
    stride = 32 if sam.get("family") == "sam2.1" else patch if isinstance(patch, int) and patch > 0 else 16
    if size % stride or not stride <= size <= MAX_INPUT_SIZE:
        problems.append(f"config.input_size must be a multiple of {stride} from {stride} to {MAX_INPUT_SIZE} "
                        f"(SAM's {'stride' if stride == 32 else 'patch'} {stride}), got {size}")


def _check_base_weights(records: Any, where: str, problems: list[str]) -> None:
    if not isinstance(records, dict):
        problems.append(f"{where} must be an object with 'clip' and 'sam', got {_shown(records)}")
        return
    for kind in ("clip", "sam"):
        if kind not in records:
            problems.append(f"{where}.{kind} is missing")
            continue
        rec = records[kind]
        if rec is not None and not (isinstance(rec, dict) and isinstance(rec.get("file"), str) and rec["file"]
                                    and isinstance(rec.get("sha256"), str) and _SHA256.fullmatch(rec["sha256"])):
            problems.append(f"{where}.{kind} must be null or {{\"file\": name, \"sha256\": 64 hex digits}}, "
                            f"got {_shown(rec)}")


def problems_of(data: dict[str, Any]) -> list[str]:
    """Everything wrong with a parsed sidecar (an empty list when it is sound)."""
    problems: list[str] = []
    for key in ("arch", "include_base", "base_weights", "config"):
        if key not in data:
            problems.append(f"'{key}' is missing")
    if not isinstance(data.get("include_base", False), bool):
        problems.append(f"include_base must be true/false, got {_shown(data['include_base'])}")
    arch = data.get("arch")
    if "arch" in data and arch not in ARCHS:
        problems.append(f"arch {_shown(arch)} is not an architecture this version knows ({', '.join(ARCHS)})")
    if "base_weights" in data:
        _check_base_weights(data["base_weights"], "base_weights", problems)
    config = data.get("config")
    if "config" in data:
        _check_dataclass(config, ModelConfig, "config", problems)
        if isinstance(config, dict):
            _check_input_size(config, problems)
        if isinstance(config, dict) and "arch" in config and arch in ARCHS and config["arch"] != arch:
            problems.append(f"config.arch {_shown(config['arch'])} differs from arch {_shown(arch)} (edited?)")
    if "meta" in data:
        check_meta(data["meta"], "meta", problems)
    clip = config.get("clip") if isinstance(config, dict) else None
    if isinstance(clip, dict) and clip.get("model_cfg") is None and isinstance(clip.get("name"), str):
        import open_clip

        if clip["name"] not in open_clip.list_models():
            problems.append(f"config.clip.name {_shown(clip['name'])} is not a CLIP model known to open_clip "
                            f"{open_clip.__version__}")
    return problems


def read_sidecar(checkpoint: Path) -> dict[str, Any]:
    """The sidecar of ``checkpoint`` (``.json`` beside it), checked.

    Raises:
        BackendError("checkpoint"): the sidecar is missing, not JSON, of another format or version, or
            malformed; the message names the file and lists the problems found.
    """
    sidecar = checkpoint.with_suffix(".json")
    restore = "restore the .json written next to the .safetensors file by training (save_checkpoint)"
    if not sidecar.is_file():
        raise BackendError("checkpoint", f"{sidecar} (the checkpoint's config) is missing",
                           "keep the .json written next to the .safetensors file")
    if sidecar.stat().st_size > MAX_SIDECAR_BYTES:
        raise BackendError("checkpoint", f"{sidecar} is {sidecar.stat().st_size} bytes; a checkpoint's sidecar is a "
                                         f"few kilobytes (at most {MAX_SIDECAR_BYTES >> 20} MB are read)", restore)
    try:
        data = loads_bounded(sidecar.read_bytes())
    except JsonLimitError as exc:
        raise BackendError("checkpoint", f"{sidecar} is not valid JSON ({exc})", restore) from None
    if not isinstance(data, dict):
        raise BackendError("checkpoint", f"{sidecar} must hold a JSON object, not {_type_name(type(data))}",
                           restore)
    if data.get("format") != FORMAT or data.get("format_version") != FORMAT_VERSION:
        raise BackendError("checkpoint", f"{sidecar} is not a {FORMAT} v{FORMAT_VERSION} sidecar",
                           "re-export the checkpoint with this version of the plugin")
    problems = problems_of(data)
    if problems:
        more = f"; and {len(problems) - _MAX_PROBLEMS} more" if len(problems) > _MAX_PROBLEMS else ""
        raise BackendError("checkpoint", f"{sidecar} is malformed: {'; '.join(problems[:_MAX_PROBLEMS])}{more}",
                           f"{restore}; a checkpoint made by another version needs that version")
    return data
