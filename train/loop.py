"""The training loop, top to bottom: settings -> run folder -> data -> trainer -> steps -> checkpoint
-> export.

Every method (CycleGAN, CUT, FastCUT) runs through this one loop; what a step does lives in the
method's trainer (``cyclegan.py``, ``cut.py``), the file format in ``checkpoint.py``, the reporting in
``monitor.py``. Library code: no terminal output besides the ``imgxlate.train`` logger; the CLI passes
``on_step`` to draw progress.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import math
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from imgxlate._atomic import TEMP_PREFIX
from imgxlate._lock import exclusive
from imgxlate._units import counted
from imgxlate.errors import TrainingError, TrainingInterrupted, UsageError
from imgxlate.extras import require
from imgxlate.train import data as data_mod
from imgxlate.train.checkpoint import (
    CHECKPOINT_FORMAT,
    generators_from_onnx,
    how_to_go_on,
    is_model_folder,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
    write_failure,
)
from imgxlate.train.config import RESUME_OVERRIDABLE, TrainConfig
from imgxlate.train.cyclegan import CycleGANTrainer
from imgxlate.train.export import ensure_folder, export_checkpoint, remove_empty, verify_inputs
from imgxlate.train.monitor import JsonLog, StepInfo, save_sample_grid, tensorboard_writer
from imgxlate.train.runtime import Runtime, setup_runtime
from imgxlate.train.schedule import lr_factor, total_steps

log = logging.getLogger("imgxlate.train")

__all__ = [
    "Runtime",
    "StepInfo",
    "TrainResult",
    "export_checkpoint",
    "load_checkpoint",
    "lr_factor",
    "make_trainer",
    "total_steps",
    "train",
]

REPORT_EVERY = 10  # steps between progress callbacks (and loss/NaN checks)


@dataclass
class TrainResult:
    out: Path
    steps: int
    checkpoint: Path | None
    model_dir: Path | None
    images_per_s: float
    wall_time_s: float
    losses: dict[str, float]
    trainer: Any = None  # the networks in memory (tests, notebooks)
    method: str = "cyclegan"

    def summary(self) -> dict[str, Any]:
        """The JSON summary ``imgxlate-train --json`` prints (times rounded)."""
        return {
            "method": self.method,
            "out": str(self.out),
            "steps": self.steps,
            "checkpoint": str(self.checkpoint) if self.checkpoint else None,
            "model_dir": str(self.model_dir) if self.model_dir else None,
            "images_per_s": round(self.images_per_s, 2),
            "wall_time_s": round(self.wall_time_s, 1),
            "losses": {k: round(v, 4) for k, v in self.losses.items()},
        }


def make_trainer(cfg: TrainConfig, rt: Runtime, steps_per_epoch: int) -> Any:
    """The trainer of ``cfg.method``: CycleGANTrainer or CutTrainer (CUT and FastCUT)."""
    if cfg.method == "cyclegan":
        return CycleGANTrainer(cfg, rt, steps_per_epoch)
    from imgxlate.train.cut import CutTrainer

    return CutTrainer(cfg, rt, steps_per_epoch)


# ----------------------------------------------------------------------------------------------------
# 1. settings


def resolve_settings(
    cfg: TrainConfig | None, resume: str | os.PathLike[str] | None, overrides: dict[str, Any] | None
) -> tuple[TrainConfig, dict[str, Any] | None]:
    """The config of a new run, or of the checkpoint being resumed with the allowed overrides."""
    if resume is None:
        if cfg is None:
            raise UsageError("train() needs a TrainConfig or a checkpoint to resume")
        cfg.validate()
        return cfg, None
    folder = Path(resume).expanduser()
    if folder.is_dir() and not (folder / "checkpoints" / "last.pt").exists() and (folder / RUN_LOCK).exists():
        # a run at work there that has not saved yet: "has no checkpoints/last.pt" told nothing
        with exclusive(folder / RUN_LOCK, lambda: UsageError(
                f"another imgxlate-train is using {folder} right now and has saved no checkpoint yet; wait for "
                "its first checkpoint (--checkpoint-every) or for it to finish")):
            pass
    ckpt = load_checkpoint(resume)
    stored = TrainConfig.from_dict(ckpt["config"])
    cfg = TrainConfig.from_dict(ckpt["config"])
    # The run goes on where it is resumed from: a copied or moved run folder is written to, not the
    # folder it was first trained in (the stored ``out``). A loose .pt file keeps the stored folder.
    here = _run_folder_of(resume, Path(ckpt["path"]))
    if here is not None:
        cfg.out = str(here)
    for key, value in (overrides or {}).items():
        if key == "out" or _same_setting(getattr(stored, key, None), value):  # out: below; else no change
            continue
        if key not in RESUME_OVERRIDABLE:
            raise UsageError(
                f"--{key.replace('_', '-')} cannot change when resuming (it would change the training); "
                f"start a new run with --out instead (add --init-from {resume} to start it from this run's weights)"
            )
        setattr(cfg, key, value)
    _choose_out(cfg, stored, (overrides or {}).get("out"), here, Path(ckpt["path"]))
    cfg.validate(folders="out" in (overrides or {}))
    return cfg, ckpt


def _choose_out(cfg: TrainConfig, stored: TrainConfig, given: Any, here: Path | None, ckpt_file: Path) -> None:
    """Where a resumed run writes: an ``--out`` given is honoured unless it holds another run (then
    refused; or, when it is the folder a copied run was first trained in, the first command given
    again, the run goes on in the copy, saying so); without one, the run's own folder. A loose
    checkpoint file goes on in the stored folder only when that holds no other run."""

    def holds_another_run(folder: Any) -> bool:
        last = Path(folder).expanduser() / "checkpoints" / "last.pt"
        return last.is_file() and not _same_setting(last, ckpt_file)

    if given is not None and not (here is not None and _same_setting(given, here)):
        if not holds_another_run(given):
            cfg.out = str(given)
        elif here is not None and _same_setting(given, stored.out):
            log.warning("--out %s holds the run %s was copied from: going on in %s, where it is resumed from",
                        given, here, here)
        else:
            raise UsageError(
                f"--out {given} already holds another training run; resuming {ckpt_file} there would replace "
                "it: choose another --out" + (f", or leave --out out to go on in {here}" if here else "")
            )
    elif here is None and holds_another_run(cfg.out):
        raise UsageError(
            f"{ckpt_file} is not in a run folder, and the folder its run was trained in ({cfg.out}) holds another "
            "checkpoint, which going on there would replace: say where the run goes with --out"
        )


def _run_folder_of(resume: str | os.PathLike[str], ckpt_file: Path) -> Path | None:
    """The run folder a resume names: the one holding ``checkpoints/X.pt`` (given as the run, its
    checkpoints folder or the file), or a folder holding ``last.pt`` itself; None for a checkpoint file
    elsewhere."""
    if ckpt_file.parent.name == "checkpoints":
        return ckpt_file.parent.parent
    given = Path(resume).expanduser()
    return given if given.is_dir() else None


def _same_setting(stored: Any, given: Any) -> bool:
    """Is a setting given on the command line the one the checkpoint holds? (Folders compare by
    where they lead: ``runs/x`` and ``./runs/x/`` are one.)"""
    if stored == given:
        return True
    if isinstance(stored, (str, os.PathLike)) and isinstance(given, (str, os.PathLike)):
        with contextlib.suppress(OSError, ValueError):
            return Path(stored).expanduser().resolve() == Path(given).expanduser().resolve()
    return False


def initial_weights(cfg: TrainConfig) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """``--init-from``: the networks of another run's checkpoint, checked against this run's network
    settings (a mismatch is a usage error naming the settings), and where they came from (checkpoint,
    step, the command that made them: it goes into the model card); None when not fine-tuning."""
    if not cfg.init_from:
        return None
    if is_model_folder(cfg.init_from):
        return _initial_generators(cfg)
    src = load_checkpoint(cfg.init_from)
    theirs = TrainConfig.from_dict(src["config"]).apply_method_defaults().network_settings()
    _refuse_differences(src["path"], "networks", cfg.network_settings(), theirs,
                        "--ngf, --n-blocks, --upsample, --down-padding, --ndf, --n-layers-d, --method")
    facts = src.get("facts", {})
    origin = {"checkpoint": src["path"], "steps": int(src["step"]), "command": facts.get("command", "")}
    if facts.get("fine_tuned_from"):
        origin["fine_tuned_from"] = facts["fine_tuned_from"]  # a chain of fine-tunes keeps every link
    return src["models"], origin


def _refuse_differences(source: str, what: str, ours: dict[str, Any], theirs: dict[str, Any], flags: str) -> None:
    """--init-from: a usage error naming every setting of this run that differs from the weights' source."""
    differ = [k for k in ours if ours[k] != theirs.get(k)]
    if differ:
        told = ", ".join(f"{k} {theirs.get(k)!r} there, {ours[k]!r} here" for k in differ)
        raise UsageError(f"--init-from {source}: its {what} differ ({told}); pass the same settings ({flags})")


