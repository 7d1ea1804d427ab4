"""CycleGAN losses as plain functions (Zhu et al. 2017, reference defaults).

Every function returns a scalar float32 tensor; predictions may come from autocast (bf16/fp16) and
are cast to float32 first so the loss itself is computed in full precision.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from imgxlate.errors import UsageError

GAN_MODES = ("lsgan", "vanilla")


def gan_loss(pred: torch.Tensor, target_is_real: bool, mode: str = "lsgan") -> torch.Tensor:
    """Adversarial loss of PatchGAN logits ``pred`` (N, 1, h, w) against an all-real or all-fake target.

    lsgan: mean((pred - t)^2) with t in {1, 0} (Mao et al. 2017, the CycleGAN default);
    vanilla: binary cross-entropy on logits.
    """
    pred = pred.float()
    target = torch.full_like(pred, 1.0 if target_is_real else 0.0)
    if mode == "lsgan":
        return F.mse_loss(pred, target)
    if mode == "vanilla":
        return F.binary_cross_entropy_with_logits(pred, target)
    raise UsageError(f"unknown GAN loss {mode!r}; use one of {', '.join(GAN_MODES)}")


def discriminator_loss(pred_real: torch.Tensor, pred_fake: torch.Tensor, mode: str = "lsgan") -> torch.Tensor:
    """0.5 * (loss(real -> 1) + loss(fake -> 0)): halved so D learns slower than G (reference)."""
    return 0.5 * (gan_loss(pred_real, True, mode) + gan_loss(pred_fake, False, mode))


def generator_gan_loss(pred_fake: torch.Tensor, mode: str = "lsgan") -> torch.Tensor:
    """The generator wants D to call its fakes real."""
    return gan_loss(pred_fake, True, mode)


def cycle_loss(reconstructed: torch.Tensor, real: torch.Tensor, weight: float) -> torch.Tensor:
    """weight * |G_ba(G_ab(a)) - a|_1 (mean over pixels)."""
    return weight * F.l1_loss(reconstructed.float(), real.float())


def identity_loss(same: torch.Tensor, real: torch.Tensor, weight: float) -> torch.Tensor:
    """weight * |G_ab(b) - b|_1: G_ab should leave images already in domain b alone.

    ``weight`` is lambda_identity * lambda_cycle (0.5 * 10 = 5 by default).
    """
    return weight * F.l1_loss(same.float(), real.float())
