"""What the web page does, without Gradio: models, image batches, previews, zips, videos.

One :class:`WebService` per server. It owns one temporary folder (``workdir``): uploads are put there
by Gradio (the app points ``GRADIO_TEMP_DIR`` at it), each request gets a job folder below it, and
nothing is read or written anywhere else (models are read where the registry finds them).

Images go through :func:`imgxlate.convert_paths`, the same planning, decoding (EXIF orientation,
ICC, alpha, 16 bits), translation (automatic exact tiling for large images) and encoding as
``imgxlate convert``; videos through :func:`imgxlate.video.convert_video`, as ``imgxlate video``.
One translator (one runtime session) per generator is shared by every request; callers serialise
model work (the app runs every model event in one Gradio queue slot).
"""

from __future__ import annotations

import contextlib
import inspect
import os
import shutil
import tempfile
import threading
import time
import uuid
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imgxlate.errors import ImgxlateError, ModelNotFoundError, UsageError
from imgxlate.inputs import VIDEO_SUFFIXES, domain_tag

# Longest edge of the pictures shown on the page (downloads are always full size).
PREVIEW_EDGE = 1024
DEFAULT_MAX_UPLOAD_MB = 200
DEFAULT_MAX_VIDEO_SECONDS = 60.0
# Translators kept loaded at once (both directions of one pair).
_MAX_LOADED = 2
# A request's job folder (its results, downloadable from the page) is deleted this long after it was
# made, at the next request; Gradio's own cache of uploads goes after the same time.
JOB_LIFETIME_S = 6 * 3600
# How long close() waits for a request in flight to stop at its next tile or frame.
STOP_WAIT_S = 60.0
# Pages whose last request is remembered (see WebService._once_per_page); the oldest is forgotten first.
_MAX_REMEMBERED = 256


class ServiceStopped(ImgxlateError):
    """The server is stopping: the request in flight ends at its next tile, frame or image."""


class RequestCancelled(ImgxlateError):
    """The page that asked for this request was closed or reloaded: it ends at its next tile, frame
    or image, so that the others in the queue do not wait for a result nobody can see."""

Progress = Callable[[float, int, str], None]  # (done, total, what): done may be fractional


@dataclass(frozen=True)
class ModelChoice:
    """One model pair the page offers: its label, what to pass to ``load_model``, its targets."""

    label: str
    model: str
    targets: tuple[str, ...]
    default_target: str


@dataclass
class ImageOutcome:
    """One uploaded image: its name, what happened, and the files made for the page."""

    name: str
    status: str  # "converted" | "failed"
    reason: str = ""
    seconds: float = 0.0
    width: int = 0
    height: int = 0
    output: Path | None = None  # the full-size result, in the source's format (as imgxlate convert)
    input_preview: Path | None = None
    output_preview: Path | None = None
    notes: tuple[str, ...] = ()  # a converted file's ``partial`` notes (the first page of a multi-page TIFF)


@dataclass
class BatchOutcome:
    """One request: every image's outcome, the zip of all results, the provider line."""

    images: list[ImageOutcome]
    zip_path: Path | None
    provider: str
    model: str
    target: str
    seconds: float
    warnings: list[str] = field(default_factory=list)

    @property
    def converted(self) -> list[ImageOutcome]:
        return [o for o in self.images if o.status == "converted"]

    @property
    def failed(self) -> list[ImageOutcome]:
        return [o for o in self.images if o.status == "failed"]


@dataclass
class VideoOutcome:
    name: str
    output: Path
    frames: int
    width: int
    height: int
    seconds: float
    audio: str
    provider: str
    target: str
    limited_to: float | None = None  # seconds, when only the start of a longer clip was converted
    warnings: list[str] = field(default_factory=list)


