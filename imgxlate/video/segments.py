"""Resumable output: the translated video is written as segments in a hidden parts folder beside the
target (``.imgxlate-parts-<name>/``), each one complete (its encoder flushed, its file renamed into
place) before the manifest lists it. A rerun with the same input, model and settings continues after
the last listed segment; the final file joins the segments without re-encoding, and the folder is
removed once the target is in place.

The manifest carries a fingerprint of everything that changes the frames (input file size and
mtime, model file, codec options, temporal mode, cut); parts made with another fingerprint are
discarded, never joined. The temporal stabiliser's state after the last segment is saved beside it,
so the blend continues across the resume point as if the run had not stopped.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from imgxlate._atomic import atomic_path, write_bytes_atomic
from imgxlate.errors import VideoError

PARTS_PREFIX = ".imgxlate-parts-"
MANIFEST = "manifest.json"
_VERSION = 1


def parts_dir(dst: Path) -> Path:
    return dst.parent / f"{PARTS_PREFIX}{dst.name}"


def target_lock(dst: Path) -> contextlib.AbstractContextManager[None]:
    """Hold ``dst``'s lock while it is converted (:func:`imgxlate._lock.exclusive` on
    ``.imgxlate-parts-<name>.lock`` beside it): a second conversion to the same target is refused at
    once (:class:`VideoError`) instead of both deleting and rewriting each other's parts."""
    from imgxlate._lock import exclusive

    return exclusive(dst.parent / f"{PARTS_PREFIX}{dst.name}.lock", lambda: VideoError(
        f"another imgxlate is writing {dst} right now; wait for it to finish or choose another output"))


def file_identity(path: Path | str | None) -> dict[str, Any] | None:
    """What identifies a file's content cheaply: resolved path, size, mtime (ns)."""
    if path is None:
        return None
    p = Path(path)
    try:
        st = p.stat()
    except OSError:
        return {"path": str(p)}
    return {"path": str(p.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


class Parts:
    """The parts folder of one target. ``segments``: the complete segments, in order, as dicts
    ``{"file", "first", "frames"}``; ``frames``: how many frames they hold together."""

    def __init__(self, dst: Path, fingerprint: dict[str, Any]) -> None:
        self.dir = parts_dir(dst)
        self.fingerprint = json.loads(json.dumps(fingerprint, sort_keys=True, default=str))
        self.segments: list[dict[str, Any]] = []
        self.discarded = False

    @property
    def frames(self) -> int:
        return sum(int(s["frames"]) for s in self.segments)

    def load(self) -> int:
        """Read the manifest; keep its segments if they belong to this conversion and are all there.
        Returns the number of frames already done (0 when starting afresh)."""
        m = self.dir / MANIFEST
        if not self.dir.is_dir():
            return 0
        if not m.exists():  # killed before its first segment was done: nothing of it to keep or to discard
            self.remove()
            return 0
        try:
            data = json.loads(m.read_text(encoding="utf-8"))
            ok = data.get("version") == _VERSION and data.get("fingerprint") == self.fingerprint
            segs = list(data.get("segments", [])) if ok else []
            ok = ok and all((self.dir / s["file"]).is_file() for s in segs)
        except (OSError, ValueError, KeyError, TypeError):
            ok, segs = False, []
        if not ok:
            self.discarded = True
            self.remove()
            return 0
        self.segments = segs
        listed = {s["file"] for s in segs} | {MANIFEST, "state.npz"}
        for f in self.dir.iterdir():  # a segment that was being written when the process was killed
            if f.name not in listed:
                with contextlib.suppress(OSError):
                    f.unlink()
        return self.frames

    def new_segment_path(self) -> Path:
        self.dir.mkdir(parents=True, exist_ok=True)
        return self.dir / f"seg_{len(self.segments):06d}.seg"

    def commit(self, seg: Path, first: int, frames: int, state: dict[str, np.ndarray] | None) -> None:
        """Record a complete segment (already renamed into place) and the stabiliser state after it."""
        if state is not None:
            buf = io.BytesIO()
            np.savez(buf, **state)
            write_bytes_atomic(self.dir / "state.npz", buf.getvalue())
        elif (self.dir / "state.npz").exists():
            (self.dir / "state.npz").unlink()
        self.segments.append({"file": seg.name, "first": first, "frames": frames})
        data = {"version": _VERSION, "fingerprint": self.fingerprint, "segments": self.segments}
        write_bytes_atomic(self.dir / MANIFEST, json.dumps(data, indent=1).encode("utf-8"))

    def state(self) -> dict[str, np.ndarray] | None:
        p = self.dir / "state.npz"
        if not self.segments or not p.is_file():
            return None
        try:
            with np.load(p) as z:
                return {k: z[k] for k in z.files}
        except (OSError, ValueError):
            return None

    def paths(self) -> list[Path]:
        return [self.dir / s["file"] for s in self.segments]

    def remove(self) -> None:
        if self.dir.is_dir():
            shutil.rmtree(self.dir, ignore_errors=True)
        self.segments = []


@contextlib.contextmanager
def segment_file(path: Path):  # type: ignore[no-untyped-def]
    """A temp name for a segment being encoded, renamed to ``path`` when the block succeeds."""
    with atomic_path(path) as tmp:
        yield tmp
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
