"""Low-rank adapters (LoRA) for frozen linear layers, written for this project.

Three forms, one maths (``W' = W + (alpha / rank) · B·A``, ``B`` zero-initialised so a fresh adapter changes
nothing):

* ``LoRALinear`` wraps an ``nn.Linear`` (SAM's ``qkv``/``proj``, timm's attention, MLP linears). Dropout is
  applied to the adapter's input, as in PEFT.
* ``LoRAPackedLinear`` wraps a packed q/k/v ``nn.Linear`` (timm's ``attn.qkv`` in open_clip's SigLIP towers)
  with one independent adapter per third, as PEFT puts on Hugging Face SigLIP's separate ``q/k/v_proj``.
* ``LoRAConv2d`` wraps an ``nn.Conv2d`` (SAM's neck convs in RSRefSeg v1): A is a conv with the base's kernel,
  stride and padding to ``rank`` channels, B a 1×1 conv back, as PEFT does for convolutions.
* ``nn.MultiheadAttention`` (open_clip's native ViT and text towers) reads ``in_proj_weight`` and
  ``out_proj.weight`` as tensors inside ``F.multi_head_attention_forward`` and never calls ``out_proj`` as a
  module, so wrapping its submodules would be silently bypassed. There the adapter is a weight
  parametrisation (``torch.nn.utils.parametrize``) on both tensors; the packed in-projection gets three
  independent rank-r adapters (q, k and v, like PEFT on separate ``q/k/v_proj``). The parametrisation names the
  state and serves code that reads the weights; the module's own self-attention call applies the adapters to the
  activations instead (``LoRAMultiheadAttention``), as PEFT does, never forming ``W0 + B·A``. LoRA dropout is
  not applied on this path (documented limitation).
* Under autocast the wrappers cast their input once for the base layer and the adapter, and in inference add the
  update in place.
"""

from __future__ import annotations

import math
import re

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from .config import LoRAConfig
from .device import autocasting


def _compute_dtype(x: torch.Tensor) -> torch.Tensor:
    """``x`` in autocast's dtype when autocast is on (cast once here, so that the base layer and the adapter do
    not each cast it again), else as it is."""
    if autocasting(x.device.type) and x.is_floating_point():
        return x.to(torch.get_autocast_dtype(x.device.type))
    return x


def _add_scaled(out: torch.Tensor, update: torch.Tensor, scale: float) -> torch.Tensor:
    """``out + scale · update``, in place when no gradient needs ``out`` (inference): one pass over the output."""
    if torch.is_grad_enabled() and (out.requires_grad or update.requires_grad):
        return out + scale * update
    return out.add_(update.to(out.dtype), alpha=scale)


def _packed_update(x: torch.Tensor, lora_a: torch.Tensor, lora_b: torch.Tensor) -> torch.Tensor:
    """The unscaled update of ``groups`` adapters packed along the output rows.

    Args: x: ...×in; lora_a: G×r×in; lora_b: G×rows×r. Returns: ...×(G·rows), group g's rows at block g.
    """
    low = torch.einsum("...i,gri->...gr", x, lora_a.to(x.dtype))
    return torch.einsum("...gr,gor->...go", low, lora_b.to(x.dtype)).flatten(-2)


def _folded_linear(base: nn.Linear, weight: torch.Tensor) -> nn.Linear:
    """A plain ``nn.Linear`` shaped like ``base`` with ``weight`` (base + adapter update, in ``weight``'s dtype: the
    adapter's fp32 also for a bf16 base, whose rounding would erase most of the update) and ``base``'s bias."""
    merged = nn.Linear(base.in_features, base.out_features, bias=base.bias is not None,
                       device=base.weight.device, dtype=weight.dtype)
    with torch.no_grad():
        merged.weight.copy_(weight)
        if base.bias is not None:
            merged.bias.copy_(base.bias)
    return merged


