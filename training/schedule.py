"""The learning-rate factor of the paper's schedule, as a pure function of the optimizer step."""

from __future__ import annotations

import math

from training.config import ScheduleConfig


def lr_factor(step: int, steps_per_epoch: int, cfg: ScheduleConfig) -> float:
    """Multiplier of the base LR at optimizer step ``step`` (0-based).

    Args:
        step: the optimizer step about to be taken.
        steps_per_epoch: optimizer steps per epoch (epoch boundaries of the config are converted with it).
        cfg: the schedule.

    Returns:
        The factor: linear warm-up, constant, cosine (clamped at its end), per METHOD.md §4.
    """
    warmup_end = cfg.warmup_epochs * steps_per_epoch
    cos_begin = cfg.cosine_begin_epoch * steps_per_epoch
    cos_end = cfg.cosine_end_epoch * steps_per_epoch
    t_max = cfg.cosine_t_max_epochs * steps_per_epoch
    if step < warmup_end:
        return cfg.warmup_start_factor + (1.0 - cfg.warmup_start_factor) * step / warmup_end
    if step < cos_begin:
        return 1.0
    progress = min(step, cos_end) - cos_begin
    return cfg.eta_min_factor + (1.0 - cfg.eta_min_factor) * (1 + math.cos(math.pi * progress / t_max)) / 2
