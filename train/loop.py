"""The CycleGAN training loop: setup, one step, checkpoints, exact resume, samples, export.

Library code: no terminal output besides the ``imgxlate.train`` logger; the CLI passes ``on_step``
to draw a progress bar.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import platform
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from imgxlate._atomic import atomic_path
from imgxlate.errors import DeviceError, TrainingError, UsageError
from imgxlate.train import data as data_mod
from imgxlate.train.config import RESUME_OVERRIDABLE, TrainConfig
from imgxlate.train.losses import cycle_loss, discriminator_loss, generator_gan_loss, identity_loss
from imgxlate.train.networks import NLayerDiscriminator, ResnetGenerator, build_generator, init_weights
from imgxlate.train.pool import ImagePool

log = logging.getLogger("imgxlate.train")

CHECKPOINT_FORMAT = "imgxlate-cyclegan"
CHECKPOINT_VERSION = 1
LOSS_NAMES = ("G_ab", "G_ba", "cycle_a", "cycle_b", "idt_a", "idt_b", "D_a", "D_b")


# ----------------------------------------------------------------------------------------------------
# schedule


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
    schedule = (cfg.epochs + cfg.epochs_decay) * steps_per_epoch
    if cfg.max_steps and schedule:
        return min(cfg.max_steps, schedule)
    return cfg.max_steps or schedule


# ----------------------------------------------------------------------------------------------------
# device, precision, distribution


@dataclass
class Runtime:
    device: torch.device
    dtype: torch.dtype | None  # autocast dtype; None = fp32
    precision: str
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    def device_name(self) -> str:
        if self.device.type == "cuda":
            return torch.cuda.get_device_name(self.device)
        if self.device.type == "mps":
            return "Apple MPS"
        return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def setup_runtime(cfg: TrainConfig) -> Runtime:
    """Pick the device and precision; join the process group when started by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    want = cfg.device
    if want == "auto":
        want = "cuda" if torch.cuda.is_available() else "cpu"
    if want == "cuda" and not torch.cuda.is_available():
        raise DeviceError("--device cuda was asked for but PyTorch sees no CUDA GPU; use --device cpu")
    if want == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise DeviceError("--device mps was asked for but MPS is not available; use --device cpu")
    if want == "cuda":
        index = local_rank % max(1, torch.cuda.device_count())
        torch.cuda.set_device(index)
        device = torch.device("cuda", index)
    else:
        device = torch.device(want)
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        torch.distributed.init_process_group(backend=backend)
    precision = cfg.precision
    if precision == "auto":
        bf16_ok = device.type == "cuda" and torch.cuda.is_bf16_supported()
        precision = "bf16" if bf16_ok else "fp32"
    if precision == "fp16" and device.type != "cuda":
        raise UsageError("--precision fp16 needs a CUDA GPU; use bf16 or fp32 on this device")
    dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return Runtime(device, dtype, precision, rank, local_rank, world)


# ----------------------------------------------------------------------------------------------------
# checkpoints


