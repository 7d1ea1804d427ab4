"""What a run reports while it trains: step records, log.jsonl, TensorBoard, sample grids, and the
plain progress line used when stderr is not a terminal (nohup, CI logs, ``| tee``)."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from imgxlate._atomic import atomic_path

log = logging.getLogger("imgxlate.train")


@dataclass
class StepInfo:
    step: int  # steps done
    total: int
    start: int  # step the run (or resume) started at
    epoch: float
    lr: float
    images_per_s: float
    losses: dict[str, float] = field(default_factory=dict)
    eta_s: float | None = None  # seconds left at the current speed
    logged: bool = False  # a --log-every step (the ones written to log.jsonl)


def format_duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "?"
    seconds = round(seconds)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def format_losses(losses: dict[str, float]) -> str:
    return " ".join(f"{k} {v:.3f}" for k, v in losses.items())


def progress_line(info: StepInfo) -> str:
    """``step 150/3036 (ep 0.15)  1.84 img/s  ETA 26:08  G_ab 0.412 ...``: one line, no colours."""
    width = len(str(info.total))
    return (
        f"step {info.step:>{width}}/{info.total} (ep {info.epoch:.2f})  {info.images_per_s:.2f} img/s  "
        f"ETA {format_duration(info.eta_s)}  {format_losses(info.losses)}"
    )


def _to_uint8(t: torch.Tensor) -> np.ndarray:
    """(3, H, W) in [-1, 1] -> (H, W, 3) uint8."""
    arr = ((t.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().byte()
    return arr.permute(1, 2, 0).numpy()


def save_sample_grid(path: Path, rows: list[list[torch.Tensor]]) -> None:
    """Rows of (3, H, W) tensors in [-1, 1] side by side -> one PNG (atomic, fsynced)."""
    from PIL import Image

    grid = np.concatenate([np.concatenate([_to_uint8(t) for t in row], axis=1) for row in rows], axis=0)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        Image.fromarray(grid).save(fh, format="PNG")
        fh.flush()
        os.fsync(fh.fileno())


class JsonLog:
    """RUN/log.jsonl: one JSON object per logged step; lines after ``resume_step`` (the checkpoint's
    step, or 0 for a new run) go: they are a run's that stopped before saving them."""

    def __init__(self, path: Path, resume_step: int) -> None:
        self.path = path
        if path.is_file():
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


def tensorboard_writer(out: Path) -> Any:
    """A SummaryWriter for RUN/tensorboard, or None (with one message saying why) without tensorboard."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except Exception as exc:  # noqa: BLE001 - tensorboard is optional; a broken install must not stop training
        missing = isinstance(exc, ImportError)
        log.warning(
            "TensorBoard %s: losses go to %s only (pip install tensorboard to get RUN/tensorboard)",
            "is not installed" if missing else f"cannot be loaded ({type(exc).__name__}: {exc})",
            out / "log.jsonl",
        )
        return None
    return SummaryWriter(str(out / "tensorboard"))
