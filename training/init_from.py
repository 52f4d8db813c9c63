"""Where a training run's model starts: built from its config (base encoders, fresh prompter), or loaded whole
from a trained or imported checkpoint (``init_from``, e.g. the authors' ``rsrefseg2-rrsisd``) to fine-tune it.

Fine-tuning from a checkpoint keeps every weight it holds: the encoders' bases (with any LoRA update folded in),
the prompter and the SAM decoder continue from their values. The LoRA adapters restart fresh (B = 0, so the
starting model computes exactly what the checkpoint computes) and train on top of the folded weights.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize

from backend.model.authors.location import resolve_checkpoint
from backend.model.build import build_model
from backend.model.checkpoint.io import load_model
from backend.model.config import ModelConfig
from backend.model.lora import LoRAConv2d, LoRADelta, LoRALinear, LoRAPackedLinear
from training.config import TrainConfig


def _zero_lora_b(module: nn.Module) -> None:
    for name, param in module.named_parameters():
        if name.rsplit(".", 1)[-1] == "lora_b":
            param.zero_()


def _frozen(folded: torch.Tensor) -> nn.Parameter:
    """A folded weight as a frozen parameter, in the adapter's fp32: a bf16 base (as the authors released it) would
    round away most of the update."""
    return nn.Parameter(folded.detach().float(), requires_grad=False)


@torch.no_grad()
def fold_lora(model: nn.Module) -> int:
    """Fold every adapter's update into its base weight and zero its B, keeping the structure (same outputs, fresh
    adapters); a folded weight is fp32 whatever its base's dtype. Returns how many adapters were folded."""
    count = 0
    for module in model.modules():
        if isinstance(module, (LoRALinear, LoRAPackedLinear, LoRAConv2d)):
            module.base.weight = _frozen(module.merge().weight)
            _zero_lora_b(module)
            count += 1
        elif parametrize.is_parametrized(module):
            for tensor_name, chain in module.parametrizations.items():
                deltas = [p for p in chain if isinstance(p, LoRADelta)]
                if deltas:
                    chain.original = _frozen(getattr(module, tensor_name))
                    for delta in deltas:
                        _zero_lora_b(delta)
                    count += 1
    return count


def initial_model(cfg: TrainConfig, model_cfg: ModelConfig) -> nn.Module:
    """The model a run starts from (in train mode is the caller's job).

    Args:
        cfg: the run; ``cfg.init_from`` (an imported checkpoint's name or a ``.safetensors`` path) loads that
            checkpoint whole, else ``cfg.weights`` are the base-weight files of a freshly built model.
        model_cfg: ``cfg.model`` loaded; a checkpoint must have been made with this model config.

    Raises:
        ValueError: the checkpoint's model config differs from ``cfg.model``, or it carries its own base weights
            (an imported checkpoint) while ``include_base`` is false, so the fine-tuned result could not be loaded.
        BackendError("checkpoint"/"weights"): the checkpoint cannot be loaded (``load_model``).
    """
    if cfg.init_from is None:
        return build_model(model_cfg, clip_weights=cfg.weights.get("clip"), sam_weights=cfg.weights.get("sam"))
    path = resolve_checkpoint(cfg.init_from)
    model = load_model(path, clip_weights=cfg.weights.get("clip"), sam_weights=cfg.weights.get("sam"))
    theirs, ours = model.config.to_dict(), model_cfg.to_dict()
    if theirs != ours:
        differ = sorted(k for k in theirs.keys() | ours.keys() if theirs.get(k) != ours.get(k))
        raise ValueError(f"init_from {path} was made with another model config than model: {cfg.model!r} (they "
                         f"differ in {differ}); set model to the config it was made with")
    if not cfg.include_base and None in model.base_weights.values():
        raise ValueError(f"init_from {path} holds its own base weights (an imported checkpoint): set include_base: "
                         "true so that the fine-tuned checkpoints carry them")
    fold_lora(model)
    return model
