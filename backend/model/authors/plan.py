"""The conversion plan: for every tensor of our model, which of the authors' tensors make it and how.

Built from names and shapes only (the file is memory-mapped and no tensor is read here): shapes are checked by
running every recipe on meta tensors. Every key of the file must be used or deliberately dropped, every key of
our model must be made, and every shape must match; all problems are gathered into one error naming the keys.

LoRA (PEFT, r = alpha, so scale 1) is kept unmerged, as the authors ran it: each adapted layer's base weight is
copied as released (bfloat16) into our wrapper's base, and its A and B go into our adapter slots in float32 (SigLIP's
separate q/k/v adapters stacked into our packed projection's three groups). Merging would need a float32 copy of
every adapted weight (rounding ``W0 + B·A`` back to bfloat16 would erase most of the adapter, whose entries are far
below bfloat16's resolution at the base weight's size). Tensors copied unchanged keep the file's dtype. A LoRA slot
of ours where the file has no adapter starts fresh: B = 0, A drawn like a new adapter, for fine-tuning.
"""

from __future__ import annotations

import math
import re
import zlib
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import torch

from backend.errors import BackendError

from . import keymap

Reader = Callable[[str], torch.Tensor]
_SHOWN = 8
# Our plain name for a layer's adapter matrices: ``<adapted tensor>.lora_a`` / ``.lora_b``.
_ADAPTER_SUFFIXES = {".lora_A": ".lora_a", ".lora_B": ".lora_b"}


@dataclass(frozen=True)
class Recipe:
    """How one of our tensors is made.

    Attributes:
        sources: the authors' keys it reads (empty for a fresh LoRA slot).
        make: given a reader of the authors' tensors, returns the tensor.
    """

    sources: tuple[str, ...]
    make: Callable[[Reader], torch.Tensor]


def _copy(key: str) -> Recipe:
    return Recipe((key,), lambda read: read(key))


def _adapter(key: str) -> Recipe:
    """A PEFT ``lora_A`` / ``lora_B`` matrix, in float32 (our trained parts' precision)."""
    return Recipe((key,), lambda read: read(key).float())


def _then(recipe: Recipe, op: Callable[[torch.Tensor], torch.Tensor]) -> Recipe:
    return Recipe(recipe.sources, lambda read: op(recipe.make(read)))


def _cat(parts: list[Recipe]) -> Recipe:
    return Recipe(tuple(k for p in parts for k in p.sources), lambda read: torch.cat([p.make(read) for p in parts]))


def _stack(parts: list[Recipe]) -> Recipe:
    return Recipe(tuple(k for p in parts for k in p.sources),
                  lambda read: torch.stack([p.make(read) for p in parts]))


def _fresh_lora(name: str, shape: tuple[int, ...], seed: int) -> Recipe:
    """A new adapter slot: B zero; A uniform like ``kaiming_uniform_(a=√5)`` per group (fan-in = input width)."""
    def make(_read: Reader) -> torch.Tensor:
        if name.endswith("lora_b"):
            return torch.zeros(shape)
        generator = torch.Generator().manual_seed(seed ^ zlib.crc32(name.encode()))
        fan_in = math.prod(shape[-3:]) if len(shape) == 4 else shape[-1]
        bound = 1.0 / math.sqrt(fan_in)  # gain √(2/(1+5)) × √(3/fan_in)
        return (torch.rand(shape, generator=generator) * 2 - 1) * bound
    return Recipe((), make)


class _Problems:
    def __init__(self) -> None:
        self.items: dict[str, list[str]] = defaultdict(list)

    def add(self, kind: str, text: str) -> None:
        self.items[kind].append(text)

    def raise_if_any(self, source_name: str) -> None:
        if not self.items:
            return
        parts = []
        for kind, texts in self.items.items():
            shown = ", ".join(sorted(texts)[:_SHOWN]) + (f" (+{len(texts) - _SHOWN} more)" if len(texts) > _SHOWN
                                                          else "")
            parts.append(f"{kind} ({len(texts)}): {shown}")
        raise BackendError("weights", f"{source_name} is not an RSRefSeg 2 checkpoint in the authors' layout that "
                                      "this model can take; " + "; ".join(parts),
                           "use rrsisd.pth or refsegrs.pth from the Hugging Face repo KyanChen/RSRefSeg2, unchanged, "
                           "with the rsrefseg2-paper model config")


