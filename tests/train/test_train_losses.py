import pytest
import torch

from imgxlate.errors import UsageError
from imgxlate.train.losses import cycle_loss, discriminator_loss, gan_loss, generator_gan_loss, identity_loss


def test_lsgan_targets() -> None:
    ones, zeros = torch.ones(1, 1, 3, 3), torch.zeros(1, 1, 3, 3)
    assert gan_loss(ones, True).item() == 0.0
    assert gan_loss(zeros, False).item() == 0.0
    assert gan_loss(zeros, True).item() == pytest.approx(1.0)
    # D loss is halved: perfectly wrong D on both -> 0.5 * (1 + 1)
    assert discriminator_loss(zeros, ones).item() == pytest.approx(1.0)
    assert discriminator_loss(ones, zeros).item() == 0.0
    assert generator_gan_loss(ones).item() == 0.0


def test_vanilla_is_bce_with_logits() -> None:
    logits = torch.tensor([[[[2.0, -1.0]]]])
    expected = -torch.log(torch.sigmoid(logits)).mean()
    assert gan_loss(logits, True, "vanilla").item() == pytest.approx(expected.item(), rel=1e-6)
    with pytest.raises(UsageError):
        gan_loss(logits, True, "wgan")


def test_l1_losses_weighted_and_fp32() -> None:
    a = torch.zeros(1, 3, 2, 2, dtype=torch.bfloat16)
    b = torch.full((1, 3, 2, 2), 0.5)
    assert cycle_loss(a, b, 10.0).item() == pytest.approx(5.0)
    assert identity_loss(a, b, 5.0).item() == pytest.approx(2.5)
    assert cycle_loss(a, b, 10.0).dtype == torch.float32
