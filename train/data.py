"""Unpaired image folders for CycleGAN training.

Data order is a pure function of (seed, epoch, position): the sampler yields global positions and the
dataset derives every random choice (which A, which B, crop, flip) from them. Resuming therefore needs
only the epoch and the position in it, and the result does not depend on the number of workers or on
which worker loads which item.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from imgxlate._units import counted
from imgxlate.errors import TrainingError, UsageError
from imgxlate.imaging.decode import read_rgb8

log = logging.getLogger("imgxlate.train")


class UnreadableImageWarning(UserWarning):
    """A training image could not be decoded and is skipped."""


def image_extensions() -> set[str]:
    """Every file suffix Pillow can open here (lower case, with the dot)."""
    Image.init()
    return {ext.lower() for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN}


def find_images(folder: str | os.PathLike[str], role: str = "") -> list[Path]:
    """Image files under ``folder`` (recursive, sorted; hidden files and folders, and the NAS and system
    folders ``imgxlate convert`` leaves out (:data:`imgxlate.inputs.SYSTEM_FOLDERS`: Synology's
    ``@eaDir`` thumbnails, recycle bins, ``__MACOSX``), skipped). Links to folders are followed, each
    folder once (a link back up the tree does not loop).

    Raises TrainingError naming the folder when it is missing, not a folder, or holds no image file.
    """
    label = f"{role} folder" if role else "folder"
    root = Path(folder).expanduser()
    if not str(folder):
        raise UsageError(f"no {label} given; pass a folder of training images")
    if not root.exists():
        raise UsageError(f"{label} {str(root)!r} does not exist; check the path")
    if not root.is_dir():
        raise UsageError(f"{label} {str(root)!r} is not a folder; pass a folder of training images")
    from imgxlate.inputs import SYSTEM_FOLDERS

    exts = image_extensions()
    files = []
    walked: set[tuple[int, int]] = set()  # (device, inode) of every folder walked
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        try:
            st = os.stat(dirpath)
        except OSError:
            continue
        if (st.st_dev, st.st_ino) in walked:  # reached again through a link: once is enough
            dirnames[:] = []
            continue
        walked.add((st.st_dev, st.st_ino))
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d.casefold() not in SYSTEM_FOLDERS)
        for name in filenames:
            if not name.startswith(".") and Path(name).suffix.lower() in exts:
                files.append(Path(dirpath) / name)
    files.sort()
    if not files:
        # the suffixes people have first (the sorted list began .apng, .avif, .blp, .bmp, .bufr, ...)
        common = [e for e in (".jpg", ".jpeg", ".png", ".webp", ".heic", ".tif", ".tiff", ".bmp") if e in exts]
        raise UsageError(  # as convert's "no images found": exit 2
            f"{label} {str(root)!r} has no image files (looked for {', '.join(common)} and "
            f"{len(exts) - len(common)} more kinds, in sub-folders too; hidden files are left out)"
        )
    return files


def load_rgb(path: str | os.PathLike[str], shorter_at_least: int = 0) -> Image.Image:
    """Decode ``path`` into an 8-bit sRGB "RGB" image, upright, alpha composited on white.

    The pixels are imgxlate's own decoder's (:func:`imgxlate.imaging.decode.read_rgb8`: the ICC,
    CMYK, orientation, 16-bit and size-limit policy of inference). ``shorter_at_least``: the size the
    image is about to be scaled down to; a large JPEG is then decoded at a fraction of its size (in the
    DCT, several times faster) as long as its shorter side stays that long. Raises ImageReadError for a
    file it cannot decode.
    """
    return Image.fromarray(read_rgb8(path, shorter_at_least=shorter_at_least), "RGB")


def to_tensor(img: Image.Image) -> torch.Tensor:
    """8-bit RGB PIL image -> float32 (3, H, W) in [-1, 1]."""
    arr = np.asarray(img, dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))


def resize_shorter(img: Image.Image, size: int) -> Image.Image:
    """Resize so the shorter side is ``size`` (bicubic, as the reference), keeping the aspect ratio."""
    w, h = img.size
    if min(w, h) == size:
        return img
    scale = size / min(w, h)
    new = (max(size, round(w * scale)), max(size, round(h * scale)))
    return img.resize(new, Image.Resampling.BICUBIC)


def center_tensor(path: str | os.PathLike[str], height: int, width: int) -> torch.Tensor:
    """A real image as a (1, 3, height, width) tensor: shorter side resized to cover, centre crop."""
    img = resize_shorter(load_rgb(path), max(height, width))
    w, h = img.size
    left, top = (w - width) // 2, (h - height) // 2
    return to_tensor(img.crop((left, top, left + width, top + height))).unsqueeze(0)


def _header_ok(path: Path) -> bool:
    try:
        with Image.open(path) as img:
            img.size  # noqa: B018 - reading the header is the check
        return True
    except Exception:  # noqa: BLE001 - Pillow raises many types for bad files
        return False


class UnpairedDataset(torch.utils.data.Dataset):
    """Items are addressed by ``(epoch, position)``; returns ``{"A": (3,S,S), "B": (3,S,S)}``.

    A is ``perm[position] % len(A)`` with ``perm`` a seeded permutation of the epoch (so every A image
    is seen once per epoch when A is the larger domain); B is drawn independently and uniformly, as in
    the reference unaligned dataset. Files that fail to decode are skipped with one warning each and
    replaced by the next file of the same domain.
    """

    def __init__(
        self,
        files_a: list[Path],
        files_b: list[Path],
        load_size: int,
        image_size: int,
        flip: bool = True,
        seed: int = 0,
    ) -> None:
        self.files = {"A": list(files_a), "B": list(files_b)}
        self.load_size = max(int(load_size), int(image_size))  # smaller images are upscaled
        self.image_size = int(image_size)
        self.flip = flip
        self.seed = int(seed)
        self.bad: set[Path] = set()
        self._perm_cache: dict[int, np.ndarray] = {}

    @property
    def epoch_size(self) -> int:
        return max(len(self.files["A"]), len(self.files["B"]))

    def permutation(self, epoch: int) -> np.ndarray:
        if epoch not in self._perm_cache:
            self._perm_cache = {
                epoch: np.random.default_rng([self.seed, epoch, 0]).permutation(self.epoch_size)
            }
        return self._perm_cache[epoch]

    def __len__(self) -> int:
        return self.epoch_size

    def _load(self, domain: str, index: int) -> Image.Image:
        files = self.files[domain]
        for k in range(len(files)):
            path = files[(index + k) % len(files)]
            if path in self.bad:
                continue
            try:
                return load_rgb(path, self.load_size)
            except Exception as exc:  # noqa: BLE001 - any decode failure skips the file
                self.bad.add(path)
                warnings.warn(
                    f"skipping unreadable training image {path} ({type(exc).__name__}: {exc})",
                    UnreadableImageWarning,
                    stacklevel=2,
                )
        folder = os.path.commonpath([os.fspath(f) for f in files]) if files else "?"
        raise TrainingError(
            f"none of the {counted(len(files), 'image')} of domain {domain} (in {folder}) can be decoded: they "
            "are truncated or corrupt; copy them again, or give another folder"
        )

    def check_readable(self) -> None:
        """Raise the TrainingError of a domain none of whose images decode (as :meth:`_load` would).
        A data loader's worker raises it too, but it reaches the training process as a new error whose
        message is the worker's whole traceback; this gives the plain one."""
        for domain in self.files:
            self._load(domain, 0)

    def _augment(self, img: Image.Image, rng: np.random.Generator) -> torch.Tensor:
        img = resize_shorter(img, self.load_size)
        w, h = img.size
        s = self.image_size
        left = int(rng.integers(0, w - s + 1))
        top = int(rng.integers(0, h - s + 1))
        img = img.crop((left, top, left + s, top + s))
        if self.flip and rng.random() < 0.5:
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return to_tensor(img)

    def __getitem__(self, key: tuple[int, int] | int) -> dict[str, torch.Tensor]:
        epoch, position = key if isinstance(key, tuple) else (0, int(key))
        n_a, n_b = len(self.files["A"]), len(self.files["B"])
        slot = int(self.permutation(epoch)[position % self.epoch_size])
        rng = np.random.default_rng([self.seed, epoch, 1, position])
        index_a = slot % n_a
        index_b = int(rng.integers(0, n_b))
        a = self._augment(self._load("A", index_a), rng)
        b = self._augment(self._load("B", index_b), rng)
        return {"A": a, "B": b}


