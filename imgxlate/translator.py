"""The Python API: load a model (:func:`load_model`) and translate arrays and PIL images
(:class:`Translator`).

    >>> import imgxlate
    >>> t = imgxlate.load_model(to="vangogh")          # default pair, the generator that makes vangogh
    >>> out = t.translate(PIL.Image.open("photo.jpg"))  # PIL in -> PIL out, same mode, upright

Model tensors are float32 NCHW RGB in ``metadata.input_range`` (normally [-1, 1]); H and W must be
multiples of ``metadata.size_multiple`` and at least two multiples (the residual blocks reflect-pad
by 1 at H/4, which needs 2 pixels there). Images of any size are padded at the bottom/right and cropped
back, exactly as the tilers do, so tiled and whole-image results agree.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from imgxlate.engine import CPU, Engine, usable_cpus
from imgxlate.errors import InvalidModelError, UsageError
from imgxlate.imaging.color import unit_float
from imgxlate.imaging.ranges import (
    from_model,
    from_model_as,
    model_to_uint8,
    pixel_affine,
    to_model,
    uint8_to_model,
)
from imgxlate.metadata import ModelMetadata
from imgxlate.notes import Note
from imgxlate.options import TILINGS
from imgxlate.registry import ModelPair, Resolved, probe_generator, resolve_model
from imgxlate.tiling.pad import pad_bottom_right, round_up

if TYPE_CHECKING:
    from imgxlate.imaging.decode import DecodedImage


class Translator:
    """One loaded generator: array / PIL / batch translation with padding, cropping and tiling."""

    def __init__(self, resolved: Resolved, engine: Engine, notes: Sequence[Note] = ()) -> None:
        self.resolved = resolved
        self.pair: ModelPair = resolved.pair
        self.metadata: ModelMetadata = resolved.file.metadata
        self.model_path: Path = resolved.file.path
        self.engine = engine
        self.provider: str = engine.provider  # the device rule's provider (tiling decisions)
        self.runtime: str = engine.runtime  # what computes, for reports (OpenVINO says so)
        self.notes: list[Note] = list(notes)  # from resolving the model, then from runs (fallbacks)
        self._exact: Any = None  # ExactTiler, created on first tiled run (one for all threads)
        self._exact_failed = False
        self._exact_lock = threading.Lock()
        # Memory budget for automatic tiling in bytes (--max-memory; None: from the memory available).
        self.max_memory: int | None = None
        # Called as progress(done, total) after every tile of a tiled image (the CLI shows it).
        self.tile_progress: Callable[[int, int], None] | None = None
        # Called as progress(done, total) after every frame of an animation (translate_decoded).
        self.frame_progress: Callable[[int, int], None] | None = None

    # ----------------------------------------------------------------------------- value ranges
    @property
    def multiple(self) -> int:
        return max(1, int(self.metadata.size_multiple))

    @property
    def warnings(self) -> list[str]:
        """The texts of :attr:`notes` (kept for callers of earlier versions)."""
        return [n.text for n in self.notes]

    def describe(self) -> str:
        return f"{self.pair.name}: {self.metadata.source} -> {self.metadata.target} ({self.model_path})"

    def _to_model(self, rgb: np.ndarray) -> np.ndarray:
        """(..., H, W, 3) uint8 or float in [0, 1] -> (..., 3, H, W) in the model's input range."""
        return to_model(rgb, self.metadata.input_range)

    def _from_model(self, y: np.ndarray) -> np.ndarray:
        """(..., 3, H, W) in the model's output range -> (..., H, W, 3) in [0, 1], clipped."""
        return from_model(y, self.metadata.output_range)

    # ----------------------------------------------------------------------------- running
    def _run_whole(self, x: np.ndarray) -> np.ndarray:
        """(N, 3, H, W) any H, W -> (N, 3, H, W): pad to the size rule, one engine run, crop."""
        n, _, h, w = x.shape
        fixed_batch = self.engine.fixed_batch
        if fixed_batch is not None and n != fixed_batch:
            if fixed_batch != 1:
                raise InvalidModelError(
                    f"{self.model_path} only accepts batches of {fixed_batch}; re-export it with a dynamic batch"
                )
            return np.concatenate([self._run_whole(x[i : i + 1]) for i in range(n)])
        if self.engine.fixed_size is not None:
            return self._run_resized(x, self.engine.fixed_size)
        m = self.multiple
        # At least two multiples: the residual blocks reflect-pad by 1 at H/4, which needs 2 pixels there.
        ph, pw = max(round_up(h, m), 2 * m), max(round_up(w, m), 2 * m)
        y = self.engine.run(pad_bottom_right(x, ph, pw))
        return y[:, :, :h, :w]

    def _run_resized(self, x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        """A model exported with a fixed input size (no dynamic axes): resize each image to that size,
        run, resize the result back. Detail is lost; the user is told once."""
        import cv2

        fh, fw = size
        n, _, h, w = x.shape
        if (h, w) == (fh, fw):
            return self.engine.run(x)
        self._warn(
            f"{self.model_path.name} only accepts {fw}x{fh} inputs: images are resized to that and back "
            "(fine detail is lost); re-export the model with dynamic height and width"
        )
        down = cv2.INTER_AREA if fh * fw < h * w else cv2.INTER_CUBIC
        small = np.stack([cv2.resize(np.ascontiguousarray(img.transpose(1, 2, 0)), (fw, fh), interpolation=down)
                          for img in x]).transpose(0, 3, 1, 2)
        y = self.engine.run(np.ascontiguousarray(small, dtype=np.float32))
        up = cv2.INTER_CUBIC if fh * fw < h * w else cv2.INTER_AREA
        back = np.stack([cv2.resize(np.ascontiguousarray(img.transpose(1, 2, 0)), (w, h), interpolation=up)
                         for img in y])
        return np.ascontiguousarray(back.reshape(n, h, w, -1).transpose(0, 3, 1, 2))

    @property
    def default_batch_size(self) -> int:
        """Images or video frames per model run when none is asked for (``--batch-size``): 4 on CUDA,
        where frames of one size keep the GPU busy; 1 on the CPU, where a batch is slower per image
        (bundled model, 2 threads: 256 px, 70 ms one at a time against 77 and 83-86 ms per image in
        batches of 2 and 4; 72 frames of a 640x480 video, 28.0-29.1 s against 30.1-30.6 s)."""
        return 4 if self.engine.on_cuda else 1

    def tiling_choice(self, height: int, width: int, count: int = 1) -> Any:
        """Whole image or exact tiles, and where the tiler keeps its maps, from the memory it needs
        (:func:`imgxlate.tiling.auto.choose_tiling`); ``count`` images of this size run together."""
        from imgxlate.tiling.auto import choose_tiling, whole_maps_for

        ngf = int(self.metadata.architecture.get("ngf", 64) or 64)
        return choose_tiling(height, width, provider=self.provider, ngf=ngf, budget_bytes=self.max_memory,
                             count=count, whole_maps=whole_maps_for(self.engine.runner.rewrites))

    def auto_tile(self, height: int, width: int, tiling: str = "exact") -> int:
        """Tile edge for an image of this size (0 = run it whole): exact tiles are cache-sized on the
        CPU (:attr:`imgxlate.tiling.auto.TilingChoice.exact_tile`), blend tiles as large as memory
        allows (each blend tile normalises on its own, so larger is closer to the whole image)."""
        choice = self.tiling_choice(height, width)
        return int(choice.exact_tile if tiling == "exact" else choice.tile)

    def _auto_edge(self, height: int, width: int, tiling: str) -> int:
        """:meth:`auto_tile` for the tiler that will run: blend tiles when exact ones were asked for
        but the model cannot be cut (the exact tiler says so once)."""
        tile = self.auto_tile(height, width, tiling)
        if tile and tiling == "exact" and not self._runs_exact(tiling):
            tile = self.auto_tile(height, width, "blend")
        return tile

    def _tile_for(self, height: int, width: int, tile: int | None, tiling: str = "exact") -> int:
        if self.engine.fixed_size is not None:
            return 0  # a fixed-size model sees every image resized to its size: nothing to tile
        if tile is None:
            tile = self._auto_edge(height, width, tiling)
        if isinstance(tile, bool) or not isinstance(tile, (int, np.integer)):
            raise UsageError(f"tile is an edge in pixels (an int; 0: no tiling, None: automatic), not {tile!r}")
        if tile < 0:
            raise UsageError(f"tile size must be >= 0 (0 = no tiling), got {tile}")
        if tile and max(height, width) <= tile:
            return 0  # one tile would cover the image: a whole run is the same and cheaper
        return tile

    def _warn(self, message: str) -> None:
        """A ``fallback`` note: recorded once in :attr:`notes` and raised as a Python warning."""
        note = Note("fallback", message)
        if note not in self.notes:
            self.notes.append(note)
            warnings.warn(message, stacklevel=3)

    def _exact_tiler(self) -> Any:
        """The exact tiler on this engine's device and backend, or None when the graph cannot be cut
        (said once; callers fall back to blend tiling)."""
        with self._exact_lock:
            if self._exact is None and not self._exact_failed:
                from imgxlate.tiling.exact import ExactTiler

                try:
                    self._exact = ExactTiler(self.model_path, self.engine.runner_factory())
                except (InvalidModelError, ImportError) as exc:
                    self._exact_failed = True
                    self._warn(f"exact tiling is not possible for this model ({exc}); using overlap-blend tiling")
            return self._exact

    def _runs_exact(self, tiling: str) -> bool:
        """Will tiles of this ``tiling`` run on the exact tiler (asked for, and the model can be cut)?"""
        return tiling == "exact" and self._exact_tiler() is not None

    def _store(self, height: int, width: int) -> Any:
        """Where the exact tiler keeps its maps for an image of this size: on the GPU (a DeviceStore,
        so tiles never leave it) when the engine runs ONNX Runtime on CUDA and torch with CUDA is
        installed, unless the maps would not fit there (the choice says spill); else in host memory
        or spilled (:class:`MapStore`)."""
        from imgxlate.tiling.exact import MapStore
        from imgxlate.tiling.exact.device import DeviceArrays, DeviceStore, cuda_device

        kind = self.tiling_choice(height, width).store
        device = cuda_device() if self.engine.on_cuda else None
        if device is not None and kind != "spill":
            return DeviceStore(DeviceArrays(device), kind)
        return MapStore.for_choice(kind)

    def _run_tiled(self, x: np.ndarray, tile: int, overlap: int, tiling: str) -> np.ndarray:
        """(3, H, W) -> (3, H, W) with the exact (graph-cut) tiler or the overlap-blend tiler."""
        from imgxlate.tiling.blend import run_blended

        if tiling not in TILINGS:
            raise UsageError(f"unknown tiling {tiling!r}; use exact or blend")
        if self._runs_exact(tiling):
            store = self._store(x.shape[1], x.shape[2])
            return np.asarray(self._exact.run(x, tile, progress=self.tile_progress, store=store), dtype=np.float32)
        return run_blended(self._run_whole, x, tile, overlap, self.multiple, progress=self.tile_progress)

    def run_model(
        self, x: np.ndarray, *, tile: int | None = None, tile_overlap: int = 32, tiling: str = "exact"
    ) -> np.ndarray:
        """(3, H, W) float32 in the model's input range, any H, W -> (3, H, W) in its output range."""
        if x.ndim != 3 or x.shape[0] != 3:
            raise UsageError(f"run_model takes a (3, H, W) array, got shape {x.shape}")
        t = self._tile_for(x.shape[1], x.shape[2], tile, tiling)
        if t == 0:
            try:
                return self._run_whole(x[None])[0]
            except Exception as exc:  # noqa: BLE001 - only out-of-memory errors are retried
                t = self._retry_tile(x.shape[1], x.shape[2], exc, tiling)
        return self._run_tiled(x, t, tile_overlap, tiling)

    def _retry_tile(self, height: int, width: int, exc: BaseException, tiling: str = "exact") -> int:
        """The tile edge to retry a whole-image run that ran out of memory with (re-raises others)."""
        if not is_out_of_memory(exc) or self.engine.fixed_size is not None:
            raise exc
        from imgxlate.tiling.auto import MIN_TILE

        t = max(self._auto_edge(height, width, tiling), MIN_TILE)
        if max(height, width) <= t:
            t = max(MIN_TILE, max(height, width) // 2 // 4 * 4)
        kind = "exact" if self._runs_exact(tiling) else "blend"
        self._warn(f"the whole {width}x{height} image ran out of memory; retrying it in {kind} tiles of {t} px")
        return t

    # ----------------------------------------------------------------------------- public API
    def translate_rgb(
        self,
        rgb: np.ndarray,
        *,
        tile: int | None = None,
        tile_overlap: int = 32,
        tiling: str = "exact",
        dtype: Any = np.float32,
    ) -> np.ndarray:
        """(H, W, 3) RGB, uint8 or float32 in [0, 1], any H and W -> (H, W, 3) float32 in [0, 1], or
        uint8 (rounded to nearest) when ``dtype`` is ``np.uint8``.

        ``tile``: None = automatic (tile only when a whole run would not fit in memory), 0 = whole
        image, N = tiles of N pixels with ``tiling`` "exact" (same result as whole) or "blend".
        Exact tiles read uint8 pixels as they are and write uint8 results tile by tile, so a 96 MP
        photo is held as 2 x 288 MB instead of 2 x 1.15 GB of floats.
        """
        rgb = np.asarray(rgb)
        if rgb.ndim != 3 or rgb.shape[2] != 3:
            raise UsageError(f"translate_rgb takes an (H, W, 3) array, got shape {rgb.shape}")
        if np.dtype(dtype) not in (np.float32, np.uint8):
            raise UsageError(f"translate_rgb gives float32 or uint8 results, not {np.dtype(dtype)}")
        if tiling not in TILINGS:  # checked even when this image needs no tiles: the typo is the caller's
            raise UsageError(f"unknown tiling {tiling!r}; use exact or blend")
        t = self._tile_for(rgb.shape[0], rgb.shape[1], tile, tiling)
        if t and self._runs_exact(tiling):
            return self._exact_rgb(rgb, t, dtype)
        y = self.run_model(self._to_model(rgb), tile=tile, tile_overlap=tile_overlap, tiling=tiling)
        return from_model_as(y, self.metadata.output_range, dtype)

    def translate_decoded(
        self,
        image: DecodedImage,
        *,
        tile: int | None = None,
        tile_overlap: int = 32,
        tiling: str = "exact",
        batch_size: int = 1,
    ) -> np.ndarray | list[np.ndarray]:
        """A decoded file's result, ready for :func:`imgxlate.imaging.write_image`: (H, W, 3) as
        :meth:`translate_rgb` gives it (uint8 when that loses nothing, see
        :func:`imgxlate.imaging.result_dtype`), or for an animation or a multi-page TIFF one such result
        per frame or page.

        ``batch_size`` > 1: an animation's 8-bit frames go through the model that many at a time
        (:meth:`translate_batch`: together when they fit the memory budget, else one by one) unless a
        ``tile`` or blend tiling was asked for; the batch runs the GPU gets (the frames share one size)."""
        from imgxlate.imaging.encode import result_dtype

        frames = image.frames
        # translate_batch tiles a frame that does not fit exactly, so only where exact tiling was asked
        together = image.animation is not None and batch_size > 1 and tile is None and tiling == "exact"
        together = together and all(f.pixels.dtype == np.uint8 for f in frames)
        step = batch_size if together else 1
        outs: list[np.ndarray] = []
        for i in range(0, len(frames), step):
            chunk = frames[i : i + step]
            if together:
                outs.extend(self.translate_batch(np.stack([f.pixels for f in chunk])))
            else:
                f = chunk[0]
                outs.append(self.translate_rgb(f.pixels, tile=tile, tile_overlap=tile_overlap, tiling=tiling,
                                               dtype=result_dtype(f)))
            if len(frames) > 1 and self.frame_progress is not None:
                self.frame_progress(len(outs), len(frames))
        return outs if len(frames) > 1 else outs[0]

    def _exact_rgb(self, rgb: np.ndarray, tile: int, dtype: Any) -> np.ndarray:
        """Exact tiling straight from the (H, W, 3) image into the (H, W, 3) result: the tiler reads
        windows of the image and hands back output tiles, so no full-size model-range copy of either
        exists (at 96 MP each would be 1.1 GB)."""
        scale, offset = pixel_affine(rgb.dtype, self.metadata.input_range)
        out = np.empty(rgb.shape, dtype)

        def sink(region: tuple[int, int, int, int], y: np.ndarray) -> None:
            y0, y1, x0, x1 = region
            out[y0:y1, x0:x1] = from_model_as(y, self.metadata.output_range, dtype)

        self._exact.run(
            rgb, tile, hwc=True, scale=scale, offset=offset, sink=sink, progress=self.tile_progress,
            store=self._store(rgb.shape[0], rgb.shape[1]),
        )
        return out

    def _batch_fits(self, height: int, width: int, count: int) -> bool:
        """Do ``count`` images of this size fit one whole run within the memory budget?"""
        return self.engine.fixed_size is not None or self.tiling_choice(height, width, count=count).tile == 0

    def translate_rgb_batch(self, rgbs: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Equal-sized (H, W, 3) images (uint8 or float in [0, 1]) -> list of (H, W, 3) float32 in
        [0, 1], without tiling: in one engine run when they fit the memory budget together, else one
        whole run each (the caller chose whole runs for them, e.g. ``--tile 0``; a run out of memory is
        still retried in tiles, as for one image)."""
        arrays = [np.asarray(r) for r in rgbs]
        if not arrays:
            return []
        shapes = {a.shape for a in arrays}
        if len(shapes) > 1 or arrays[0].ndim != 3 or arrays[0].shape[2] != 3:
            raise UsageError(
                f"translate_rgb_batch takes (H, W, 3) RGB images of one size, got shapes {sorted(shapes)}; "
                "translate images of other sizes, gray or with alpha one by one with translate()")
        if not self._batch_fits(arrays[0].shape[0], arrays[0].shape[1], len(arrays)):
            return [self.translate_rgb(a, tile=0) for a in arrays]
        if len({a.dtype for a in arrays}) > 1:  # uint8 beside float: stack them all as [0, 1] floats
            arrays = [unit_float(a) for a in arrays]
        y = self._run_batch(self._to_model(np.stack(arrays)), "images")
        if y is None:  # one at a time, each retried in tiles if even that does not fit (as one image is)
            return [self.translate_rgb(a, tile=0) for a in arrays]
        return list(self._from_model(y))

    def translate_batch(self, frames: np.ndarray) -> np.ndarray:
        """(N, H, W, 3) uint8 RGB frames of one size -> (N, H, W, 3) uint8: in one engine run when the
        frames fit the memory budget together, else one at a time, each whole or in exact tiles (the
        same result), so a 4K video stays within the memory an image of its size gets."""
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[3] != 3 or frames.dtype != np.uint8:
            raise UsageError(f"translate_batch takes (N, H, W, 3) uint8 frames, got {frames.dtype} {frames.shape}")
        n, h, w = frames.shape[:3]
        y = self._run_batch(uint8_to_model(frames, self.metadata.input_range), "frames") \
            if self._batch_fits(h, w, n) else None
        if y is None:
            return np.stack([self.translate_rgb(f, dtype=np.uint8) for f in frames])
        return model_to_uint8(y, self.metadata.output_range)

    def _run_batch(self, x: np.ndarray, what: str) -> np.ndarray | None:
        """One whole engine run of a batch (N, 3, H, W); None when it ran out of memory: the estimate
        let it through and the device said no, so the caller goes one at a time through
        :meth:`translate_rgb`, which retries an image in exact tiles when even it alone does not fit
        (a warning says so for a batch of several). Other errors are raised."""
        try:
            return self._run_whole(x)
        except Exception as exc:  # only out-of-memory errors are retried
            if not is_out_of_memory(exc):
                raise
        if len(x) > 1:
            self._warn(f"a batch of {len(x)} {what} ran out of memory; running them one at a time")
        return None

    def translate(
        self, image: Any, *, tile: int | None = None, tile_overlap: int = 32, tiling: str = "exact"
    ) -> Any:
        """A PIL image or an ndarray in, the same kind out. PIL keeps its mode (palette and 1-bit images
        come back as RGB(A) / L; mode F holds floats in [0, 1]). An ndarray keeps its layout (gray
        (H, W) or (H, W, 1) comes back as (H, W); alpha is passed through unchanged) and its kind:
        uint8 stays uint8 and uint16 uint16; other integers and bool come back as uint8 (uint16 when a
        value is over 255); floats, which must be in [0, 1], keep their float dtype.

        A PIL image's EXIF orientation is applied first, as ``imgxlate convert`` applies it: a photo
        taken sideways comes back upright, with its width and height swapped, and without the tag.

        A file is not an image here. To decode one as ``imgxlate convert`` does (16 bits kept, ICC
        profile converted to sRGB), use :func:`imgxlate.imaging.read_image` and
        :meth:`translate_decoded`, or :func:`imgxlate.convert_paths` to write the results as files."""
        from PIL import Image

        from imgxlate.imaging.arrays import from_array, to_array

        if not isinstance(image, (np.ndarray, Image.Image)):
            raise UsageError(
                f"translate takes a PIL image or a numpy array, not {type(image).__name__}; for a file, open it "
                "first (PIL.Image.open), decode it as imgxlate convert does (imgxlate.imaging.read_image, then "
                "translate_decoded), or use imgxlate.convert_paths, which writes the results as files"
            )
        decoded = from_array(image)
        rgb = self.translate_rgb(decoded.pixels, tile=tile, tile_overlap=tile_overlap, tiling=tiling)
        arr = to_array(rgb, decoded)
        if isinstance(image, np.ndarray):
            return arr
        out = Image.fromarray(arr)
        # Back to the input's mode, except palette / bilevel modes: re-quantising or dithering the
        # translation would damage it, so those come back as RGB(A) / L.
        if out.mode != image.mode and image.mode not in ("P", "PA", "1"):
            out = out.convert(image.mode)
        # from_array converted the pixels to sRGB; tag the result with the profile that now applies.
        if decoded.icc_profile:
            out.info["icc_profile"] = decoded.icc_profile
        return out


def load_model(
    model: str | os.PathLike[str] | None = None,
    *,
    to: str | None = None,
    direction: str | None = None,
    device: str = "auto",
    threads: int = 0,
    backend: str = "auto",
) -> Translator:
    """Find a generator (name, path or the default pair; ``to`` = target domain or ``direction``) and
    load it on ``device`` ("auto" | "cuda" | "cpu") with ``backend`` ("auto" | "onnxruntime" |
    "openvino", see :mod:`imgxlate.engine`)."""
    if isinstance(model, str) and not model.strip():
        raise UsageError("model is an empty name; give a model name, a .onnx file or a pair folder (None: the default)")
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 0:
        raise UsageError(f"threads must be a whole number >= 0 (0: as many as the machine has), not {threads!r}")
    if model is not None and not isinstance(model, (str, os.PathLike)):
        raise UsageError(f"model is a name, a .onnx file or a pair folder (str or Path), not {type(model).__name__}")
    resolved = resolve_model(model, to=to, direction=direction)
    engine = Engine(resolved.file.path, device=device, threads=threads, backend=backend)
    # The same check as `imgxlate models add`, once per loaded model: a classifier, a model that
    # resizes, or one that outputs NaN or a constant is refused before any image is written.
    probe_generator(engine, resolved.file.metadata, resolved.file.path)
    for note in resolved.notes:  # what the caller must know (the CLI prints every note itself)
        if note.kind in ("no-metadata", "ignored"):
            warnings.warn(note.text, stacklevel=2)
    notes = list(resolved.notes)
    if engine.provider == CPU and threads > (cpus := usable_cpus()):  # an extra zero typed, say
        notes.append(Note("fallback", f"{threads} threads were asked for, more than the {cpus} CPUs this process "
                                      f"may use: it runs on {cpus}"))
        warnings.warn(notes[-1].text, stacklevel=2)
    return Translator(resolved, engine, notes)


def is_out_of_memory(exc: BaseException) -> bool:
    """Is this a runtime's out-of-memory error (numpy, ONNX Runtime CPU/CUDA, OpenVINO)?"""
    if isinstance(exc, MemoryError):
        return True
    if isinstance(exc, OSError):  # its text holds file names: only the errno counts
        import errno

        return exc.errno == errno.ENOMEM
    text = str(exc).lower()
    return any(k in text for k in ("bad_alloc", "failed to allocate", "out of memory", "alloc_failed",
                                   "memoryallocation", "cannot allocate memory"))