def model_choices(model: str | None = None, to: str | None = None) -> tuple[list[ModelChoice], str]:
    """The pairs to offer (every installed model, plus ``model`` when it is a path) with the one
    ``--model`` / ``--to`` pick first, as the CLI picks it; and the target domain to preselect."""
    from imgxlate.registry import default_model_name, list_models, load_pair, resolve_model

    choices: list[ModelChoice] = []
    preferred, target = default_model_name(), ""
    if model is not None or to is not None:
        resolved = resolve_model(model, to=to)  # the CLI's errors: unknown name, bad path, no such target
        pair = resolved.pair
        if pair.location == "path":
            pair = load_pair(str(pair.path), "path")
            choices.append(_choice(pair, str(pair.path), resolved.file.metadata.target))
        preferred, target = _label(pair), resolved.file.metadata.target
    for pair in list_models():
        if not any(c.label == pair.name for c in choices):
            choices.append(_choice(pair, pair.name, pair.default_file().metadata.target))
    if not choices:
        raise ModelNotFoundError(
            "no models are installed; pass --model PATH or install one with `imgxlate models add PATH|URL`"
        )
    choices.sort(key=lambda c: c.label != preferred)  # stable: the preferred one first
    return choices, target or choices[0].default_target


def _label(pair: Any) -> str:
    return pair.name if pair.location != "path" else f"{pair.name} ({pair.path})"


def _choice(pair: Any, model: str, default_target: str) -> ModelChoice:
    return ModelChoice(_label(pair), model, tuple(pair.targets), default_target)


def _unique_name(name: str, taken: set[str]) -> str:
    """``name``, or ``stem (2).ext`` ... when an earlier upload of this request had the same stem (in
    any case, with any suffix): a result keeps its upload's stem but may change its suffix
    (``IMG_0002.HEIC`` is written as ``IMG_0002.png``), so two uploads with one stem could claim one
    output name."""
    base = Path(name).name or "upload"
    if base.startswith("."):
        base = "upload" + base  # hidden names are skipped by the batch planner's folder walk
    stem, suffix = Path(base).stem, Path(base).suffix
    candidate, n = base, 1
    while Path(candidate).stem.lower() in taken:
        n += 1
        candidate = f"{stem} ({n}){suffix}"
    taken.add(Path(candidate).stem.lower())
    return candidate


def _still_there(images: Sequence[ImageOutcome], *more: Path | None) -> bool:
    """Whether every file made for ``images`` and ``more`` is still on disk (job folders go after
    JOB_LIFETIME_S)."""
    made = [p for o in images for p in (o.output, o.input_preview, o.output_preview)] + list(more)
    return all(p is None or p.exists() for p in made)


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def _public_reason(reason: str, paths: Iterable[tuple[Path, str]]) -> str:
    """The CLI's reason with the server's temp paths replaced by the names the user uploaded."""
    for path, name in paths:
        reason = reason.replace(str(path), name)
    return reason