def _rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    return {
        "python": random.getstate(),
        # numpy's state as plain types so the checkpoint loads with weights_only=True
        "numpy": (np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *map(_plain, np_state[2:])),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def _plain(v: Any) -> Any:
    return v.item() if hasattr(v, "item") else v


def _set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        with contextlib.suppress(Exception):
            torch.cuda.set_rng_state_all(state["cuda"])


def resolve_checkpoint(path: str | os.PathLike[str]) -> Path:
    """A checkpoint file, or a run folder (-> RUN/checkpoints/last.pt)."""
    p = Path(path).expanduser()
    if p.is_dir():
        for candidate in (p / "checkpoints" / "last.pt", p / "last.pt"):
            if candidate.is_file():
                return candidate
        raise TrainingError(f"{str(p)!r} has no checkpoints/last.pt; pass a checkpoint file or a run folder")
    if not p.is_file():
        raise TrainingError(f"checkpoint {str(p)!r} does not exist; pass a .pt file or a run folder")
    return p


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    path = resolve_checkpoint(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise TrainingError(
            f"cannot read checkpoint {path} ({type(exc).__name__}: {exc}); it is damaged "
            "or not an imgxlate checkpoint"
        ) from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise TrainingError(f"{path} is not an imgxlate-train checkpoint")
    if int(ckpt.get("format_version", 0)) > CHECKPOINT_VERSION:
        raise TrainingError(f"{path} was written by a newer imgxlate; upgrade imgxlate to resume it")
    ckpt["path"] = str(path)
    return ckpt


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """torch.save to a temp file beside ``path``, fsync, rename: a kill leaves the old or new file."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        torch.save(state, fh)
        fh.flush()
        os.fsync(fh.fileno())


# ----------------------------------------------------------------------------------------------------
# monitoring


@dataclass
class StepInfo:
    step: int  # steps done
    total: int
    start: int  # step the run (or resume) started at
    epoch: float
    lr: float
    images_per_s: float
    losses: dict[str, float] = field(default_factory=dict)


@dataclass
class TrainResult:
    out: Path
    steps: int
    checkpoint: Path | None
    model_dir: Path | None
    images_per_s: float
    wall_time_s: float
    losses: dict[str, float]
    trainer: Trainer | None = None  # the networks in memory (tests, notebooks)


def _to_uint8(t: torch.Tensor) -> np.ndarray:
    """(3, H, W) in [-1, 1] -> (H, W, 3) uint8."""
    arr = ((t.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().byte()
    return arr.permute(1, 2, 0).numpy()


def save_sample_grid(path: Path, rows: list[list[torch.Tensor]]) -> None:
    """Rows of (3, H, W) tensors in [-1, 1] side by side -> one PNG (atomic)."""
    from PIL import Image

    grid = np.concatenate([np.concatenate([_to_uint8(t) for t in row], axis=1) for row in rows], axis=0)
    with atomic_path(path) as tmp:
        Image.fromarray(grid).save(tmp, format="PNG")


class _JsonLog:
    """RUN/log.jsonl: one JSON object per logged step; on resume, lines after the checkpoint go."""

    def __init__(self, path: Path, resume_step: int | None) -> None:
        self.path = path
        if resume_step is not None and path.is_file():
            keep = []
            for line in path.read_text(encoding="utf-8").splitlines():
                with contextlib.suppress(ValueError):
                    if json.loads(line).get("step", 0) <= resume_step:
                        keep.append(line)
            with atomic_path(path) as tmp:
                tmp.write_text("".join(k + "\n" for k in keep), encoding="utf-8")
        self.fh = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()

    def write(self, record: dict[str, Any]) -> None:
        self.fh.write(json.dumps(record, sort_keys=True) + "\n")
        self.fh.flush()

    def close(self) -> None:
        self.fh.close()


def _tensorboard(out: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except Exception:  # noqa: BLE001 - tensorboard is optional; a broken install must not stop training
        return None
    return SummaryWriter(str(out / "tensorboard"))


# ----------------------------------------------------------------------------------------------------
# the trainer


def _set_requires_grad(nets: list[nn.Module], flag: bool) -> None:
    for net in nets:
        for p in net.parameters():
            p.requires_grad_(flag)


class Trainer:
    """Holds the four networks, two optimizers, schedulers, scaler and pools of one run."""

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

        def factor(step: int) -> float:
            return lr_factor(step, steps_per_epoch, cfg.epochs, cfg.epochs_decay)

        self.sched_g = torch.optim.lr_scheduler.LambdaLR(self.opt_g, factor)
        self.sched_d = torch.optim.lr_scheduler.LambdaLR(self.opt_d, factor)
        self.scaler = torch.amp.GradScaler(rt.device.type, enabled=rt.precision == "fp16")
        # each rank has its own pool (its own fakes), seeded apart
        self.pool_a = ImagePool(cfg.pool_size, seed=cfg.seed * 1000 + 2 * rt.rank + 1)
        self.pool_b = ImagePool(cfg.pool_size, seed=cfg.seed * 1000 + 2 * rt.rank + 2)

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

    # -- state ------------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {
            "models": {
                k: {n: t.detach().cpu() for n, t in v.state_dict().items()} for k, v in self.nets.items()
            },
            "generator_config": self.g_ab.config,
            "discriminator_config": self.d_a.config,
            "optimizers": {"G": self.opt_g.state_dict(), "D": self.opt_d.state_dict()},
            "schedulers": {"G": self.sched_g.state_dict(), "D": self.sched_d.state_dict()},
            "scaler": self.scaler.state_dict(),
            "pools": {"A": self.pool_a.state_dict(), "B": self.pool_b.state_dict()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for k, net in self.nets.items():
            net.load_state_dict(state["models"][k])
        self.opt_g.load_state_dict(state["optimizers"]["G"])
        self.opt_d.load_state_dict(state["optimizers"]["D"])
        self.sched_g.load_state_dict(state["schedulers"]["G"])
        self.sched_d.load_state_dict(state["schedulers"]["D"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        pools = state["pools"]
        by_rank = state.get("pools_by_rank")
        if by_rank and len(by_rank) == self.rt.world_size:
            pools = by_rank[self.rt.rank]
        self.pool_a.load_state_dict(pools["A"], self.rt.device)
        self.pool_b.load_state_dict(pools["B"], self.rt.device)

    # -- one step ---------------------------------------------------------------------------------

    def step(self, real_a: torch.Tensor, real_b: torch.Tensor) -> dict[str, torch.Tensor]:
        """One reference CycleGAN iteration: update both G (D frozen), then both D on pooled fakes.

        real_a, real_b: (N, 3, S, S) in [-1, 1] on the device. Returns detached losses and the
        images of the first sample (for the sample grid).
        """
        cfg, rt, call = self.cfg, self.rt, self.call
        n = real_a.shape[0]
        w_cyc = cfg.lambda_cycle
        w_idt = cfg.lambda_identity * cfg.lambda_cycle
        _set_requires_grad([self.d_a, self.d_b], False)
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

        _set_requires_grad([self.d_a, self.d_b], True)
        self.opt_d.zero_grad(set_to_none=True)
        pooled_b = self.pool_b.query(fake_b.float())
        pooled_a = self.pool_a.query(fake_a.float())
        with rt.autocast():
            # real and fake in one call: per-sample norms make it equal to two calls
            pred = call["D_b"](torch.cat([real_b, pooled_b.to(real_b.dtype)], 0))
            loss_d_b = discriminator_loss(pred[:n], pred[n:], cfg.gan_mode)
            pred = call["D_a"](torch.cat([real_a, pooled_a.to(real_a.dtype)], 0))
            loss_d_a = discriminator_loss(pred[:n], pred[n:], cfg.gan_mode)
        self.scaler.scale(loss_d_a + loss_d_b).backward()
        self.scaler.step(self.opt_d)
        self.scaler.update()
        self.sched_g.step()
        self.sched_d.step()
        losses = dict(
            zip(
                LOSS_NAMES,
                (loss_g_ab, loss_g_ba, loss_cyc_a, loss_cyc_b, loss_idt_a, loss_idt_b, loss_d_a, loss_d_b),
            )
        )
        self.last_images = [t[0].detach() for t in (real_a, fake_b, rec_a, real_b, fake_a, rec_b)]
        return {k: v.detach() for k, v in losses.items()}

    @property
    def lr(self) -> float:
        return float(self.opt_g.param_groups[0]["lr"])


# ----------------------------------------------------------------------------------------------------
# run


def _verify_inputs(files: list[Path], size: int) -> list[torch.Tensor] | None:
    """Real images at the crop size and at an odd size that is not a multiple of 4, for the export check."""
    for path in files[:20]:
        with contextlib.suppress(Exception):
            odd = (size // 2 + 6, size // 2 - 2)  # e.g. 134x126 for 256: not multiples of 4
            return [data_mod.center_tensor(path, size, size), data_mod.center_tensor(path, *odd)]
    return None


def training_facts(ckpt: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "dataset_sizes",
        "steps",
        "epochs",
        "batch_size",
        "world_size",
        "precision",
        "device",
        "wall_time_s",
        "images_per_s",
        "command",
        "gan_mode",
        "lambda_cycle",
        "lambda_identity",
        "lr",
        "seed",
        "image_size",
        "load_size",
    )
    facts = dict(ckpt.get("facts", {}))
    return {k: facts[k] for k in keys if k in facts}


def export_checkpoint(
    checkpoint: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    verify_a: list[torch.Tensor] | None = None,
    verify_b: list[torch.Tensor] | None = None,
) -> list[Any]:
    """Export both generators of ``checkpoint`` (file or run folder) to ``out_dir``/{a2b,b2a}.onnx.

    Verification inputs default to real images of the training folders when they still exist.
    """
    from imgxlate.train.export import export_pair

    ckpt = load_checkpoint(checkpoint)
    cfg = TrainConfig.from_dict(ckpt["config"])
    gens = {}
    for key in ("G_ab", "G_ba"):
        gen = build_generator(ckpt["generator_config"])
        gen.load_state_dict(ckpt["models"][key])
        gens[key] = gen.eval()
    size = cfg.image_size
    if verify_a is None:
        with contextlib.suppress(Exception):
            verify_a = _verify_inputs(data_mod.find_images(cfg.domain_a), size)
    if verify_b is None:
        with contextlib.suppress(Exception):
            verify_b = _verify_inputs(data_mod.find_images(cfg.domain_b), size)
    name_a, name_b = ckpt.get("names") or cfg.resolved_names()
    gcfg = {k: v for k, v in ckpt["generator_config"].items() if k in ("ngf", "n_blocks", "upsample")}
    facts = training_facts(ckpt)
    return export_pair(
        gens["G_ab"],
        gens["G_ba"],
        out_dir,
        name_a,
        name_b,
        gcfg,
        image_size=size,
        steps=int(ckpt["step"]),
        epochs=float(ckpt.get("epoch", 0.0)),
        training=facts,
        verify_a=verify_a,
        verify_b=verify_b,
    )


def train(
    cfg: TrainConfig | None = None,
    resume: str | os.PathLike[str] | None = None,
    overrides: dict[str, Any] | None = None,
    on_step: Callable[[StepInfo], None] | None = None,
    command: str | None = None,
    stop_after: int | None = None,
) -> TrainResult:
    """Train (or resume) a CycleGAN run; returns where things were written.

    ``resume``: a checkpoint file or run folder; its config is used, with ``overrides`` (only the
    keys in RESUME_OVERRIDABLE) applied on top. ``stop_after``: stop (and checkpoint) after this many
    steps of this call, without exporting (tests use it to split a run).
    """
    ckpt = None
    if resume is not None:
        ckpt = load_checkpoint(resume)
        cfg = TrainConfig.from_dict(ckpt["config"])
        for key, value in (overrides or {}).items():
            if key not in RESUME_OVERRIDABLE:
                raise UsageError(
                    f"--{key.replace('_', '-')} cannot change when resuming (it would change the training); "
                    f"start a new run with --out instead"
                )
            setattr(cfg, key, value)
    elif cfg is None:
        raise UsageError("train() needs a TrainConfig or a checkpoint to resume")
    cfg.validate()
    rt = setup_runtime(cfg)
    try:
        return _train(cfg, rt, ckpt, on_step, command or " ".join(sys.argv), stop_after)
    finally:
        if rt.distributed and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def _train(
    cfg: TrainConfig,
    rt: Runtime,
    ckpt: dict[str, Any] | None,
    on_step: Callable[[StepInfo], None] | None,
    command: str,
    stop_after: int | None,
) -> TrainResult:
    out = Path(cfg.out).expanduser()
    ckpt_path = out / "checkpoints" / "last.pt"
    if rt.is_main:
        # temp files a killed save left behind (atomic_path removes its own on normal errors)
        for stale in (out / "checkpoints").glob(".imgxlate-tmp-*"):
            with contextlib.suppress(OSError):
                stale.unlink()
    if ckpt is None and ckpt_path.exists():
        raise TrainingError(
            f"{out} already holds a training run ({ckpt_path}); continue it with --resume {out} "
            "or choose another --out"
        )
    files_a = data_mod.scan_folder(cfg.domain_a, "domain A")
    files_b = data_mod.scan_folder(cfg.domain_b, "domain B")
    name_a, name_b = (ckpt.get("names") if ckpt else None) or cfg.resolved_names()
    spe = data_mod.steps_per_epoch(len(files_a), len(files_b), cfg.batch_size, rt.world_size)
    if ckpt is not None:
        spe = int(ckpt["steps_per_epoch"])  # the schedule is fixed at the start of the run
    total = total_steps(cfg, spe)
    trainer = Trainer(cfg, rt, spe)
    start, wall_before, seen_before = 0, 0.0, 0
    if ckpt is not None:
        trainer.load_state_dict(ckpt)
        _set_rng_state(ckpt["rng"])
        start = int(ckpt["step"])
        wall_before = float(ckpt.get("facts", {}).get("wall_time_s", 0.0))
        seen_before = int(ckpt.get("images_seen", 0))
        command = ckpt.get("facts", {}).get("command", command)
        log.info("resuming %s at step %d of %d", ckpt["path"], start, total)
    end = total if stop_after is None else min(total, start + stop_after)
    if ckpt is None:
        log.info(
            "training %s (%d images) <-> %s (%d images): %d steps (%d per epoch, batch %d x %d processes) "
            "on %s, %s",
            name_a, len(files_a), name_b, len(files_b), total, spe, cfg.batch_size, rt.world_size,
            rt.device_name(), rt.precision,
        )

    dataset = data_mod.UnpairedDataset(files_a, files_b, cfg.load_size, cfg.image_size, cfg.flip, cfg.seed)
    loader = data_mod.make_loader(
        dataset,
        cfg.batch_size,
        start,
        spe,
        cfg.workers,
        pin_memory=rt.device.type == "cuda",
        rank=rt.rank,
        world_size=rt.world_size,
    )
    jlog = tb = None
    if rt.is_main:
        out.mkdir(parents=True, exist_ok=True)
        jlog = _JsonLog(out / "log.jsonl", start if ckpt is not None else None)
        tb = _tensorboard(out)
    fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
    images_per_step = cfg.batch_size * rt.world_size
    step = start
    t0 = time.perf_counter()
    window_t, window_steps = t0, 0
    sums: dict[str, torch.Tensor] = {}
    n_sum = 0
    last: dict[str, float] = {}
    ips = 0.0

    def facts_now() -> dict[str, Any]:
        wall = wall_before + time.perf_counter() - t0
        seen = seen_before + (step - start) * images_per_step
        return {
            "dataset_sizes": {name_a: len(files_a), name_b: len(files_b)},
            "steps": step,
            "epochs": round(step / spe, 4),
            "batch_size": cfg.batch_size,
            "world_size": rt.world_size,
            "precision": rt.precision,
            "device": rt.device_name(),
            "wall_time_s": round(wall, 1),
            "images_per_s": round(seen / wall, 3) if wall > 0 else 0.0,
            "command": command,
            "gan_mode": cfg.gan_mode,
            "lambda_cycle": cfg.lambda_cycle,
            "lambda_identity": cfg.lambda_identity,
            "lr": cfg.lr,
            "seed": cfg.seed,
            "image_size": cfg.image_size,
            "load_size": cfg.load_size,
        }

    def checkpoint() -> None:
        pools_by_rank = None
        if rt.distributed:
            # every rank keeps its own pools; gather them so a resume restores each rank's (collective:
            # all ranks call checkpoint() at the same steps)
            pools_by_rank = [None] * rt.world_size
            mine = {"A": trainer.pool_a.state_dict(), "B": trainer.pool_b.state_dict()}
            torch.distributed.all_gather_object(pools_by_rank, mine)
        if not rt.is_main:
            return
        state = {
            "format": CHECKPOINT_FORMAT,
            "format_version": CHECKPOINT_VERSION,
            "config": cfg.to_dict(),
            "names": [name_a, name_b],
            "step": step,
            "epoch": step / spe,
            "steps_per_epoch": spe,
            "world_size": rt.world_size,
            "images_seen": seen_before + (step - start) * images_per_step,
            "rng": _rng_state(),
            # data order is a pure function of (seed, epoch, position): this is all it needs
            "data": {"seed": cfg.seed, "epoch": step // spe, "step_in_epoch": step % spe},
            "facts": facts_now(),
            **trainer.state_dict(),
        }
        if pools_by_rank is not None:
            state["pools_by_rank"] = pools_by_rank
        save_checkpoint(ckpt_path, state)

    interrupted = False
    try:
        batches = iter(loader)
        while step < end:
            batch = next(batches)
            real_a = batch["A"].to(rt.device, non_blocking=True).contiguous(memory_format=fmt)
            real_b = batch["B"].to(rt.device, non_blocking=True).contiguous(memory_format=fmt)
            losses = trainer.step(real_a, real_b)
            step += 1
            window_steps += 1
            for k, v in losses.items():
                sums[k] = sums[k] + v if k in sums else v.clone()
            n_sum += 1
            report = step == end or (cfg.log_every and step % cfg.log_every == 0) or step % 10 == 0
            if report:
                now = time.perf_counter()
                ips = window_steps * images_per_step / max(now - window_t, 1e-9)
                window_t, window_steps = now, 0
                last = {k: float(v) / n_sum for k, v in sums.items()}
                sums, n_sum = {}, 0
                if not all(math.isfinite(v) for v in last.values()):
                    # no checkpoint of the broken state: the last good one stays
                    raise TrainingError(
                        f"training diverged at step {step} (a loss is NaN or infinite); resume from the last "
                        f"checkpoint with --resume {out} after lowering the risk: --precision fp32"
                    )
                if rt.is_main:
                    if jlog is not None and (step == end or (cfg.log_every and step % cfg.log_every == 0)):
                        record = {
                            "step": step,
                            "epoch": round(step / spe, 4),
                            "lr": trainer.lr,
                            "images_per_s": round(ips, 3),
                            "time": round(now - t0 + wall_before, 2),
                            **{k: round(v, 6) for k, v in last.items()},
                        }
                        jlog.write(record)
                        if tb is not None:
                            for k, v in last.items():
                                tb.add_scalar(f"loss/{k}", v, step)
                            tb.add_scalar("lr", trainer.lr, step)
                            tb.add_scalar("images_per_s", ips, step)
                    if on_step is not None:
                        on_step(StepInfo(step, total, start, step / spe, trainer.lr, ips, last))
            if rt.is_main and cfg.sample_every and step % cfg.sample_every == 0:
                imgs = trainer.last_images
                save_sample_grid(out / "samples" / f"step_{step:06d}.png", [imgs[:3], imgs[3:]])
            if cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and step != end:
                checkpoint()
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if jlog is not None:
            jlog.close()
        if tb is not None:
            tb.close()
    if step > start or ckpt is None:
        checkpoint()
    wall = wall_before + time.perf_counter() - t0
    if interrupted:
        raise TrainingError(f"interrupted at step {step}; checkpoint saved, continue with --resume {out}")
    model_dir = None
    if rt.is_main and cfg.export and step >= total:
        model_dir = out / "model"
        facts = facts_now()
        export_checkpoint(
            ckpt_path,
            model_dir,
            _verify_inputs(files_a, cfg.image_size),
            _verify_inputs(files_b, cfg.image_size),
        )
        log.info(
            "exported %s (a2b.onnx, b2a.onnx), %s steps, %.2f images/s",
            model_dir,
            step,
            facts["images_per_s"],
        )
    seen = seen_before + (step - start) * images_per_step
    return TrainResult(
        out,
        step,
        ckpt_path if rt.is_main else None,
        model_dir,
        seen / wall if wall > 0 else 0.0,
        wall,
        last,
        trainer,
    )