def _initial_generators(cfg: TrainConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """``--init-from`` an exported pair: both generators from its ONNX files (the discriminators start
    fresh: an export has none), checked against this run's generator settings."""
    if cfg.method != "cyclegan":
        raise UsageError(f"--init-from {cfg.init_from}: an exported pair starts a cyclegan run, not {cfg.method}")
    models, theirs, meta = generators_from_onnx(cfg.init_from)
    _refuse_differences(cfg.init_from, "generators", cfg.generator_config(), theirs,
                        "--ngf, --n-blocks, --upsample, --down-padding")
    training = dict(meta.training)
    origin = {"model": str(cfg.init_from), "steps": int(meta.steps), "command": training.get("command", ""),
              "discriminators": "fresh"}
    if training.get("fine_tuned_from"):
        origin["fine_tuned_from"] = training["fine_tuned_from"]
    return models, origin


def train(
    cfg: TrainConfig | None = None,
    resume: str | os.PathLike[str] | None = None,
    overrides: dict[str, Any] | None = None,
    on_step: Callable[[StepInfo], None] | None = None,
    command: str | None = None,
    stop_after: int | None = None,
    step_guard: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext,
) -> TrainResult:
    """Train (or resume) a run; returns where things were written.

    ``resume``: a checkpoint file or run folder; its config is used, with ``overrides`` (only the
    keys in RESUME_OVERRIDABLE) applied on top. ``stop_after``: stop (and checkpoint) after this many
    steps of this call, without exporting (tests use it to split a run). ``step_guard``: a context
    manager entered around each step; the CLI passes one that holds a stop signal until the step ends
    (a KeyboardInterrupt between the generators' and the discriminators' updates would otherwise be
    saved as a finished step, and the resumed run would not be the uninterrupted one). A distributed
    run also holds stops with it for its whole loop and reads the stop held from the guard's value
    (``signum``, as :func:`imgxlate.cli.common.defer_stop` yields), so that its ranks stop together.
    A KeyboardInterrupt checkpoints the step reached and raises :class:`TrainingInterrupted`. Without
    a guard, one that lands inside a step saves that step's partial update under the previous step's
    number: training goes on from it fine, but the resumed run is no longer bit-identical to an
    uninterrupted one.
    """
    cfg, ckpt = resolve_settings(cfg, resume, overrides)
    if cfg.export:  # torch's ONNX exporter needs onnxscript: say so now, not after the training
        require("train", ("onnxscript",), "the ONNX export at the end of the run (--no-export skips it)")
    rt = setup_runtime(cfg)
    try:
        with contextlib.ExitStack() as held:  # the run folder's lock, for as long as the run writes there
            return _train(cfg, rt, ckpt, on_step, command or " ".join(sys.argv), stop_after, step_guard, held)
    finally:
        if rt.distributed and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def _leave_the_group(rt: Runtime, trainer: Any) -> None:
    """A distributed run's last collective, which every rank reaches after the final save however the
    run ends (finished, stopped, or its export on rank 0 cut or failed), before the process group goes."""
    if not rt.distributed:
        return
    # The DDP wrappers hold the process group: left in the returned trainer (or in the traceback of a
    # stop) they outlived destroy_process_group and were torn down at interpreter exit, where gloo's
    # threads aborted the process about one run in six (exit -6 after a finished run, which torchrun
    # reports as a failure). The trainer keeps its networks; only the wrappers go. Before the barrier:
    # a stop that reaches a rank waiting there (while rank 0 exports) is raised as soon as it returns.
    trainer.call.clear()
    gc.collect()  # DDP's reducer sits in reference cycles: free it now, before the group goes
    # every rank finishes its collectives before any tears gloo/NCCL down: a rank that exited
    # first could abort the other inside the backend ("terminate called without an active
    # exception", seen once in CI)
    torch.distributed.barrier()


# A distributed run on GPUs agrees on a stop every this many steps (each agreement waits for the GPU)
AGREE_EVERY_ON_GPU = 10


# ----------------------------------------------------------------------------------------------------
# 2. the run


# Held by the main process of a run in its folder (hidden; removed at the end, dropped by the kernel
# if the process dies).
RUN_LOCK = ".imgxlate-train.lock"


def check_run_folder(out: Path, resuming: bool) -> Path:
    """Check ``--out`` before any work: not a file (nor under one), and not a folder that already holds
    a run unless resuming. Returns the checkpoint path."""
    ckpt_path = out / "checkpoints" / "last.pt"
    for path in (out, *out.parents):
        if path.exists():
            if not path.is_dir():
                raise UsageError(
                    f"--out {out}: {path} is a file; give a folder for the run (it will hold checkpoints/, model/)"
                )
            break
    if not resuming and ckpt_path.exists():
        raise UsageError(
            f"{out} already holds a training run ({ckpt_path}); continue it with --resume {out} "
            "or choose another --out"
        )
    model = out / "model"
    if not resuming and any((model / f).exists() for f in ("a2b.onnx", "b2a.onnx")):
        # its checkpoints deleted to save space: a new run there replaced the trained model at its end
        raise UsageError(
            f"{out} holds the model of an earlier run ({model}) and no checkpoint to continue it; a new run "
            f"there would replace that model: choose another --out, or keep the model elsewhere first "
            f"(`imgxlate models add {model} --name NAME` installs a copy) and delete {model}"
        )
    return ckpt_path


def check_domain_folder(folder: str, role: str) -> None:
    """A missing domain folder is a usage error (exit 2, as a missing ``convert`` input)."""
    path = Path(folder).expanduser()
    if not folder:
        raise UsageError(f"no {role} folder given; pass --{role.replace(' ', '-').lower()} DIR")
    if not path.exists():
        raise UsageError(f"{role} folder {str(path)!r} does not exist; check the path")
    if not path.is_dir():
        raise UsageError(f"{role} folder {str(path)!r} is not a folder; pass a folder of training images")


@contextlib.contextmanager
def _writing(path: Path, out: Path) -> Iterator[None]:
    """A write into the run folder (the log, TensorBoard, a sample grid): an OSError (read-only folder,
    full disk) becomes a TrainingError naming the file and what to do, not a traceback."""
    try:
        yield
    except OSError as exc:
        raise TrainingError(
            f"cannot write {path} ({write_failure(exc, path.parent)}); the run stops here: free space or make "
            f"{out} writable, then {how_to_go_on(out)}"
        ) from exc


def prepare_run_folder(out: Path, is_main: bool, start: int) -> None:
    """Create the run folder; remove temp files a killed save left behind, and the sample grids of
    steps after ``start`` (the step the run begins at: 0, or the checkpoint's), which belong to a run
    that did not go on from here (a run stopped before its checkpoint, then started again)."""
    if is_main:
        ensure_folder(out / "checkpoints")
        # temp files a killed save left behind (atomic_path removes its own on normal errors)
        for stale in (out / "checkpoints").glob(TEMP_PREFIX + "*"):
            with contextlib.suppress(OSError):
                stale.unlink()
        for grid in (out / "samples").glob("step_*.png"):
            with contextlib.suppress(ValueError, OSError):
                if int(grid.stem.removeprefix("step_")) > start:
                    grid.unlink()


class _Meter:
    """Images/s over the last reporting window, loss means over it, and the ETA."""

    def __init__(self, images_per_step: int) -> None:
        self.images_per_step = images_per_step
        self.t = time.perf_counter()
        self.steps = 0
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, int] = {}
        self.images_per_s = 0.0
        self.last: dict[str, float] = {}

    def add(self, losses: dict[str, torch.Tensor]) -> None:
        """One step's losses; a step may report fewer (a discriminator warm-up step has no cycle loss)."""
        self.steps += 1
        for k, v in losses.items():
            self.sums[k] = self.sums[k] + v if k in self.sums else v.clone()
            self.counts[k] = self.counts.get(k, 0) + 1

    def close_window(self) -> dict[str, float]:
        """Each loss's mean over the steps of the window that reported it."""
        now = time.perf_counter()
        self.images_per_s = self.steps * self.images_per_step / max(now - self.t, 1e-9)
        self.t, self.steps = now, 0
        self.last = {k: float(v) / self.counts[k] for k, v in self.sums.items()}
        self.sums, self.counts = {}, {}
        return self.last

    def eta(self, steps_left: int) -> float | None:
        if self.images_per_s <= 0:
            return None
        return steps_left * self.images_per_step / self.images_per_s


