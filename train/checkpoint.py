"""Checkpoints: one ``.pt`` file holds everything an exact resume needs.

The file is a dict loadable with ``torch.load(weights_only=True)``: the config, the step, every
network, optimizer, scheduler and scaler state, the pools and patch-sampling generators (per rank
under DDP), and the Python/NumPy/torch RNG states. The data order needs no state of its own: it is a
pure function of (seed, epoch, position). Writes go through ``imgxlate._atomic`` (temp file beside
the target, flushed and fsynced, then renamed): a kill or a full disk leaves the previous checkpoint.
"""

from __future__ import annotations

import contextlib
import errno
import os
import random
import shutil
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from imgxlate._atomic import atomic_path
from imgxlate.errors import TrainingError, UsageError, brief

CHECKPOINT_FORMAT = "imgxlate-cyclegan"  # the name of the format since version 1, kept for every method
# 1: CycleGAN. 2: any method (config.method; CUT/FastCUT networks G_ab/F_ab/D_b...). Version-1 files
# are still read; CycleGAN runs keep writing version 1 so older imgxlate can resume them.
CHECKPOINT_VERSION = 2


def rng_state() -> dict[str, Any]:
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


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        with contextlib.suppress(Exception):
            torch.cuda.set_rng_state_all(state["cuda"])


class Optimised(Protocol):
    """What every trainer (CycleGAN, CUT) has: its networks, two optimisers, two schedulers, a scaler."""

    nets: dict[str, torch.nn.Module]
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    sched_g: Any
    sched_d: Any
    scaler: Any


def optimisation_state(trainer: Optimised) -> dict[str, Any]:
    """The checkpoint entries every trainer shares: weights (on the CPU), optimisers, schedulers, scaler."""
    return {
        "models": {k: {n: t.detach().cpu() for n, t in v.state_dict().items()} for k, v in trainer.nets.items()},
        "optimizers": {"G": trainer.opt_g.state_dict(), "D": trainer.opt_d.state_dict()},
        "schedulers": {"G": trainer.sched_g.state_dict(), "D": trainer.sched_d.state_dict()},
        "scaler": trainer.scaler.state_dict(),
    }


def load_optimisation_state(trainer: Optimised, state: dict[str, Any]) -> None:
    """Restore what :func:`optimisation_state` saved (a checkpoint without a scaler keeps the fresh one)."""
    for k, net in trainer.nets.items():
        net.load_state_dict(state["models"][k])
    trainer.opt_g.load_state_dict(state["optimizers"]["G"])
    trainer.opt_d.load_state_dict(state["optimizers"]["D"])
    trainer.sched_g.load_state_dict(state["schedulers"]["G"])
    trainer.sched_d.load_state_dict(state["schedulers"]["D"])
    if state.get("scaler"):
        trainer.scaler.load_state_dict(state["scaler"])


