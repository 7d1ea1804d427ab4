"""The learning-rate schedule: constant, then linear decay to 0 (the reference "linear" policy),
after the discriminator warm-up if there is one."""

from __future__ import annotations

from collections.abc import Callable

from imgxlate.train.config import TrainConfig


def lr_factor(step: int, steps_per_epoch: int, epochs: int, epochs_decay: int) -> float:
    """Learning-rate multiplier at optimizer step ``step`` (0-based): 1 for ``epochs`` epochs, then
    linear decay to 0 over ``epochs_decay`` epochs (the reference "linear" policy, per step instead of
    per epoch so it is smooth for small datasets). Never negative. With no epochs of either kind (a
    run sized by ``--max-steps`` alone) the rate stays as set."""
    if epochs == 0 and epochs_decay == 0:
        return 1.0  # no schedule: a --max-steps run at the set learning rate
    constant = epochs * steps_per_epoch
    if step < constant:
        return 1.0
    decay = epochs_decay * steps_per_epoch
    if decay <= 0:
        return 0.0
    return max(0.0, 1.0 - (step - constant) / decay)


def schedule_for(cfg: TrainConfig, steps_per_epoch: int) -> Callable[[int], float]:
    """The learning-rate multiplier of a run by optimizer step, for ``LambdaLR``: 1 during the
    ``--d-warmup-steps`` (only the discriminators train there), then :func:`lr_factor` counted from the
    end of the warm-up, so the generators get the whole schedule."""
    warmup = cfg.d_warmup_steps

    def factor(step: int) -> float:
        return lr_factor(max(0, step - warmup), steps_per_epoch, cfg.epochs, cfg.epochs_decay)

    return factor


def total_steps(cfg: TrainConfig, steps_per_epoch: int) -> int:
    """Steps of the run: the discriminator warm-up and the whole schedule, or ``max_steps`` when that is
    set and shorter."""
    schedule = (cfg.epochs + cfg.epochs_decay) * steps_per_epoch
    if schedule:
        schedule += cfg.d_warmup_steps
    if cfg.max_steps and schedule:
        return min(cfg.max_steps, schedule)
    return cfg.max_steps or schedule
