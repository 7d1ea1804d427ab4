"""Where the exact tiler keeps whole maps between passes: :class:`MapStore`.

float32 in RAM (exact), float16 in RAM (half the memory) or float16 spilled to an unlinked temporary
file (``spill_dir``): its pages are handed back to the kernel after every row of tiles
(:meth:`MapStore.release`), so they do not count in the process's resident memory.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import tempfile

import numpy as np

from imgxlate.tiling.exact.graph import Region

_MADV_HUGEPAGE = getattr(mmap, "MADV_HUGEPAGE", None)


class MapStore:
    """Stored maps: ``dtype`` float32 or float16; ``spill_dir`` puts them in files instead of RAM.

    In RAM, a dropped map's buffer is kept for the next map of the same byte size (the residual
    blocks' maps all are): first writes to fresh pages cost a page fault per 4 KiB, which measured
    3.6 s of a 12 MP run's 22 s. A create that finds no buffer of its size frees the kept ones
    first, so the peak is never above what fresh buffers would reach."""

    def __init__(self, dtype: str = "float32", spill_dir: str | os.PathLike[str] | None = None) -> None:
        if dtype not in ("float32", "float16"):
            raise ValueError(f"store dtype must be float32 or float16, got {dtype!r}")
        self.dtype = np.dtype(dtype)
        self.spill_dir = spill_dir
        self.maps: dict[str, np.ndarray] = {}
        self._mmaps: dict[str, mmap.mmap] = {}
        self._free: list[np.ndarray] = []  # dropped RAM buffers (flat), kept for reuse

    @classmethod
    def for_choice(cls, kind: str) -> MapStore:
        """The store for a :class:`imgxlate.tiling.auto.TilingChoice` ``store``: "float32",
        "float16" or "spill" (float16 in an unlinked file in the temporary folder: half the disk
        traffic of float32, and the same precision as the float16 RAM store)."""
        if kind == "spill":
            return cls("float16", spill_dir=tempfile.gettempdir())
        return cls(kind)

    def create(self, name: str, shape: tuple[int, ...]) -> None:
        if self.spill_dir is None:
            count = int(np.prod(shape))
            buf = next((b for b in self._free if b.size == count), None)
            if buf is None:
                self._free.clear()
                buf = np.empty(count, self.dtype)
            else:
                self._free.remove(buf)
            self.maps[name] = buf.reshape(shape)
            return
        size = int(np.prod(shape)) * self.dtype.itemsize
        with tempfile.TemporaryFile(dir=self.spill_dir, prefix="imgxlate-map-") as f:
            f.truncate(size)
            mm = mmap.mmap(f.fileno(), size)  # the mapping keeps the (unlinked) file alive
        if _MADV_HUGEPAGE is not None:
            # Large page-cache folios where the file system has them (ext4, xfs on Linux >= 6.x): a
            # fault maps up to 2 MiB instead of 4 KiB. Every tile write and read of a spilled map
            # faults its pages in again after release(): at 96 MP that was 7.6 M faults and 65 s of
            # system time. A kernel without them ignores the advice or refuses it (harmless).
            with contextlib.suppress(OSError):
                mm.madvise(_MADV_HUGEPAGE)
        self._mmaps[name] = mm
        # Stored (N, H, C, W) and seen as (N, C, H, W): the rows of a row of tiles are one contiguous
        # band of the file for all channels, so a tile touches (and faults in) only its band's pages
        # and release() after the row gives back whole pages; (N, C, H, W) spreads a row of tiles over
        # C separate stretches, one per channel plane.
        n, c, h, w = shape
        self.maps[name] = np.frombuffer(mm, dtype=self.dtype).reshape(n, h, c, w).transpose(0, 2, 1, 3)

    def read(self, name: str, region: Region) -> np.ndarray:
        y0, y1, x0, x1 = region
        return self.maps[name][:, :, y0:y1, x0:x1]

    def write(self, name: str, region: Region, value: np.ndarray) -> None:
        y0, y1, x0, x1 = region
        self.maps[name][:, :, y0:y1, x0:x1] = value

    def release(self) -> None:
        """Hand spilled pages back to the kernel (they stay in the file / page cache)."""
        for mm in self._mmaps.values():
            mm.madvise(mmap.MADV_DONTNEED)

    def drop(self, name: str) -> None:
        arr = self.maps.pop(name, None)
        mm = self._mmaps.pop(name, None)
        if mm is not None:
            del arr  # the mapping cannot close while a view of it exists
            mm.close()
        elif arr is not None:
            self._free.append(arr.reshape(-1))

    def close(self) -> None:
        for name in list(self.maps):
            self.drop(name)
        self._free.clear()