def _logical(state: dict[str, torch.Tensor], problems: _Problems) -> dict[str, dict[str, Recipe]]:
    """Per part: the authors' tensors under their own names, LoRA unwrapped (``X.base_layer.weight`` → ``X.weight``,
    ``X.lora_A.default.weight`` → ``X.lora_A``, the same for B)."""
    parts: dict[str, dict[str, Recipe]] = defaultdict(dict)
    adapters: dict[tuple[str, str], dict[str, str]] = defaultdict(dict)
    for key in state:
        split = keymap.split_part(key)
        if split is None:
            problems.add("unknown keys", key)
            continue
        part, name = split
        if keymap.is_ignored(part, name):
            continue
        lora = next((s for s in keymap.LORA_SUFFIXES if name.endswith(s)), None)
        if lora is not None:
            adapters[(part, name[:-len(lora)])]["A" if "lora_A" in lora else "B"] = key
        elif keymap.BASE_INFIX in name:
            site, _, tensor = name.partition(keymap.BASE_INFIX)
            adapters[(part, site)][tensor] = key
        else:
            parts[part][name] = _copy(key)
    for (part, site), keys in adapters.items():
        sites = keymap.LORA_SITES.get(part)
        if sites is None or not sites.fullmatch(site):
            problems.add("LoRA at a site the authors' model has none", f"{part}:{site}")
            continue
        if not {"A", "B", "weight"} <= keys.keys() or not keys.keys() <= {"A", "B", "weight", "bias"}:
            problems.add("incomplete LoRA layers (need base_layer.weight, lora_A and lora_B)",
                         f"{part}:{site} has {sorted(keys)}")
            continue
        lora_a, lora_b = state[keys["A"]], state[keys["B"]]
        if _rank(lora_a, 0) is None or _rank(lora_a, 0) != _rank(lora_b, 1):
            problems.add("LoRA pairs of unequal ranks (lora_A's rows must equal lora_B's columns)",
                         f"{part}:{site} lora_A {tuple(lora_a.shape)}, lora_B {tuple(lora_b.shape)}")
        parts[part][f"{site}.weight"] = _copy(keys["weight"])
        parts[part][f"{site}.lora_A"] = _adapter(keys["A"])
        parts[part][f"{site}.lora_B"] = _adapter(keys["B"])
        if "bias" in keys:
            parts[part][f"{site}.bias"] = _copy(keys["bias"])
    return parts


