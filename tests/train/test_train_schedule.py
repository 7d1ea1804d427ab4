import itertools

import pytest

from imgxlate.errors import UsageError
from imgxlate.train.config import TrainConfig
from imgxlate.train.data import steps_per_epoch
from imgxlate.train.loop import lr_factor, total_steps


def test_lr_constant_then_linear_to_zero() -> None:
    spe, epochs, decay = 10, 2, 4
    assert [lr_factor(s, spe, epochs, decay) for s in (0, 5, 19)] == [1.0, 1.0, 1.0]
    assert lr_factor(20, spe, epochs, decay) == 1.0  # decay starts at the first step after the constant part
    assert lr_factor(30, spe, epochs, decay) == pytest.approx(0.75)
    assert lr_factor(40, spe, epochs, decay) == pytest.approx(0.5)
    assert lr_factor(59, spe, epochs, decay) == pytest.approx(1 / 40)
    assert lr_factor(60, spe, epochs, decay) == 0.0
    assert lr_factor(1000, spe, epochs, decay) == 0.0
    assert lr_factor(5, spe, 0, 0) == 1.0  # no schedule (--max-steps alone): the set rate, not 0
    assert lr_factor(5, spe, 1, 0) == 1.0 and lr_factor(10, spe, 1, 0) == 0.0
    # monotone non-increasing over the whole schedule
    values = [lr_factor(s, spe, epochs, decay) for s in range(70)]
    assert all(a >= b for a, b in itertools.pairwise(values))


def test_steps_and_epochs() -> None:
    assert steps_per_epoch(1067, 1334, 1) == 1334  # horse2zebra: max(len A, len B)
    assert steps_per_epoch(1067, 1334, 4) == 333
    assert steps_per_epoch(1067, 1334, 4, world_size=2) == 166
    assert steps_per_epoch(2, 3, 8) == 1
    cfg = TrainConfig(epochs=2, epochs_decay=3)
    assert total_steps(cfg, 10) == 50
    cfg.max_steps = 7
    assert total_steps(cfg, 10) == 7
    cfg.max_steps = 500
    assert total_steps(cfg, 10) == 50


def test_the_discriminator_warmup_comes_before_the_whole_schedule() -> None:
    from imgxlate.train.schedule import schedule_for

    cfg = TrainConfig(epochs=1, epochs_decay=2, d_warmup_steps=5)
    assert total_steps(cfg, 10) == 35  # the warm-up does not eat into the generators' schedule
    factor = schedule_for(cfg, 10)
    assert [factor(s) for s in (0, 4, 5, 14, 15)] == [1.0] * 5
    assert factor(25) == pytest.approx(lr_factor(20, 10, 1, 2)) == pytest.approx(0.5)
    assert factor(35) == 0.0
    cfg.max_steps = 12
    assert total_steps(cfg, 10) == 12
    cfg.max_steps = 5
    with pytest.raises(UsageError, match="ends inside the discriminator warm-up"):
        cfg.validate()