class LoRALinear(nn.Module):
    """``base(x) + scale · B(A(dropout(x)))`` around a frozen ``nn.Linear``."""

    def __init__(self, *, base: nn.Linear, rank: int, alpha: float, dropout: float = 0.0) -> None:
        """Args:
            base: the linear layer to adapt; its parameters are frozen.
            rank: adapter rank r.
            alpha: scale numerator; the update is scaled by alpha / r.
            dropout: dropout probability on the adapter input.
        """
        super().__init__()
        self.base = base
        self.base.requires_grad_(False)
        self.scale = alpha / rank
        self.lora_a = nn.Parameter(torch.empty(rank, base.in_features, device=base.weight.device))
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, rank, device=base.weight.device))
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    @property
    def weight(self) -> torch.Tensor:
        """The effective weight (base + update, in the adapter's dtype); lets code that reads ``.weight`` see the
        adapted layer."""
        delta = self.lora_b @ self.lora_a
        return self.base.weight.to(delta.dtype) + self.scale * delta

    @property
    def bias(self) -> torch.Tensor | None:
        return self.base.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x: ...×in_features. Returns: ...×out_features."""
        x = _compute_dtype(x)
        update = self.dropout(x) @ self.lora_a.t().to(x.dtype) @ self.lora_b.t().to(x.dtype)
        return _add_scaled(self.base(x), update, self.scale)

    def merge(self) -> nn.Linear:
        """A plain ``nn.Linear`` with the update folded into its weight (same outputs without dropout)."""
        return _folded_linear(self.base, self.weight)


class LoRAPackedLinear(nn.Module):
    """A frozen packed ``nn.Linear`` (rows = ``groups`` stacked projections) with one adapter per projection:
    ``base(x) + scale · cat_g(B_g A_g dropout(x))``. Not the same as one rank-r adapter on the whole layer, whose
    A would be shared by q, k and v."""

    def __init__(self, *, base: nn.Linear, rank: int, alpha: float, dropout: float = 0.0, groups: int = 3) -> None:
        """Args: as ``LoRALinear``; ``groups``: projections packed along the output rows (3 for q, k, v)."""
        super().__init__()
        if base.out_features % groups:
            raise ValueError(f"{base.out_features} output rows do not split into {groups} projections")
        self.base = base
        self.base.requires_grad_(False)
        self.scale = alpha / rank
        device = base.weight.device
        self.lora_a = nn.Parameter(torch.empty(groups, rank, base.in_features, device=device))
        self.lora_b = nn.Parameter(torch.zeros(groups, base.out_features // groups, rank, device=device))
        for a in self.lora_a:
            nn.init.kaiming_uniform_(a, a=math.sqrt(5))
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    @property
    def weight(self) -> torch.Tensor:
        """The effective out×in weight (base + every projection's update)."""
        delta = torch.bmm(self.lora_b, self.lora_a).reshape(self.base.out_features, self.base.in_features)
        return self.base.weight.to(delta.dtype) + self.scale * delta

    @property
    def bias(self) -> torch.Tensor | None:
        return self.base.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x: ...×in_features. Returns: ...×out_features (the projections' outputs side by side)."""
        x = _compute_dtype(x)
        return _add_scaled(self.base(x), _packed_update(self.dropout(x), self.lora_a, self.lora_b), self.scale)

    def merge(self) -> nn.Linear:
        """A plain ``nn.Linear`` with the updates folded into its weight (same outputs without dropout)."""
        return _folded_linear(self.base, self.weight)


class LoRAConv2d(nn.Module):
    """``base(x) + scale · B(A(dropout(x)))`` around a frozen ``nn.Conv2d`` (groups = 1)."""

    def __init__(self, *, base: nn.Conv2d, rank: int, alpha: float, dropout: float = 0.0) -> None:
        """Args: as ``LoRALinear``; ``base`` is the convolution to adapt."""
        super().__init__()
        if base.groups != 1:
            raise ValueError("LoRA on grouped convolutions is not supported")
        self.base = base
        self.base.requires_grad_(False)
        self.scale = alpha / rank
        device = base.weight.device
        self.lora_a = nn.Parameter(torch.empty(rank, base.in_channels, *base.kernel_size, device=device))
        self.lora_b = nn.Parameter(torch.zeros(base.out_channels, rank, 1, 1, device=device))
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x: B×C_in×H×W. Returns: B×C_out×H'×W'."""
        base = self.base
        low = F.conv2d(self.dropout(x), self.lora_a.to(x.dtype), None, base.stride, base.padding, base.dilation)
        return base(x) + self.scale * F.conv2d(low, self.lora_b.to(x.dtype))

    def merge(self) -> nn.Conv2d:
        """A plain ``nn.Conv2d`` with the update folded into its kernel, in the adapter's dtype (same outputs
        without dropout)."""
        base = self.base
        delta = torch.einsum("or,rikl->oikl", self.lora_b[:, :, 0, 0], self.lora_a)
        merged = nn.Conv2d(base.in_channels, base.out_channels, base.kernel_size, stride=base.stride,
                           padding=base.padding, dilation=base.dilation, bias=base.bias is not None,
                           device=base.weight.device, dtype=delta.dtype)
        with torch.no_grad():
            merged.weight.copy_(base.weight.to(delta.dtype) + self.scale * delta)
            if base.bias is not None:
                merged.bias.copy_(base.bias)
        return merged


class LoRADelta(nn.Module):
    """Parametrisation ``W ↦ W + scale · blockdiag-stack(B_g A_g)`` for ``groups`` row blocks of W."""

    def __init__(self, *, out_features: int, in_features: int, rank: int, alpha: float, groups: int = 1,
                 device: torch.device | None = None) -> None:
        """Args:
            out_features, in_features: shape of the adapted weight (out_features divisible by ``groups``).
            rank, alpha: adapter rank and scale numerator (scale = alpha / rank).
            groups: independent adapters stacked along the output rows (3 for a packed q/k/v projection).
        """
        super().__init__()
        self.scale = alpha / rank
        rows = out_features // groups
        self.lora_a = nn.Parameter(torch.empty(groups, rank, in_features, device=device))
        self.lora_b = nn.Parameter(torch.zeros(groups, rows, rank, device=device))
        for a in self.lora_a:
            nn.init.kaiming_uniform_(a, a=math.sqrt(5))

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        """Args: weight: out×in (bf16-stored weights are added in the adapter's fp32, which keeps the update).
        Returns: the adapted out×in weight."""
        delta = torch.bmm(self.lora_b, self.lora_a).reshape(weight.shape[0], weight.shape[1])
        return weight.to(delta.dtype) + self.scale * delta


def _adapted_linear(x: torch.Tensor, owner: nn.Module, name: str, bias: torch.Tensor | None) -> torch.Tensor:
    """``x`` through ``owner.<name>`` (an out×in weight under a ``LoRADelta`` parametrisation), the adapter applied
    to the activations: ``x W0ᵀ + b + scale · x (BA)ᵀ``, the parametrised weight never formed.

    Args: x: ...×in. Returns: ...×out.
    """
    chain = owner.parametrizations[name]
    base, delta = chain.original, chain[0]
    x = _compute_dtype(x)
    if not autocasting(x.device.type):  # fp32 compute: a bf16-stored base is cast for this call only, as elsewhere
        base, bias = base.to(x.dtype), None if bias is None else bias.to(x.dtype)
    return _add_scaled(F.linear(x, base, bias), _packed_update(x, delta.lora_a, delta.lora_b), delta.scale)


class LoRAMultiheadAttention(nn.MultiheadAttention):
    """``nn.MultiheadAttention`` whose LoRA parametrisations (``_adapt_mha``) are applied to the activations.

    The parametrised weights stay what the state dict and other readers see (``in_proj_weight`` is base + update),
    but self-attention without attention weights, the way open_clip's text and vision towers call it, never forms
    them: forming ``W0 + B·A`` on every call costs more than the attention of a short text, and under bf16
    autocast the formed weight would be rounded to bf16, erasing most of the update. Other calls (attention
    weights asked for, a key padding or boolean mask, cross-attention, dropout in training) take the parent's path.
    """

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                key_padding_mask: torch.Tensor | None = None, need_weights: bool = True,
                attn_mask: torch.Tensor | None = None, average_attn_weights: bool = True,
                is_causal: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Args (as the parent's): query = key = value: B×L×E (batch_first) or L×B×E; attn_mask: L×L additive
        float or None. Returns: (output of query's shape, None)."""
        plain = (need_weights or key_padding_mask is not None or is_causal or not (query is key is value)
                 or (attn_mask is not None and not attn_mask.is_floating_point()) or query.dim() != 3
                 or (self.training and self.dropout > 0)
                 or not parametrize.is_parametrized(self, "in_proj_weight")
                 or not parametrize.is_parametrized(self.out_proj, "weight"))
        if plain:
            return super().forward(query, key, value, key_padding_mask=key_padding_mask, need_weights=need_weights,
                                   attn_mask=attn_mask, average_attn_weights=average_attn_weights,
                                   is_causal=is_causal)
        x = query if self.batch_first else query.transpose(0, 1)
        b, length, dim = x.shape
        qkv = _adapted_linear(x, self, "in_proj_weight", self.in_proj_bias)
        q, k, v = qkv.reshape(b, length, 3, self.num_heads, dim // self.num_heads).permute(2, 0, 3, 1, 4)
        if attn_mask is not None:
            attn_mask = attn_mask.to(q.dtype)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        out = _adapted_linear(out.transpose(1, 2).reshape(b, length, dim), self.out_proj, "weight",
                              self.out_proj.bias)
        return (out if self.batch_first else out.transpose(0, 1)), None


def _adapt_mha(mha: nn.MultiheadAttention, cfg: LoRAConfig) -> None:
    if not mha._qkv_same_embed_dim:
        raise ValueError("LoRA on nn.MultiheadAttention needs a packed in-projection (kdim == vdim == embed_dim)")
    if type(mha) is nn.MultiheadAttention:
        mha.__class__ = LoRAMultiheadAttention  # before the parametrisations, which subclass the module's class
    dim = mha.embed_dim
    device = mha.in_proj_weight.device
    mha.in_proj_weight.requires_grad_(False)
    mha.out_proj.weight.requires_grad_(False)
    parametrize.register_parametrization(
        mha, "in_proj_weight",
        LoRADelta(out_features=3 * dim, in_features=dim, rank=cfg.rank, alpha=cfg.alpha, groups=3, device=device))
    parametrize.register_parametrization(
        mha.out_proj, "weight",
        LoRADelta(out_features=dim, in_features=dim, rank=cfg.rank, alpha=cfg.alpha, device=device))


def apply_lora(module: nn.Module, target_regex: str, cfg: LoRAConfig, packed_qkv: str | None = None) -> list[str]:
    """Adapt every ``nn.Linear`` / ``nn.Conv2d`` / ``nn.MultiheadAttention`` whose name fully matches
    ``target_regex``.

    Args:
        module: the tree to modify in place (names are relative to it).
        target_regex: ``re.fullmatch`` pattern over module names.
        cfg: rank, alpha and dropout.
        packed_qkv: ``re.fullmatch`` pattern naming the targeted Linears that pack q, k and v and get one
            adapter per projection (``LoRAPackedLinear``); None: every Linear gets one adapter.

    Returns:
        The names of the adapted modules, in module order.

    Raises:
        ValueError: when the pattern matches nothing adaptable (a silent no-op would hide a config typo).
    """
    pattern = re.compile(target_regex)
    targets = [(n, m) for n, m in module.named_modules()
               if n and pattern.fullmatch(n) and isinstance(m, (nn.Linear, nn.Conv2d, nn.MultiheadAttention))]
    if not targets:
        raise ValueError(f"LoRA target {target_regex!r} matches no Linear, Conv2d or MultiheadAttention module")
    for name, child in targets:
        if isinstance(child, nn.MultiheadAttention):
            _adapt_mha(child, cfg)
            continue
        parent_name, _, attr = name.rpartition(".")
        parent = module.get_submodule(parent_name) if parent_name else module
        if isinstance(child, nn.Conv2d):
            wrapper = LoRAConv2d
        elif packed_qkv is not None and re.fullmatch(packed_qkv, name):
            wrapper = LoRAPackedLinear
        else:
            wrapper = LoRALinear
        setattr(parent, attr, wrapper(base=child, rank=cfg.rank, alpha=cfg.alpha, dropout=cfg.dropout))
    return [n for n, _ in targets]


def merge_lora(module: nn.Module) -> int:
    """Fold every adapter under ``module`` into its base weight, in place. Returns how many were merged."""
    count = 0
    for name, child in list(module.named_modules()):
        if isinstance(child, (LoRALinear, LoRAPackedLinear, LoRAConv2d)):
            parent_name, _, attr = name.rpartition(".")
            parent = module.get_submodule(parent_name) if parent_name else module
            setattr(parent, attr, child.merge())
            count += 1
        elif parametrize.is_parametrized(child):
            # A deep copy shares torch's injected ``Parametrized*`` class with its original, and removing a
            # parametrization deletes the property from that class: work on a private copy of the class.
            cls = type(child)
            child.__class__ = type(cls.__name__, cls.__bases__, dict(cls.__dict__))
            for tensor_name in list(child.parametrizations.keys()):
                if any(isinstance(p, LoRADelta) for p in child.parametrizations[tensor_name]):
                    parametrize.remove_parametrizations(child, tensor_name, leave_parametrized=True)
                    count += 1
    return count


def lora_parameter_names(module: nn.Module) -> list[str]:
    """Names of all adapter parameters (``lora_a``/``lora_b``) under ``module``."""
    return [n for n, _ in module.named_parameters() if n.rsplit(".", 1)[-1] in ("lora_a", "lora_b")]
