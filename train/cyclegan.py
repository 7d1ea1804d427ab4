"""CycleGAN (Zhu et al. 2017): two generators, two discriminators, cycle and identity losses."""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import nn

from imgxlate.train.checkpoint import load_optimisation_state, optimisation_state
from imgxlate.train.config import TrainConfig
from imgxlate.train.losses import cycle_loss, discriminator_loss, generator_gan_loss, identity_loss
from imgxlate.train.networks import NLayerDiscriminator, ResnetGenerator, init_weights
from imgxlate.train.pool import ImagePool
from imgxlate.train.runtime import Runtime
from imgxlate.train.schedule import schedule_for

LOSS_NAMES = ("G_ab", "G_ba", "cycle_a", "cycle_b", "idt_a", "idt_b", "D_a", "D_b")


def set_requires_grad(nets: list[nn.Module], flag: bool) -> None:
    for net in nets:
        for p in net.parameters():
            p.requires_grad_(flag)


class CycleGANTrainer:
    """Holds the four networks, two optimizers, schedulers, scaler and pools of one run.

    The interface every method's trainer has: ``nets`` (checkpointed by name), ``step``,
    ``state_dict``/``load_state_dict``, ``rank_state`` (what differs between DDP ranks),
    ``generators`` (by direction, for export), ``sample_rows`` and ``lr``.
    """

    def __init__(self, cfg: TrainConfig, rt: Runtime, steps_per_epoch: int) -> None:
        self.cfg, self.rt, self.steps_per_epoch = cfg, rt, steps_per_epoch
        torch.manual_seed(cfg.seed)  # same init on every rank (DDP also broadcasts rank 0's weights)
        gcfg, dcfg = cfg.generator_config(), cfg.discriminator_config()
        self.g_ab = init_weights(ResnetGenerator(**gcfg))
        self.g_ba = init_weights(ResnetGenerator(**gcfg))
        self.d_a = init_weights(NLayerDiscriminator(**dcfg))  # judges domain A images
        self.d_b = init_weights(NLayerDiscriminator(**dcfg))  # judges domain B images
        self.nets = {"G_ab": self.g_ab, "G_ba": self.g_ba, "D_a": self.d_a, "D_b": self.d_b}
        fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
        for net in self.nets.values():
            net.to(rt.device, memory_format=fmt)
        betas = (cfg.beta1, cfg.beta2)
        self.opt_g = torch.optim.Adam(
            [*self.g_ab.parameters(), *self.g_ba.parameters()], lr=cfg.lr, betas=betas
        )
        self.opt_d = torch.optim.Adam(
            [*self.d_a.parameters(), *self.d_b.parameters()], lr=cfg.lr, betas=betas
        )

        factor = schedule_for(cfg, steps_per_epoch)
        self.sched_g = torch.optim.lr_scheduler.LambdaLR(self.opt_g, factor)
        self.sched_d = torch.optim.lr_scheduler.LambdaLR(self.opt_d, factor)
        self.scaler = torch.amp.GradScaler(rt.device.type, enabled=rt.precision == "fp16")
        # each rank has its own pool (its own fakes), seeded apart
        pool_size = 50 if cfg.pool_size is None else cfg.pool_size
        self.pool_a = ImagePool(pool_size, seed=cfg.seed * 1000 + 2 * rt.rank + 1)
        self.pool_b = ImagePool(pool_size, seed=cfg.seed * 1000 + 2 * rt.rank + 2)

        # callables used in the step: DDP wrappers and/or compiled modules around the raw networks
        g_ab, g_ba, d_a, d_b = self.g_ab, self.g_ba, self.d_a, self.d_b
        if rt.distributed:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [rt.device.index] if rt.device.type == "cuda" else None
            g_ab, g_ba, d_a, d_b = (DDP(n, device_ids=ids) for n in (g_ab, g_ba, d_a, d_b))
        # In the generator step D is frozen and only passes gradients to G: call the raw modules so DDP
        # does not wait for D gradients that never come.
        d_a_frozen, d_b_frozen = self.d_a, self.d_b
        if cfg.compile:
            g_ab, g_ba, d_a, d_b = (torch.compile(n) for n in (g_ab, g_ba, d_a, d_b))
            d_a_frozen, d_b_frozen = torch.compile(d_a_frozen), torch.compile(d_b_frozen)
        self.call = {
            "G_ab": g_ab,
            "G_ba": g_ba,
            "D_a": d_a,
            "D_b": d_b,
            "D_a_frozen": d_a_frozen,
            "D_b_frozen": d_b_frozen,
        }
        self.last_rows: list[list[torch.Tensor]] = []

    # -- state ------------------------------------------------------------------------------------

    def generators(self) -> dict[str, nn.Module]:
        return {"a2b": self.g_ab, "b2a": self.g_ba}

    def rank_state(self) -> dict[str, Any]:
        return {"pools": {"A": self.pool_a.state_dict(), "B": self.pool_b.state_dict()}}

    def state_dict(self) -> dict[str, Any]:
        return {
            **optimisation_state(self),
            "generator_config": self.g_ab.config,
            "discriminator_config": self.d_a.config,
            **self.rank_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        load_optimisation_state(self, state)
        pools = state["pools"]
        per_rank = state.get("per_rank")
        if per_rank and len(per_rank) == self.rt.world_size:
            pools = per_rank[self.rt.rank]["pools"]
        by_rank = state.get("pools_by_rank")  # version-1 checkpoints
        if by_rank and len(by_rank) == self.rt.world_size:
            pools = by_rank[self.rt.rank]
        self.pool_a.load_state_dict(pools["A"], self.rt.device)
        self.pool_b.load_state_dict(pools["B"], self.rt.device)

    # -- one step ---------------------------------------------------------------------------------

    def step(self, real_a: torch.Tensor, real_b: torch.Tensor) -> dict[str, torch.Tensor]:
        """One reference CycleGAN iteration: update both G (D frozen), then both D on pooled fakes
        (only the latter during the ``--d-warmup-steps``).

        real_a, real_b: (N, 3, S, S) in [-1, 1] on the device. Returns detached losses; keeps the
        images of the first sample for the sample grid.
        """
        cfg, rt, call = self.cfg, self.rt, self.call
        if self.sched_d.last_epoch < cfg.d_warmup_steps:  # last_epoch: the steps done, restored on resume
            return self._warmup_step(real_a, real_b)
        n = real_a.shape[0]
        w_cyc = cfg.lambda_cycle
        w_idt = cfg.lambda_identity * cfg.lambda_cycle
        set_requires_grad([self.d_a, self.d_b], False)
        with rt.autocast():
            if w_idt > 0:
                # InstanceNorm works per sample, so one batched call = two separate calls.
                out = call["G_ab"](torch.cat([real_a, real_b], 0))
                fake_b, idt_b = out[:n], out[n:]
                out = call["G_ba"](torch.cat([fake_b, real_b, real_a], 0))
                rec_a, fake_a, idt_a = out[:n], out[n : 2 * n], out[2 * n :]
            else:
                fake_b = call["G_ab"](real_a)
                out = call["G_ba"](torch.cat([fake_b, real_b], 0))
                rec_a, fake_a = out[:n], out[n:]
            rec_b = call["G_ab"](fake_a)
            loss_g_ab = generator_gan_loss(call["D_b_frozen"](fake_b), cfg.gan_mode)
            loss_g_ba = generator_gan_loss(call["D_a_frozen"](fake_a), cfg.gan_mode)
        loss_cyc_a = cycle_loss(rec_a, real_a, w_cyc)
        loss_cyc_b = cycle_loss(rec_b, real_b, w_cyc)
        if w_idt > 0:
            loss_idt_a = identity_loss(idt_a, real_a, w_idt)  # G_ba(a) ~ a
            loss_idt_b = identity_loss(idt_b, real_b, w_idt)  # G_ab(b) ~ b
        else:
            loss_idt_a = loss_idt_b = torch.zeros((), device=rt.device)
        loss_g = loss_g_ab + loss_g_ba + loss_cyc_a + loss_cyc_b + loss_idt_a + loss_idt_b
        self.opt_g.zero_grad(set_to_none=True)
        self.scaler.scale(loss_g).backward()
        self.scaler.step(self.opt_g)

        loss_d_a, loss_d_b = self._update_discriminators(real_a, real_b, fake_a, fake_b)
        self._end_step()
        losses = dict(
            zip(
                LOSS_NAMES,
                (loss_g_ab, loss_g_ba, loss_cyc_a, loss_cyc_b, loss_idt_a, loss_idt_b, loss_d_a, loss_d_b),
            )
        )
        self.last_rows = [[t[0].detach() for t in row] for row in ((real_a, fake_b, rec_a), (real_b, fake_a, rec_b))]
        return {k: v.detach() for k, v in losses.items()}

    def _warmup_step(self, real_a: torch.Tensor, real_b: torch.Tensor) -> dict[str, torch.Tensor]:
        """A discriminator warm-up step (``--d-warmup-steps``): the generators translate without
        gradients and do not move; the discriminators learn from them as in a full step.

        Returns the discriminator losses and, for the log, the generators' adversarial losses against
        the discriminators before this update (no cycle or identity losses: nothing is reconstructed).
        """
        cfg, call = self.cfg, self.call
        with torch.no_grad(), self.rt.autocast():
            fake_b = call["G_ab"](real_a)
            fake_a = call["G_ba"](real_b)
            loss_g_ab = generator_gan_loss(call["D_b_frozen"](fake_b), cfg.gan_mode)
            loss_g_ba = generator_gan_loss(call["D_a_frozen"](fake_a), cfg.gan_mode)
        loss_d_a, loss_d_b = self._update_discriminators(real_a, real_b, fake_a, fake_b)
        self._end_step()
        self.last_rows = [[t[0].detach() for t in row] for row in ((real_a, fake_b), (real_b, fake_a))]
        losses = {"G_ab": loss_g_ab, "G_ba": loss_g_ba, "D_a": loss_d_a, "D_b": loss_d_b}
        return {k: v.detach() for k, v in losses.items()}

    def _update_discriminators(
        self, real_a: torch.Tensor, real_b: torch.Tensor, fake_a: torch.Tensor, fake_b: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimizer step of both discriminators on real images and pooled fakes; their losses."""
        cfg, call, n = self.cfg, self.call, real_a.shape[0]
        set_requires_grad([self.d_a, self.d_b], True)
        self.opt_d.zero_grad(set_to_none=True)
        pooled_b = self.pool_b.query(fake_b.detach().float())
        pooled_a = self.pool_a.query(fake_a.detach().float())
        with self.rt.autocast():
            # real and fake in one call: per-sample norms make it equal to two calls
            pred = call["D_b"](torch.cat([real_b, pooled_b.to(real_b.dtype)], 0))
            loss_d_b = discriminator_loss(pred[:n], pred[n:], cfg.gan_mode)
            pred = call["D_a"](torch.cat([real_a, pooled_a.to(real_a.dtype)], 0))
            loss_d_a = discriminator_loss(pred[:n], pred[n:], cfg.gan_mode)
        self.scaler.scale(loss_d_a + loss_d_b).backward()
        self.scaler.step(self.opt_d)
        return loss_d_a, loss_d_b

    def _end_step(self) -> None:
        """After the optimizer steps of a step: the loss scale, and both schedules one step on."""
        self.scaler.update()
        with warnings.catch_warnings():
            # the generators' schedule counts the warm-up too (schedule_for holds it at 1 there), although
            # their optimizer does not step then: PyTorch's "scheduler before optimizer" warning does not apply
            warnings.filterwarnings("ignore", "Detected call of `lr_scheduler.step", UserWarning)
            self.sched_g.step()
        self.sched_d.step()

    def sample_rows(self) -> list[list[torch.Tensor]]:
        """A -> B -> A on the first row, B -> A -> B on the second (A -> B and B -> A in the warm-up)."""
        return self.last_rows

    @property
    def lr(self) -> float:
        return float(self.opt_g.param_groups[0]["lr"])