class WebService:
    """Models, uploads and results of one ``imgxlate serve`` process."""

    def __init__(
        self,
        *,
        model: str | None = None,
        to: str | None = None,
        device: str = "auto",
        threads: int = 0,
        backend: str | None = None,
        max_pixels: int | None = None,
        max_video_seconds: float | None = DEFAULT_MAX_VIDEO_SECONDS,
        workdir: str | os.PathLike[str] | None = None,
    ) -> None:
        from imgxlate.imaging import DEFAULT_MAX_PIXELS

        self.device = device
        self.threads = threads
        self.backend = backend
        self.max_pixels = DEFAULT_MAX_PIXELS if max_pixels is None else max_pixels
        self.max_video_seconds = max_video_seconds
        self.choices, self.default_target = model_choices(model, to)
        self.default_choice = self.choices[0]
        self._owns_workdir = workdir is None
        self.workdir = Path(tempfile.mkdtemp(prefix="imgxlate-serve-") if workdir is None else workdir).resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.jobs = self.workdir / "jobs"
        self.jobs.mkdir(exist_ok=True)
        self._loaded: OrderedDict[tuple[str, str], Any] = OrderedDict()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._sessions: dict[str, threading.Event] = {}  # a page's requests at work -> closed?
        # a page's last request: (what it asked, its outcome), see _once_per_page
        self._last_asked: OrderedDict[str, tuple[tuple[Any, ...], Any]] = OrderedDict()
        self._local = threading.local()  # the page the request on this thread is for
        self._active = 0  # requests doing model work now
        self._idle = threading.Condition()

    @contextlib.contextmanager
    def _request(self) -> Any:
        """Around one request's work: counted, so that :meth:`close` can wait for it to stop."""
        with self._idle:
            if self._stopping.is_set():
                raise ServiceStopped("the server is stopping; this request was not started")
            self._active += 1
        try:
            yield
        finally:
            with self._idle:
                self._active -= 1
                self._idle.notify_all()

    def check_running(self) -> None:
        """Raise :class:`ServiceStopped` once the server is stopping, :class:`RequestCancelled` once
        the page of this thread's request is gone (called at every tile, frame and image of a request,
        so neither waits for a whole large image or clip)."""
        if self._stopping.is_set():
            raise ServiceStopped("the server is stopping; this request was cut short")
        closed = getattr(self._local, "closed", None)
        if closed is not None and closed.is_set():
            raise RequestCancelled("the page that asked for this was closed; the request was cut short")

    @contextlib.contextmanager
    def for_page(self, session: str | None) -> Any:
        """Run this thread's requests for the page (browser session) ``session``: :meth:`page_closed`
        then cuts them short. None: not tied to a page."""
        if session is None:
            yield
            return
        with self._lock:
            closed = self._sessions.setdefault(session, threading.Event())
        self._local.closed, self._local.session = closed, session
        try:
            yield
        finally:
            self._local.closed = self._local.session = None
            with self._lock:
                if self._sessions.get(session) is closed:
                    del self._sessions[session]

    def page_closed(self, session: str) -> None:
        """The page ``session`` was closed or reloaded: its request at work ends at its next tile,
        frame or image (nothing is kept for a page that has none)."""
        with self._lock:
            closed = self._sessions.get(session)
            self._last_asked.pop(session, None)
        if closed is not None:
            closed.set()

    # --------------------------------------------------------------------------------- models
    def choice(self, label: str | None) -> ModelChoice:
        for c in self.choices:
            if c.label == label:
                return c
        if label is None:
            return self.default_choice
        raise UsageError(f"unknown model {label!r}; choose one of {', '.join(c.label for c in self.choices)}")

    def _generator(self, label: str | None, target: str | None) -> tuple[ModelChoice, str]:
        """The pair ``label`` names and the target asked (None: the pair's default target)."""
        choice = self.choice(label)
        return choice, target or (self.default_target if choice is self.default_choice else choice.default_target)

    def translator(self, label: str | None = None, target: str | None = None) -> Any:
        """The shared translator for ``label``'s generator that makes ``target`` (loaded once)."""
        choice, target = self._generator(label, target)
        if target not in choice.targets:
            raise UsageError(f"{choice.label} does not translate to {target!r}; choose {', '.join(choice.targets)}")
        key = (choice.model, target)
        with self._lock:
            hit = self._loaded.get(key)
            if hit is not None:
                self._loaded.move_to_end(key)
                return hit
            translator = self._load(choice.model, target)
            self._loaded[key] = translator
            while len(self._loaded) > _MAX_LOADED:
                self._loaded.popitem(last=False)
            return translator

    def _load(self, model: str, target: str) -> Any:
        import warnings

        from imgxlate import load_model

        kwargs: dict[str, Any] = {"to": target, "device": self.device, "threads": self.threads}
        if self.backend is not None:
            if "backend" in inspect.signature(load_model).parameters:
                kwargs["backend"] = self.backend
            elif self.backend not in ("auto", "onnxruntime"):
                raise UsageError(
                    f"--backend {self.backend}: this imgxlate runs models with ONNX Runtime only; use "
                    "--backend auto or onnxruntime"
                )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the notes are kept on the translator and shown on the page
            return load_model(model, **kwargs)

    @staticmethod
    def provider_line(translator: Any) -> str:
        return str(translator.engine.describe())

    # --------------------------------------------------------------------------------- images
    def new_job(self) -> Path:
        """A new request's folder; folders of requests older than :data:`JOB_LIFETIME_S` go first."""
        now = time.time()
        for old in self.jobs.iterdir():
            with contextlib.suppress(OSError):
                if now - old.stat().st_mtime > JOB_LIFETIME_S:
                    shutil.rmtree(old)
        job = self.jobs / uuid.uuid4().hex[:12]
        job.mkdir()
        return job

    def convert_images(
        self,
        uploads: Sequence[str | os.PathLike[str]],
        label: str | None = None,
        target: str | None = None,
        progress: Progress | None = None,
    ) -> BatchOutcome:
        """Translate uploaded files (paths inside ``workdir``) into a new job folder.

        Each result keeps its upload's name and format as ``imgxlate convert --format same`` would
        write it; failures carry the CLI's reason with the upload's name in place of the temp path.
        """
        if not uploads:
            raise UsageError("no images uploaded; drop one or more image files on the page first")
        with self._request():
            return self._once_per_page(
                ("images", self._batch_key(uploads, label, target)),
                lambda: self._convert_images(uploads, label, target, progress),
                lambda o: not o.failed and _still_there(o.images, o.zip_path))

    def _once_per_page(self, asked: tuple[Any, ...], run: Callable[[], Any], reusable: Callable[[Any], bool]) -> Any:
        """``run()``, unless this thread's page asked exactly ``asked`` last and its outcome is still
        ``reusable`` (every file it made on disk; no failure: pressing again is how one is retried).

        A drop starts a batch (or a clip), and a press of *Translate* after it asked for the same again:
        it waited in the queue and translated everything twice."""
        session = getattr(self._local, "session", None)
        if session is None:
            return run()
        with self._lock:
            last = self._last_asked.get(session)
        if last is not None and last[0] == asked and reusable(last[1]):
            return last[1]
        outcome = run()
        with self._lock:
            self._last_asked[session] = (asked, outcome)
            self._last_asked.move_to_end(session)
            while len(self._last_asked) > _MAX_REMEMBERED:
                self._last_asked.popitem(last=False)
        return outcome

    def _batch_key(self, uploads: Sequence[str | os.PathLike[str]], label: str | None,
                   target: str | None) -> tuple[Any, ...]:
        """What a batch was asked: each upload (path, size, modification time), the generator, the target."""
        choice, target = self._generator(label, target)
        files = []
        for up in uploads:
            try:
                st = os.stat(up)
            except OSError:
                return (object(),)  # equal to nothing: the batch runs and says what is wrong
            files.append((os.fspath(up), st.st_size, st.st_mtime_ns))
        return (tuple(files), choice.model, target)

    def _convert_images(self, uploads: Sequence[str | os.PathLike[str]], label: str | None, target: str | None,
                        progress: Progress | None) -> BatchOutcome:
        from imgxlate import convert_paths
        from imgxlate.options import ImageOptions

        translator = self.translator(label, target)
        job = self.new_job()
        in_dir, out_dir, view_dir = job / "in", job / "out", job / "view"
        for d in (in_dir, out_dir, view_dir):
            d.mkdir()
        taken: set[str] = set()
        staged: list[Path] = []
        names: dict[Path, str] = {}
        tag = domain_tag(translator.metadata.target)
        for up in uploads:
            src = self._inside_workdir(Path(up))
            name = _unique_name(src.name, taken)
            # staged, and so written, as photo.vangogh.jpg: results go to a downloads folder, and a zip
            # of them unpacked beside the originals would otherwise write over every one of them
            dst = in_dir / f"{Path(name).stem}.{tag}{Path(name).suffix}"
            _link_or_copy(src, dst)
            staged.append(dst)
            names[dst] = name
        total = len(staged)
        t0 = time.perf_counter()
        outcomes: list[ImageOutcome] = []
        finished = [0]  # images done so far; the one being translated is the next

        def inside(unit: str) -> Callable[[int, int], None]:
            """Progress inside the image being translated: a large image's tiles, an animation's frames."""

            def report(done: int, count: int) -> None:
                self.check_running()
                if progress is not None:  # the image's share of the bar grows with its tiles
                    name = names[staged[min(finished[0], total - 1)]]
                    progress(finished[0] + done / max(count, 1), total, f"translating {name}: {unit} {done} of {count}")

            return report

        if progress is not None:
            progress(0, total, f"translating {names[staged[0]]}")
        # one job at a time uses the shared session (one queue slot)
        translator.tile_progress, translator.frame_progress = inside("tile"), inside("frame")
        results = convert_paths(staged, out_dir, translator=translator,
                                options=ImageOptions(max_pixels=self.max_pixels), recursive=False)
        try:
            for i, r in enumerate(results, start=1):
                self.check_running()
                finished[0] = i
                name = names.get(Path(r.src), Path(r.src).name)
                # every server path a reason may name, as the user knows it
                pairs = [*names.items(), (Path(r.dst), Path(r.dst).name)]
                if r.status == "converted":
                    outcome = ImageOutcome(name, "converted", seconds=r.seconds, width=r.width, height=r.height,
                                           output=Path(r.dst), notes=tuple(n.text for n in r.notes))
                    try:
                        outcome.input_preview = self._preview(Path(r.src), view_dir / f"{i:04d}-in")
                        outcome.output_preview = self._preview(Path(r.dst), view_dir / f"{i:04d}-out")
                    except ImgxlateError:
                        pass  # the result is fine; only its picture on the page is missing
                elif Path(name).suffix.lower() in VIDEO_SUFFIXES and Path(name).suffix.lower() != ".gif":
                    # the CLI's reason names `imgxlate video`; here the place for it is the other tab
                    outcome = ImageOutcome(name, "failed", "a video, not a picture: drop it on the Video tab")
                else:
                    outcome = ImageOutcome(name, "failed", _public_reason(r.reason or r.status, pairs),
                                           width=r.width, height=r.height)
                outcomes.append(outcome)
                if progress is not None:
                    following = names.get(staged[i]) if i < total else None
                    progress(i, total, f"translating {following}" if following else "done")
        finally:
            results.close()
            translator.tile_progress = translator.frame_progress = None
            shutil.rmtree(in_dir, ignore_errors=True)  # the staged uploads (hard links keep their data)
        zip_path = self._zip([o.output for o in outcomes if o.output is not None], job / "imgxlate-results.zip")
        return BatchOutcome(
            outcomes, zip_path, self.provider_line(translator), translator.pair.name,
            translator.metadata.target, time.perf_counter() - t0,
            [n.text for n in translator.notes if n.kind != "direction"],
        )

    def _inside_workdir(self, path: Path) -> Path:
        """Refuse any path outside the temp folder (the page only ever hands over its own uploads)."""
        resolved = path.resolve()
        if not resolved.is_relative_to(self.workdir):
            raise UsageError(f"{path.name}: not an upload of this page")
        if not resolved.is_file():
            raise UsageError(f"{path.name}: the upload is gone; upload it again")
        return resolved

    def _preview(self, path: Path, stem: Path) -> Path:
        """A small copy of ``path`` for the page, decoded and encoded by the CLI's image functions
        (upright, sRGB or the file's profile embedded; PNG when it has alpha, else JPEG)."""
        import cv2

        from imgxlate.imaging import read_image, write_image

        decoded = read_image(path, max_pixels=None, frames=False)  # an animation's preview: its first frame
        h, w = decoded.height, decoded.width
        scale = min(1.0, PREVIEW_EDGE / max(h, w))
        rgb = decoded.rgb
        if scale < 1.0:
            size = (max(1, round(w * scale)), max(1, round(h * scale)))
            rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
        decoded.source = None
        suffix = ".png" if decoded.alpha is not None else ".jpg"
        return write_image(stem.with_suffix(suffix), rgb, decoded, quality=90)

    @staticmethod
    def _zip(files: Sequence[Path], dst: Path) -> Path | None:
        if not files:
            return None
        from imgxlate._atomic import atomic_path

        with atomic_path(dst) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as zf:
            for f in files:
                zf.write(f, arcname=f.name)
        return dst

    # --------------------------------------------------------------------------------- video
    def convert_video(
        self,
        upload: str | os.PathLike[str],
        label: str | None = None,
        target: str | None = None,
        progress: Progress | None = None,
    ) -> VideoOutcome:
        """Translate an uploaded clip to ``<stem>.<target>.mp4`` (H.264, its sound kept) in a job
        folder, through the same function as ``imgxlate video``; only its first ``max_video_seconds``."""
        with self._request():
            return self._once_per_page(
                ("video", self._batch_key([upload], label, target)),
                lambda: self._convert_video(upload, label, target, progress),
                lambda o: _still_there([], o.output))

    def _convert_video(self, upload: str | os.PathLike[str], label: str | None, target: str | None,
                       progress: Progress | None) -> VideoOutcome:
        from imgxlate.video import convert_video, default_output

        src_upload = self._inside_workdir(Path(upload))
        translator = self.translator(label, target)
        job = self.new_job()
        src = job / _unique_name(src_upload.name, set())
        _link_or_copy(src_upload, src)
        dst = default_output(src, translator.metadata.target, job / "out")

        def report(done: int, total: int | None) -> None:
            self.check_running()
            if progress is not None:
                progress(done, max(total or 0, done), "frames")

        limit = self.max_video_seconds
        try:
            result = convert_video(src, dst, translator, duration=limit, progress=report)
        except ImgxlateError as err:
            if isinstance(err, ServiceStopped):
                raise
            raise type(err)(_public_reason(str(err), [(src, src.name), (dst, dst.name)])) from None
        finally:
            with contextlib.suppress(OSError):
                src.unlink()  # the staged upload
        limited = limit if result.cut_short else None  # a frame past the limit was decoded
        return VideoOutcome(src.name, dst, result.frames, result.width, result.height, result.seconds,
                            result.audio, self.provider_line(translator), translator.metadata.target, limited,
                            list(result.warnings))

    # --------------------------------------------------------------------------------- cleanup
    def stop(self) -> None:
        """Refuse new requests and cut short those in flight, at their next tile, frame or image. Set at
        the first Ctrl-C or SIGTERM, before the page closes: the web server waits for its requests to
        end, 5 s at a time, and a 12 MP photo or a clip took 11-12 s to stop (``docker stop`` kills at
        10 s)."""
        self._stopping.set()

    def close(self, wait: float = STOP_WAIT_S) -> bool:
        """Stop: a request in flight ends at its next tile, frame or image (:class:`ServiceStopped`),
        new ones are refused; then drop the sessions and delete the temp folder (when this service
        created it). Returns False when a request was still running after ``wait`` seconds (its
        runtime session is then still in use: the caller must end the process without unloading it)."""
        self._stopping.set()
        with self._idle:
            ended = self._idle.wait_for(lambda: self._active == 0, timeout=wait)
        if ended:
            with self._lock:
                self._loaded.clear()
        self.remove_workdir()
        return ended

    def remove_workdir(self) -> None:
        """Delete the temp folder (uploads, results), when this service created it."""
        if self._owns_workdir:
            with contextlib.suppress(OSError):
                shutil.rmtree(self.workdir)