def _train(
    cfg: TrainConfig,
    rt: Runtime,
    ckpt: dict[str, Any] | None,
    on_step: Callable[[StepInfo], None] | None,
    command: str,
    stop_after: int | None,
    step_guard: Callable[[], contextlib.AbstractContextManager[Any]],
    held: contextlib.ExitStack,
) -> TrainResult:
    # the run folder and the data, checked before anything is written
    out = Path(cfg.out).expanduser()
    ckpt_path = check_run_folder(out, ckpt is not None)
    check_domain_folder(cfg.domain_a, "domain A")
    check_domain_folder(cfg.domain_b, "domain B")
    files_a = data_mod.scan_folder(cfg.domain_a, "domain A")
    files_b = data_mod.scan_folder(cfg.domain_b, "domain B")
    if rt.is_main:  # one run per folder: a second one would interleave its log and replace the checkpoints
        made = [f for f in (out, *out.parents) if not f.exists()]
        held.callback(remove_empty, made)  # after the lock is gone: a run stopped before writing leaves none
        # a folder nothing can be written into needs no lock: the first write says what to do
        with contextlib.suppress(OSError):
            held.enter_context(exclusive(out / RUN_LOCK, lambda: UsageError(
                f"another imgxlate-train is using {out} right now; wait for it to finish, or choose another --out")))
    name_a, name_b = (ckpt.get("names") if ckpt else None) or cfg.resolved_names()
    spe = data_mod.steps_per_epoch(len(files_a), len(files_b), cfg.batch_size, rt.world_size)
    dataset_facts = {"A": data_mod.fingerprint(files_a, cfg.domain_a),
                     "B": data_mod.fingerprint(files_b, cfg.domain_b)}
    if ckpt is not None:
        was = int(ckpt.get("world_size", 1))
        if was != rt.world_size:  # the steps per epoch, the data each rank takes, the pools: all differ
            how = (f"torchrun --nproc-per-node {was} -m imgxlate.train --resume {out}" if was > 1 else
                   f"imgxlate-train --resume {out} (one process, without torchrun)")
            raise UsageError(
                f"{ckpt['path']} was trained by {was} process(es) and this resume runs {rt.world_size}; another "
                f"number changes the data order and the schedule, so resume it as it ran: {how}")
        spe = int(ckpt["steps_per_epoch"])  # the schedule is fixed at the start of the run
        before = ckpt.get("dataset") or {}
        if before.get("A") and before.get("A") != before.get("B") and \
                (before.get("A"), before.get("B")) == (dataset_facts["B"], dataset_facts["A"]):
            raise UsageError(
                f"--domain-a {cfg.domain_a} holds the images the run learnt as domain B, and --domain-b those of "
                f"domain A: the folders are swapped; give them the other way round")
        for domain, folder in (("A", cfg.domain_a), ("B", cfg.domain_b)):
            if domain in before and before[domain] != dataset_facts[domain] and rt.is_main:
                log.warning(
                    "domain %s (%s) holds other images than the run was trained on (%d now, %d then; compared "
                    "by name): it goes on, but not as the uninterrupted run would have", domain, folder,
                    dataset_facts[domain]["count"], before[domain]["count"],
                )
    total = total_steps(cfg, spe)
    if ckpt is not None and int(ckpt["step"]) > total:
        raise UsageError(
            f"{ckpt['path']} is at step {int(ckpt['step'])}, past the {total} steps this run now ends at "
            f"(--max-steps {cfg.max_steps}); give a larger --max-steps to train on, or export the "
            f"checkpoint with imgxlate-train export {ckpt['path']} --out FOLDER"
        )
    init = initial_weights(cfg) if ckpt is None else None
    origin = init[1] if init else (ckpt or {}).get("facts", {}).get("fine_tuned_from")
    prepare_run_folder(out, rt.is_main, int(ckpt["step"]) if ckpt is not None else 0)

    # the trainer, restored when resuming
    trainer = make_trainer(cfg, rt, spe)
    start, wall_before, seen_before = 0, 0.0, 0
    if ckpt is not None:
        trainer.load_state_dict(ckpt)
        set_rng_state(ckpt["rng"])
        start = int(ckpt["step"])
        wall_before = float(ckpt.get("facts", {}).get("wall_time_s", 0.0))
        seen_before = int(ckpt.get("images_seen", 0))
        command = ckpt.get("facts", {}).get("command", command)
        log.info("resuming %s at step %d of %d", ckpt["path"], start, total)
    else:
        if init is not None:
            for name, net in trainer.nets.items():
                if name in init[0]:  # an exported pair has generators only: its discriminators start fresh
                    net.load_state_dict(init[0][name])
            log.info("fine-tuning from the networks of %s (%s)", cfg.init_from, ", ".join(sorted(init[0])))
        directions = " and ".join(cfg.directions()) if cfg.method != "cyclegan" else "both directions"
        log.info(
            "training %s (%s) %s (%s) <-> %s (%s): %s (%d per epoch, batch %d x %s) on %s, %s",
            cfg.method,
            directions,
            name_a,
            counted(len(files_a), "image"),
            name_b,
            counted(len(files_b), "image"),
            counted(total, "step"),
            spe,
            cfg.batch_size,
            counted(rt.world_size, "process", "processes"),
            rt.device_name(),
            rt.precision,
        )
    end = total if stop_after is None else min(total, start + stop_after)

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
        with _writing(out / "log.jsonl", out):
            jlog = JsonLog(out / "log.jsonl", start)  # lines past it are an earlier, unsaved run's
        with _writing(out / "tensorboard", out):
            tb = tensorboard_writer(out)

    fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
    images_per_step = cfg.batch_size * rt.world_size
    meter = _Meter(images_per_step)
    if ckpt is not None and ckpt.get("log_window"):
        meter.sums = {k: v.to(rt.device) for k, v in ckpt["log_window"]["sums"].items()}
        meter.counts = dict(ckpt["log_window"]["counts"])
    t0 = time.perf_counter()
    step = start

    def facts_now() -> dict[str, Any]:
        wall = wall_before + time.perf_counter() - t0
        seen = seen_before + (step - start) * images_per_step
        facts = {
            "method": cfg.method,
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
            "lr": cfg.lr,
            "seed": cfg.seed,
            "image_size": cfg.image_size,
            "load_size": cfg.load_size,
        }
        if origin:
            facts["fine_tuned_from"] = origin
        if cfg.method == "cyclegan":
            facts.update(lambda_cycle=cfg.lambda_cycle, lambda_identity=cfg.lambda_identity)
            if cfg.d_warmup_steps:
                facts["d_warmup_steps"] = cfg.d_warmup_steps
        else:
            facts.update(
                lambda_gan=cfg.lambda_gan,
                lambda_nce=cfg.lambda_nce,
                nce_idt=cfg.nce_idt,
                flip_equivariance=cfg.flip_equivariance,
                num_patches=cfg.num_patches,
                nce_temperature=cfg.nce_temperature,
            )
        return facts

    def checkpoint() -> None:
        per_rank = None
        if rt.distributed:
            # every rank keeps its own pools and samplers; gather them so a resume restores each
            # rank's (collective: all ranks call checkpoint() at the same steps)
            per_rank = [None] * rt.world_size
            torch.distributed.all_gather_object(per_rank, trainer.rank_state())
        if not rt.is_main:
            return
        state = {
            "format": CHECKPOINT_FORMAT,
            "format_version": 1 if cfg.method == "cyclegan" else 2,
            "config": cfg.to_dict(),
            "names": [name_a, name_b],
            "step": step,
            "epoch": step / spe,
            "steps_per_epoch": spe,
            "world_size": rt.world_size,
            "images_seen": seen_before + (step - start) * images_per_step,
            "rng": rng_state(),
            # data order is a pure function of (seed, epoch, position): this is all it needs
            "data": {"seed": cfg.seed, "epoch": step // spe, "step_in_epoch": step % spe},
            "dataset": dataset_facts,  # which images, for the check when resuming
            "facts": facts_now(),
            **trainer.state_dict(),
        }
        if per_rank is not None:
            state["per_rank"] = per_rank
        # the losses of the log window under way: a resumed run logs the same means as an
        # uninterrupted one (a stop between two --log-every lines averaged only the steps after it)
        state["log_window"] = {"sums": {k: v.detach().cpu() for k, v in meter.sums.items()},
                               "counts": dict(meter.counts)}
        save_checkpoint(ckpt_path, state)

    # A stop under torchrun can reach the ranks at different steps, or only some of them. A rank that
    # left the loop alone waited forever in the checkpoint's all_gather while the others ran the next
    # step's gradient all-reduce (until torchrun's SIGKILL: no checkpoint). So a distributed run holds
    # stop signals for its whole loop (loading the data too) and its ranks agree after every step: all
    # leave after the same step and save it together. One process has nothing to agree with: its
    # guard around each step is enough. Reading the agreed value waits for the step's work: on a GPU
    # that stops the CPU from queueing the next step meanwhile, so there the ranks agree every
    # AGREE_EVERY_ON_GPU steps (a stop then waits at most that many steps; every rank counts the same).
    def agree_to_stop(stop: Any) -> int:
        """The stop signal any rank has received (0: none), held in its guard (``stop``: the guard's
        value); a collective: every rank calls it at the same point."""
        asked = stop.signum or 0
        agreed = rt.max_over_ranks(max(asked, stopped_by))
        if agreed and not asked and not stopped_by and rt.is_main:  # rank 0 says why the run stops
            log.warning("another process of this run was stopped by %s: every process stops after step %d, "
                        "which is saved", signal.Signals(agreed).name, step)
        return agreed

    # the steps
    interrupted = False
    stopped_by = 0  # a distributed run: the stop signal its ranks agreed on (0: none)
    whole_loop = step_guard() if rt.distributed else contextlib.nullcontext()
    batches: data_mod.Batches | None = None
    mid_step = False  # inside trainer.step: an error there leaves a half-applied step, never saved
    worker_died: int | None = None  # a data-loading process's exit code when it died (steps saved, then said)
    try:
        with data_mod.batches_of(loader) as batches, whole_loop as stop:  # the loaders end with the block
            while step < end:
                batches.check()  # a loading process that died (the usual victim of the OOM killer) stops here
                try:
                    batch = next(batches)
                except TrainingError:
                    if cfg.workers:  # from a worker, wrapped in its traceback: say it plainly
                        dataset.check_readable()
                    raise
                real_a = batch["A"].to(rt.device, non_blocking=True).contiguous(memory_format=fmt)
                real_b = batch["B"].to(rt.device, non_blocking=True).contiguous(memory_format=fmt)
                with step_guard():  # a step is applied whole and counted, or not at all
                    mid_step = True
                    losses_now = trainer.step(real_a, real_b)
                    step += 1
                    mid_step = False
                # (a library caller's guard that holds no stops, as the default one, has nothing to agree on)
                if rt.distributed and stop is not None and (
                        rt.device.type != "cuda" or step % AGREE_EVERY_ON_GPU == 0 or step == end):
                    stopped_by = agree_to_stop(stop)
                    if stopped_by:  # this rank's own stop, held, is raised as the block ends
                        break
                meter.add(losses_now)
                # the last step of the run is logged; a split (stop_after) leaves its window open, in the
                # checkpoint, so that the resumed run logs what an uninterrupted one does
                logged = step == total or bool(cfg.log_every and step % cfg.log_every == 0)
                if logged or step % REPORT_EVERY == 0:
                    losses = meter.close_window()
                    if not all(math.isfinite(v) for v in losses.values()):
                        # no checkpoint of the broken state: the last good one stays
                        raise TrainingError(
                            f"training diverged at step {step} (a loss is NaN or infinite); resume from the last "
                            f"checkpoint with --resume {out} after lowering the risk: --precision fp32"
                        )
                    info = StepInfo(
                        step,
                        total,
                        start,
                        step / spe,
                        trainer.lr,
                        meter.images_per_s,
                        losses,
                        # a warm-up step is several times faster than a full one: no ETA from its speed
                        eta_s=meter.eta(total - step) if step > cfg.d_warmup_steps else None,
                        logged=logged,
                    )
                    if rt.is_main and logged:
                        _log_step(jlog, tb, info, time.perf_counter() - t0 + wall_before, out)
                    if rt.is_main and on_step is not None:
                        on_step(info)
                if rt.is_main and cfg.sample_every and step % cfg.sample_every == 0:
                    grid = out / "samples" / f"step_{step:06d}.png"
                    with _writing(grid, out):
                        save_sample_grid(grid, trainer.sample_rows())
                if cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and step != end:
                    checkpoint()
    except KeyboardInterrupt:
        interrupted = True
    except BaseException as exc:
        # A loading process died: found between steps (LoaderDied), or PyTorch's error for a batch asked
        # of it (a RuntimeError, or a ConnectionResetError when it died handing one over). The steps
        # done are saved below, as for a stop. Not on several ranks: the others are inside a step's
        # collectives, and saving is one too; torchrun ends them.
        if (isinstance(exc, Exception) and not mid_step and batches is not None and batches.died is not None
                and not rt.distributed):
            worker_died = batches.died
        else:
            # the log and TensorBoard are closed without a word: a full disk that stopped the run would
            # only fail their last flush again, and hide the error being raised
            for closing in (jlog, tb):
                if closing is not None:
                    with contextlib.suppress(OSError):
                        closing.close()
            raise
    saved = False
    try:
        with step_guard() as stop:  # a stop while the run's files are closed and saved is held until they are
            if jlog is not None:
                with _writing(out / "log.jsonl", out):
                    jlog.close()
            if tb is not None:
                with _writing(out / "tensorboard", out):
                    tb.close()
            if step > start or ckpt is None:
                checkpoint()
            saved = True
            if rt.distributed and stop is not None:  # a stop during the save: every rank interrupted, or none
                stopped_by = agree_to_stop(stop)
    except KeyboardInterrupt:
        if not saved:  # no guard (a library caller): the save itself was cut, nothing to resume from here
            raise
        interrupted = True
    interrupted = interrupted or bool(stopped_by)
    wall = wall_before + time.perf_counter() - t0
    model_dir = None
    try:
        if interrupted:
            # signum: a rank stopped for another's signal exits as that one does (143 for SIGTERM)
            raise TrainingInterrupted(step, str(ckpt_path), str(out), how=how_to_go_on(out), signum=stopped_by)
        if worker_died is not None:
            saved = f"step {step} is saved" if step > start else f"no step was done since step {start}"
            ran = len(batches.workers) if batches is not None else cfg.workers
            if sys.platform != "win32" and worker_died == -signal.SIGKILL:  # (Windows has no SIGKILL)
                why = " (most often the system ending it for lack of memory)"
                then = (f"lower the memory used (fewer --workers: {ran} ran, and 0 loads in the trainer's own "
                        "process; fewer other programs)")
            else:
                why, then = "", "if it happens again, resume with --workers 0 to see the error in the trainer's own process"
            raise TrainingError(
                f"a data-loading process {data_mod.how_it_ended(worker_died)}{why}; {saved}. To go on, {then}: "
                f"{how_to_go_on(out)}"
            )

        # the export
        if rt.is_main and cfg.export and step >= total:
            model_dir = out / "model"
            trained_ips = facts_now()["images_per_s"]  # before the export's time counts
            names = ", ".join(f"{d}.onnx" for d in cfg.directions())
            log.info("exporting %s to %s (checked against PyTorch with ONNX Runtime) ...", names, model_dir)
            try:
                export_checkpoint(
                    ckpt_path,
                    model_dir,
                    verify_inputs(files_a, cfg.image_size),
                    verify_inputs(files_b, cfg.image_size),
                    overwrite=True,  # the run's own folder: a resumed, longer run replaces its earlier export
                )
            except KeyboardInterrupt:  # every file is written before any is renamed: nothing half-done
                raise TrainingInterrupted(step, str(ckpt_path), str(out), stage="export",
                                          how=how_to_go_on(out)) from None
            log.info("exported %s (%s) after %s steps at %.2f images/s", model_dir, names, step, trained_ips)
    finally:  # the other ranks wait here while rank 0 exports
        _leave_the_group(rt, trainer)
    seen = seen_before + (step - start) * images_per_step
    return TrainResult(
        out,
        step,
        ckpt_path if rt.is_main else None,
        model_dir,
        seen / wall if wall > 0 else 0.0,
        wall,
        meter.last,
        trainer,
        cfg.method,
    )


def _log_step(jlog: JsonLog | None, tb: Any, info: StepInfo, elapsed: float, out: Path) -> None:
    """One log.jsonl line (and TensorBoard scalars) for a --log-every step; a failed write names its
    file (TensorBoard writes on a thread of its own: its error shows at its next call)."""
    if jlog is not None:
        with _writing(out / "log.jsonl", out):
            _write_log_line(jlog, info, elapsed)
    if tb is not None:
        with _writing(out / "tensorboard", out):
            for k, v in info.losses.items():
                tb.add_scalar(f"loss/{k}", v, info.step)
            tb.add_scalar("lr", info.lr, info.step)
            tb.add_scalar("images_per_s", info.images_per_s, info.step)


def _write_log_line(jlog: JsonLog, info: StepInfo, elapsed: float) -> None:
    jlog.write(
        {
            "step": info.step,
            "epoch": round(info.epoch, 4),
            "lr": info.lr,
            "images_per_s": round(info.images_per_s, 3),
            "time": round(elapsed, 2),
            **{k: round(v, 6) for k, v in info.losses.items()},
        }
    )
