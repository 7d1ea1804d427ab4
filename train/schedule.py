"""The learning-rate schedule: constant, then linear decay to 0 (the reference "linear" policy)."""

from __future__ import annotations

from imgxlate.train.config import TrainConfig


def lr_factor(step: int, steps_per_epoch: int, epochs: int, epochs_decay: int) -> float:
    """Learning-rate multiplier at optimizer step ``step`` (0-based): 1 for ``epochs`` epochs, then
    linear decay to 0 over ``epochs_decay`` epochs (the reference "linear" policy, per step instead of
    per epoch so it is smooth for small datasets). Never negative."""
    constant = epochs * steps_per_epoch
    if step < constant:
        return 1.0
    decay = epochs_decay * steps_per_epoch
    if decay <= 0:
        return 0.0
    return max(0.0, 1.0 - (step - constant) / decay)


def total_steps(cfg: TrainConfig, steps_per_epoch: int) -> int:
    """Steps of the run: the whole schedule, or ``max_steps`` when that is set and shorter."""
    schedule = (cfg.epochs + cfg.epochs_decay) * steps_per_epoch
    if cfg.max_steps and schedule:
        return min(cfg.max_steps, schedule)
    return cfg.max_steps or schedule