class EpochSampler(torch.utils.data.Sampler):
    """Yields ``(epoch, position)`` keys for this rank from ``start`` (a global step) onwards, forever.

    Each epoch has ``steps_per_epoch`` steps; step ``t`` of an epoch uses global positions
    ``(t * world + rank) * batch + j`` for j < batch, so ranks see disjoint samples.
    """

    def __init__(
        self, steps_per_epoch: int, batch_size: int, start_step: int = 0, rank: int = 0, world_size: int = 1
    ) -> None:
        self.steps_per_epoch = steps_per_epoch
        self.batch_size = batch_size
        self.start_step = start_step
        self.rank = rank
        self.world_size = world_size

    def __iter__(self) -> Iterator[tuple[int, int]]:
        step = self.start_step
        while True:
            epoch, t = divmod(step, self.steps_per_epoch)
            base = (t * self.world_size + self.rank) * self.batch_size
            for j in range(self.batch_size):
                yield (epoch, base + j)
            step += 1


def steps_per_epoch(n_a: int, n_b: int, batch_size: int, world_size: int = 1) -> int:
    """max(len A, len B) / (batch * world), at least 1 (the reference epoch, split over ranks)."""
    return max(1, max(n_a, n_b) // (batch_size * world_size))


def fingerprint(files: list[Path], folder: str) -> dict[str, Any]:
    """Which images a domain holds, by name: their count and the sha256 of their sorted paths below
    ``folder`` (the same images in a moved folder give the same fingerprint)."""
    import hashlib

    root = Path(folder).expanduser().resolve()
    names = sorted(Path(os.path.relpath(Path(f).resolve(), root)).as_posix() for f in files)
    return {"count": len(names), "sha256": hashlib.sha256("\n".join(names).encode("utf-8", "surrogateescape")).hexdigest()}


def scan_folder(folder: str, role: str) -> list[Path]:
    """``find_images`` minus files whose header Pillow cannot read (one warning each)."""
    files = find_images(folder, role)
    good = []
    for path in files:
        if _header_ok(path):
            good.append(path)
        else:
            warnings.warn(f"skipping unreadable training image {path}", UnreadableImageWarning, stacklevel=2)
    if not good:
        raise TrainingError(
            f"{role} folder {folder!r} has {len(files)} image file(s) but none can be read; "
            "check that they are not corrupt or truncated"
        )
    return good


def make_loader(
    dataset: UnpairedDataset,
    batch_size: int,
    start_step: int,
    steps_per_epoch_: int,
    workers: int,
    pin_memory: bool,
    rank: int = 0,
    world_size: int = 1,
) -> torch.utils.data.DataLoader:
    from imgxlate.engine import usable_cpus

    # More loading processes than CPUs only take turns (and PyTorch warns about each loader: the
    # default 4 on a 2-core laptop); the samples do not depend on how many there are.
    workers = min(workers, usable_cpus())
    sampler = EpochSampler(steps_per_epoch_, batch_size, start_step, rank, world_size)
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        pin_memory=pin_memory,
        drop_last=True,
        persistent_workers=False,
        prefetch_factor=2 if workers > 0 else None,
        worker_init_fn=_leave_stop_signals_to_the_trainer,
    )