def _plain(parts: dict[str, dict[str, Recipe]], problems: _Problems) -> dict[str, tuple[str, Recipe]]:
    """Our plain (unwrapped) names → (the authors' name shown in errors, recipe)."""
    plain: dict[str, tuple[str, Recipe]] = {}
    for part, names in parts.items():
        prefix = keymap.OUR_PREFIX[part]
        fused: dict[tuple[str, str], dict[str, Recipe]] = defaultdict(dict)
        for name, recipe in names.items():
            adapter = next((s for s in _ADAPTER_SUFFIXES if name.endswith(s)), None)
            if adapter is not None:  # X.lora_A: named after the adapted tensor, X.weight
                name = name[: -len(adapter)] + ".weight"
            qkv = keymap.QKV.fullmatch(name) if part in ("vision", "text") else None
            map_in = keymap.MAP_IN_PROJ.fullmatch(name) if part == "vision" else None
            if qkv:
                fused[(qkv[1], qkv[3] + (adapter or ""))][qkv[2]] = recipe
            elif map_in:
                tensor = map_in[1]
                plain[f"{prefix}attn_pool.q.{tensor}"] = (name, _then(recipe, lambda t: t[: t.shape[0] // 3]))
                plain[f"{prefix}attn_pool.kv.{tensor}"] = (name, _then(recipe, lambda t: t[t.shape[0] // 3:]))
            else:
                ours = keymap.RENAME[part](name)
                if ours is None:
                    problems.add("unknown keys", f"{part}:{name}")
                elif adapter is not None:
                    plain[prefix + ours + _ADAPTER_SUFFIXES[adapter]] = (name + adapter, recipe)
                elif part == "vision" and ours == "pos_embed":
                    plain[prefix + ours] = (name, _then(recipe, lambda t: t.unsqueeze(0)))
                elif part == "text_scalar":
                    plain[prefix + ours] = (name, _then(recipe, lambda t: t.reshape(())))
                else:
                    plain[prefix + ours] = (name, recipe)
        for (layer, tensor), qkv_parts in fused.items():
            shown = f"{part}:encoder.layers.{layer}.self_attn.{{q,k,v}}_proj.{tensor}"
            if set(qkv_parts) != {"q", "k", "v"}:
                problems.add("incomplete q/k/v projections", f"{shown} has only {sorted(qkv_parts)}")
                continue
            weight, _, adapter = tensor.partition(".")
            if adapter:  # one adapter per projection: our packed layer's three groups
                recipe = _stack([qkv_parts[p] for p in "qkv"])
                plain[prefix + keymap.fused_qkv_name(part, layer, weight) + _ADAPTER_SUFFIXES["." + adapter]] = (
                    shown, recipe)
            else:
                recipe = _cat([qkv_parts[p] for p in "qkv"])
                plain[prefix + keymap.fused_qkv_name(part, layer, tensor)] = (shown, recipe)
    return plain


def _our_key(plain: str, target: dict[str, torch.Tensor]) -> str | None:
    """The real state-dict key of a plain name: itself, or inside our LoRA wrapper (``.base.``) or weight
    parametrisation (``.parametrizations.<tensor>.original``); for an adapter matrix (``M.<tensor>.lora_a``) the
    wrapper's ``M.lora_a`` or the parametrisation's ``M.parametrizations.<tensor>.0.lora_a``."""
    rest, _, last = plain.rpartition(".")
    if last in ("lora_a", "lora_b"):
        module, _, tensor = rest.rpartition(".")
        candidates = (f"{module}.{last}", f"{module}.parametrizations.{tensor}.0.{last}") if tensor == "weight" \
            else (f"{module}.parametrizations.{tensor}.0.{last}",)
    else:
        candidates = (plain, f"{rest}.base.{last}", f"{rest}.parametrizations.{last}.original")
    return next((key for key in candidates if key in target), None)


def _meta_reader(state: dict[str, torch.Tensor]) -> Reader:
    return lambda key: torch.empty(state[key].shape, dtype=state[key].dtype, device="meta")


def _rank(matrix: torch.Tensor, dim: int) -> int | None:
    """A LoRA matrix's rank: rows of A (``dim`` 0), columns of B (``dim`` 1); None when it is no matrix."""
    return matrix.shape[dim] if matrix.dim() >= 2 else None


def _made_shape(recipe: Recipe, state: dict[str, torch.Tensor]) -> tuple[int, ...] | str:
    """The shape ``recipe`` makes from the file's shapes (on meta tensors), or why it cannot: a recipe's own shape
    error (a ``logit_scale`` of [2] where one number belongs, q/k/v adapters of different ranks) names the
    sources' shapes instead of escaping as an internal error. (Some torch versions' meta kernels report a shape
    mismatch as an ``AssertionError``: torch 2.6's ``torch.stack`` does.)"""
    try:
        return tuple(recipe.make(_meta_reader(state)).shape)
    except (RuntimeError, ValueError, IndexError, AssertionError) as exc:
        sources = ", ".join(f"{key} {tuple(state[key].shape)}" for key in recipe.sources)
        return f"cannot be made from {sources} ({str(exc).splitlines()[0][:120]})"


def build_plan(state: dict[str, torch.Tensor], target: dict[str, torch.Tensor], *, seed: int,
               source_name: str) -> dict[str, Recipe]:
    """Map the authors' ``state_dict`` onto ``target`` (our model's state dict, meta tensors are enough).

    Args:
        state: the authors' tensors (memory-mapped; only shapes and dtypes are looked at).
        target: our model's ``state_dict()``.
        seed: seeds the fresh LoRA A matrices.
        source_name: the file name shown in errors.

    Returns:
        {our key: recipe} covering every key of ``target``.

    Raises:
        BackendError("weights"): unknown, unused, missing or mis-shaped keys (all of them, by name).
    """
    problems = _Problems()
    plan: dict[str, Recipe] = {}
    shown: dict[str, str] = {}
    for plain, (authors_name, recipe) in _plain(_logical(state, problems), problems).items():
        key = _our_key(plain, target)
        if key is None:
            problems.add("keys this model has no place for", authors_name)
            continue
        made = _made_shape(recipe, state)
        if key.endswith((".0.lora_a", ".0.lora_b")) and len(target[key].shape) == 3 and len(made) == 2:
            recipe = _then(recipe, lambda t: t.unsqueeze(0))  # one adapter: a one-group ``LoRADelta``
        plan[key], shown[key] = recipe, authors_name
    lora_slot = re.compile(r".+\.(lora_a|lora_b)")
    for key, tensor in target.items():
        if key not in plan and lora_slot.fullmatch(key):
            plan[key] = _fresh_lora(key, tuple(tensor.shape), seed)
        elif key not in plan:
            problems.add("missing keys (nothing in the file makes them)", key)
    for key, recipe in plan.items():
        if not recipe.sources:
            continue
        shape = _made_shape(recipe, state)
        if isinstance(shape, str):
            problems.add("wrong shapes", f"{shown[key]} {shape}, needed {tuple(target[key].shape)} ({key})")
        elif shape != tuple(target[key].shape):
            problems.add("wrong shapes", f"{shown[key]} {shape} != {tuple(target[key].shape)} ({key})")
    problems.raise_if_any(source_name)
    return plan