def resolve_checkpoint(path: str | os.PathLike[str]) -> Path:
    """A checkpoint file, or a run folder (-> RUN/checkpoints/last.pt)."""
    p = Path(path).expanduser()
    if p.is_dir():
        for candidate in (p / "checkpoints" / "last.pt", p / "last.pt"):
            if candidate.is_file():
                return candidate
        raise UsageError(f"{str(p)!r} has no checkpoints/last.pt; pass a checkpoint file or a run folder")
    if not p.is_file():
        raise UsageError(f"checkpoint {str(p)!r} does not exist; pass a .pt file or a run folder")
    return p


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    path = resolve_checkpoint(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        import pickle

        # Not PyTorch's paragraph for a file that does not unpickle: it advises loading it with
        # weights_only=False, which runs any code the file holds.
        why = ("not a file of tensors that loads safely" if isinstance(exc, pickle.UnpicklingError)
               else brief(exc, 160))
        raise TrainingError(
            f"cannot read checkpoint {path} ({why}); it is damaged or not an imgxlate-train checkpoint: "
            "give a run folder or its checkpoints/last.pt"
        ) from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise TrainingError(f"{path} is not an imgxlate-train checkpoint")
    if int(ckpt.get("format_version", 0)) > CHECKPOINT_VERSION:
        raise TrainingError(f"{path} was written by a newer imgxlate; upgrade imgxlate to resume it")
    ckpt["path"] = str(path)
    return ckpt


def how_to_go_on(out: Path) -> str:
    """The command that continues the run in ``out`` after a stop: ``--resume`` (under ``torchrun``
    with as many processes, for a distributed run) when it has a checkpoint, else the same command again
    (a run stopped before its first checkpoint starts afresh there)."""
    if not (out / "checkpoints" / "last.pt").is_file():
        return "run the same command again (no checkpoint was saved yet, so it starts afresh)"
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world > 1:
        local = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)) or world)
        nodes = f"--nnodes {world // local} ... " if local < world else ""  # ...: the run's rendezvous options
        return f"torchrun {nodes}--nproc-per-node {local} -m imgxlate.train --resume {out}"
    return f"imgxlate-train --resume {out}"


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically: serialised to a temp file beside it, flushed, fsynced,
    read back and checked, then renamed. A kill, Ctrl-C or full disk leaves the previous file.

    Raises TrainingError ("disk full" when it is) instead of leaving a short file behind.
    """
    sink: _WriteErrors | None = None
    had = path.is_file()
    try:
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                sink = _WriteErrors(fh)
                torch.save(state, sink)
                fh.flush()
                os.fsync(fh.fileno())
            # read back what is on disk: a short or corrupt write fails here, before the rename
            check = torch.load(tmp, map_location="cpu", weights_only=True)
            if check.get("step") != state.get("step"):
                raise TrainingError(f"checkpoint {path} did not read back as written")
    except (OSError, RuntimeError) as exc:  # torch.save reports a failed write as a RuntimeError
        cause = sink.error if sink is not None and sink.error is not None else exc
        kept = "the previous checkpoint is unchanged" if had else "no checkpoint is saved"
        raise TrainingError(
            f"cannot write checkpoint {path} ({write_failure(cause, path.parent)}); {kept}. Free space, then "
            f"{how_to_go_on(path.parent.parent)}"
        ) from exc


class _WriteErrors:
    """A file object that keeps the OSError of a failed ``write``: torch.save turns it into a
    RuntimeError without its errno ("unexpected pos ..."), and the errno says "disk full"."""

    def __init__(self, fh: Any) -> None:
        self._fh = fh
        self.error: OSError | None = None

    def write(self, data: Any) -> int:
        try:
            return self._fh.write(data)
        except OSError as exc:
            self.error = self.error or exc
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fh, name)


def write_failure(exc: BaseException, folder: Path) -> str:
    """Why a write failed, in words: "disk full" when it was (torch and zipfile do not always keep
    the errno), else the error itself."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "disk full"
    with contextlib.suppress(OSError):
        if shutil.disk_usage(folder).free < 1 << 20:
            return "disk full"
    return f"{type(exc).__name__}: {exc}"


def is_model_folder(path: str | os.PathLike[str]) -> bool:
    """An exported pair (``a2b.onnx`` and ``b2a.onnx``, as ``imgxlate-train`` writes them), not a run."""
    p = Path(path)
    return p.is_dir() and (p / "a2b.onnx").is_file() and (p / "b2a.onnx").is_file() and not (p / "checkpoints").is_dir()


def generators_from_onnx(folder: str | os.PathLike[str]) -> tuple[dict[str, dict[str, torch.Tensor]], dict[str, Any], Any]:
    """The generator weights of an exported pair, read back from its ONNX files: ``({"G_ab": state,
    "G_ba": state}, generator_config, metadata of a2b.onnx)``. The exporter names each initializer
    by its parameter path (``model.1.weight``), so every parameter is found by name and shape; a file
    that is not an imgxlate-train ResNet export is a TrainingError naming what is missing."""
    import onnx
    from onnx import numpy_helper

    from imgxlate.metadata import read_onnx_metadata
    from imgxlate.train.networks import build_generator

    keys = ("ngf", "n_blocks", "upsample", "down_padding")
    models: dict[str, dict[str, torch.Tensor]] = {}
    config: dict[str, Any] = {}
    first = None
    for direction, name in (("a2b", "G_ab"), ("b2a", "G_ba")):
        path = Path(folder) / f"{direction}.onnx"
        meta = read_onnx_metadata(str(path))
        arch = dict(meta.architecture) if meta is not None else {}
        if arch.get("generator", "resnet") != "resnet" or not all(k in arch for k in keys):
            raise TrainingError(
                f"{path} carries no imgxlate-train ResNet architecture in its metadata; --init-from takes a "
                "run folder, a checkpoint, or a pair exported by imgxlate-train"
            )
        config = {k: arch[k] for k in keys}
        first = first or meta
        params = {i.name: i for i in onnx.load(str(path)).graph.initializer}
        state = build_generator(config).state_dict()
        for key, value in state.items():
            if key not in params or tuple(params[key].dims) != tuple(value.shape):
                raise TrainingError(f"{path} has no parameter {key} of shape {tuple(value.shape)}; it was not "
                                    "exported by imgxlate-train from this architecture")
            state[key] = torch.from_numpy(numpy_helper.to_array(params[key]).copy())
        models[name] = state
    return models, config, first