class LoaderDied(TrainingError):
    """A data-loading process died (its exit ``code``: -N for signal N). A single-process run saves the
    steps done and says so in its own words (``train.loop``); a distributed rank raises this as it is."""

    def __init__(self, code: int) -> None:
        super().__init__(f"a data-loading process {how_it_ended(code)}; if the system ended it for lack of "
                         "memory, use fewer --workers")
        self.code = code


class Batches:
    """The batches of a DataLoader (iterate it), and what became of its loading processes: ``died`` is
    the exit code of one that died (-N: killed by signal N, as ``multiprocessing`` gives it; None: none
    did), set when :func:`batches_of` ends."""

    def __init__(self, loader: torch.utils.data.DataLoader) -> None:
        import multiprocessing

        before = set(multiprocessing.active_children())
        self._it = iter(loader)  # starts the loading processes
        self.workers = [p for p in multiprocessing.active_children() if p not in before]
        self.died: int | None = None

    def __iter__(self) -> Batches:
        return self

    def __next__(self) -> Any:
        try:
            return next(self._it)
        except StopIteration:
            raise
        except Exception:
            # A worker killed while it hands over a batch resets its socket (a ConnectionResetError
            # here) a moment before its exit can be seen: the error is given that moment to show it.
            if self.workers:
                self.died = self.death(within=1.0)
            raise

    def death(self, within: float = 0.0) -> int | None:
        """The exit code of a loading process that died (None: every one is running, or ended as told),
        waiting up to ``within`` seconds for one to be seen ending."""
        import time

        deadline = time.monotonic() + within
        while True:
            for proc in self.workers:
                code = proc.exitcode  # polls the process (waitpid without waiting)
                if code:
                    return code
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.02)

    def check(self) -> None:
        """Raise :class:`LoaderDied` when a loading process has died; the trainer asks between steps."""
        code = self.death()
        if code is not None:
            raise LoaderDied(code)


@contextlib.contextmanager
def batches_of(loader: torch.utils.data.DataLoader) -> Iterator[Batches]:
    """Iterate ``loader``; on leaving the block its loading processes are gone, and ``died`` says how one
    that died ended.

    PyTorch raises a dead worker's RuntimeError ("DataLoader worker (pid ...) is killed by signal:
    Killed.") from its SIGCHLD handler, wherever the trainer is: almost always inside a step, between
    two optimizer updates (nothing safe to save), or inside a log line, whose handler swallowed it. The
    out-of-memory killer's usual victim is a loading process, so for the block SIGCHLD does nothing (the
    main thread only: handlers are set there) and the trainer asks :meth:`Batches.check` between steps;
    a batch asked of a dead worker still fails, PyTorch noticing within seconds.

    PyTorch's iterator stops its workers when it is garbage-collected, but an error or a stop leaving
    the block keeps it alive in the traceback, and the workers ignore SIGTERM (see
    :func:`_leave_stop_signals_to_the_trainer`): an exiting Python waited for them forever. So they are
    stopped here, by the method the iterator's ``__del__`` calls, and one still there is killed."""
    import signal
    import threading

    batches = Batches(loader)
    held = (bool(batches.workers) and hasattr(signal, "SIGCHLD")  # not on Windows
            and threading.current_thread() is threading.main_thread())
    previous = signal.signal(signal.SIGCHLD, signal.SIG_DFL) if held else None
    try:
        yield batches
    finally:
        if held:
            signal.signal(signal.SIGCHLD, previous)
        if loader.num_workers > 0:
            batches.died = batches.died or batches.death()  # before the shutdown: the others then end as told
            batches._it._shutdown_workers()  # joins each worker (they exit when told), stops watching them
            for proc in batches.workers:
                if proc.is_alive():
                    proc.kill()
                    proc.join(timeout=5)


def how_it_ended(code: int) -> str:
    """A process's exit code as words: -9 -> "killed by SIGKILL", 1 -> "exited with code 1"."""
    import signal

    if code >= 0:
        return f"exited with code {code}"
    try:
        return f"killed by {signal.Signals(-code).name}"
    except ValueError:
        return f"killed by signal {-code}"


def _leave_stop_signals_to_the_trainer(worker_id: int) -> None:
    """In each loading process: ignore SIGINT and SIGTERM. ``timeout``, Slurm, systemd and a terminal's
    Ctrl-C signal the whole process group: PyTorch's workers died of the SIGTERM, and the trainer failed
    with "DataLoader worker (pid ...) is killed by signal: Terminated" before it could save the step it
    was on (exit 1, no checkpoint). The trainer alone decides: it finishes the step, saves, and shuts its
    workers down; a worker whose trainer is gone exits on its own (PyTorch watches the parent)."""
    import signal

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
