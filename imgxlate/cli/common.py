"""Shared helpers of the command modules (imported by every ``imgxlate.cli.*`` command):

- the options more than one command has (``ModelOpt``, ``ToOpt``, ``DeviceOpt``, ``QuietOpt``,
  ``JsonOpt``, ...) as ``Annotated`` types with their help panel, choices, shown default and
  ``IMGXLATE_*`` environment variable, so every command spells and means them the same way;
- ``load_translator(...)``: load a model, print its notes and the provider line on stderr;
- ``handle_errors(as_json)``: a context manager turning ImgxlateError into a message on stderr (no
  traceback), a JSON error object on stdout with ``--json``, and its exit code; ``emit_json(doc)``; ``print_error(err)``; ``stderr`` (a rich Console on stderr);
- ``stop_signals()`` (Ctrl-C and SIGTERM), ``defer_stop()`` (hold them while native extensions load:
  ``load_translator`` does) and ``progress_bar()``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, NoReturn, Optional

# rich imports its emoji table lazily, the first time it renders text, which is often inside a command's
# SIGINT guard: a Ctrl-C raised in the middle of that import left the module half-initialised and the
# next render failed with a "circular import" traceback. Imported here, up front, it cannot be cut.
import rich._emoji_codes  # noqa: F401
import typer
from rich.console import Console
from rich.markup import escape

from imgxlate.errors import ImgxlateError, UsageError, brief
from imgxlate.extras import pip_install

if TYPE_CHECKING:  # pragma: no cover
    from imgxlate.options import ModelSpec
    from imgxlate.translator import Translator


stderr = Console(stderr=True, highlight=False, soft_wrap=True)
stdout = Console(highlight=False, soft_wrap=True)


# ------------------------------------------------------------------------------------ shared options
#
# Every option two commands share is declared here once, as an ``Annotated`` type, with its help
# panel, its choices (a typo fails at parse time, before any model loads), the default it resolves to
# and its IMGXLATE_* environment variable. Command modules use these types and declare only what is
# theirs alone.

PANEL_MODEL = "Model"
PANEL_DEVICE = "Device and speed"
PANEL_INPUT = "Inputs"
PANEL_OUTPUT = "Output"
PANEL_TILING = "Large images"
PANEL_REPORT = "Reporting"

DEVICE_CHOICES = ("auto", "cuda", "cpu", "coreml", "directml")
FORMAT_CHOICES = ("same", "png", "jpg", "webp", "tiff")
TILING_CHOICES = ("exact", "blend")
DIRECTION_CHOICES = ("a2b", "b2a")


class LazyText(str):
    """A help/default text computed only when help is shown (e.g. what the default model resolves to,
    which needs the model's metadata): ``--help`` pays for it, a normal run does not."""

    def __new__(cls, compute: Callable[[], str]) -> LazyText:  # noqa: PYI034
        obj = super().__new__(cls, "")
        obj._compute = compute  # type: ignore[attr-defined]
        return obj

    def _text(self) -> str:
        try:
            return self._compute()  # type: ignore[attr-defined]
        except Exception as exc:  # noqa: BLE001 - help must render even with a broken model folder
            return f"unknown: {brief(exc, 120)}"

    def __str__(self) -> str:
        return self._text()

    def __format__(self, spec: str) -> str:
        return format(self._text(), spec)


def _default_model_text() -> str:
    from imgxlate.registry import DEFAULT_MODEL_ENV, default_model_name

    return f"{default_model_name()}; ${DEFAULT_MODEL_ENV} changes it"


def _default_to_text() -> str:
    from imgxlate.registry import resolve_model

    r = resolve_model(None)
    return f"{r.file.metadata.target}: {r.pair.name} translates {r.file.label}"


def _default_max_pixels_text() -> str:
    from imgxlate.imaging.decode import DEFAULT_MAX_PIXELS

    return f"{DEFAULT_MAX_PIXELS:,} ({DEFAULT_MAX_PIXELS / 1e6:g} MP)".replace(",", "_")


def complete_model(incomplete: str) -> list[str]:
    from imgxlate.registry import list_models

    return [p.name for p in list_models() if p.name.startswith(incomplete)]


def _complete_domain(incomplete: str) -> list[str]:
    from imgxlate.registry import list_models

    return sorted({t for p in list_models() for t in p.targets if t.startswith(incomplete)})


ModelOpt = Annotated[
    Optional[str],  # noqa: UP045 - typer needs Optional on 3.10
    typer.Option(
        "--model", "-m", rich_help_panel=PANEL_MODEL, autocompletion=complete_model,
        show_default=LazyText(_default_model_text),
        help="Model name (see `imgxlate models`) or path to a .onnx file / pair folder.",
    ),
]
ToOpt = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option(
        "--to", "-t", rich_help_panel=PANEL_MODEL, autocompletion=_complete_domain,
        show_default=LazyText(_default_to_text),
        help="Target domain, e.g. vangogh: picks the generator that produces it.",
    ),
]
DirectionOpt = Annotated[
    Optional[Literal[DIRECTION_CHOICES]],  # noqa: UP045
    typer.Option("--direction", case_sensitive=False, rich_help_panel=PANEL_MODEL,
                  help="Generator by direction within the pair (instead of --to)."),
]
DeviceOpt = Annotated[
    Literal[DEVICE_CHOICES],
    typer.Option(
        "--device", case_sensitive=False, envvar="IMGXLATE_DEVICE", rich_help_panel=PANEL_DEVICE,
        help="auto: CUDA when it works, else the CPU. coreml / directml where the onnxruntime build has them. "
             "The provider that runs is printed.",
    ),
]
ThreadsOpt = Annotated[
    int,
    typer.Option("--threads", min=0, envvar="IMGXLATE_THREADS", rich_help_panel=PANEL_DEVICE,
                 help="CPU threads; 0 = $OMP_NUM_THREADS when set, else the physical cores; at most the CPUs "
                      "this process may use."),
]
OverwriteOpt = Annotated[
    bool, typer.Option("--overwrite", rich_help_panel=PANEL_OUTPUT,
                       help="Replace existing outputs (default: skip them, so a rerun resumes).")
]
QuietOpt = Annotated[
    bool, typer.Option("--quiet", "-q", rich_help_panel=PANEL_REPORT,
                       help="Errors only: no progress, notes, provider line or summary.")
]
JsonOpt = Annotated[
    bool, typer.Option("--json", rich_help_panel=PANEL_REPORT,
                       help='Print a JSON report on stdout (on failure: {"error": {...}}); text stays on stderr.')
]
def _output_format(value: str) -> str:
    """--format's value through :func:`imgxlate.imaging.formats.normalize_format`: the choices and the
    spellings people type (jpeg, JPG, tif, .png) in one place."""
    from imgxlate.imaging.formats import normalize_format

    try:
        return normalize_format(value)
    except UsageError as exc:
        raise typer.BadParameter(str(exc)) from None


FormatOpt = Annotated[
    str, typer.Option("--format", "-f", callback=_output_format, metavar="|".join(FORMAT_CHOICES),
                      rich_help_panel=PANEL_OUTPUT,
                      help="Output format; same = the input's format (PNG for formats imgxlate cannot write). "
                           "jpeg and tif are taken too.")
]
QualityOpt = Annotated[
    Optional[int],  # noqa: UP045
    typer.Option("--quality", min=1, max=100, rich_help_panel=PANEL_OUTPUT, show_default=False,
                 help="JPEG / WebP quality, 1-100 (100: lossless WebP). Default: 95, and lossless for a "
                      "lossless WebP written as WebP."),
]
IncludeOpt = Annotated[
    Optional[list[str]],  # noqa: UP045
    typer.Option("--include", rich_help_panel=PANEL_INPUT, show_default=False,
                 help="Only files matching this glob (repeatable)."),
]
ExcludeOpt = Annotated[
    Optional[list[str]],  # noqa: UP045
    typer.Option("--exclude", rich_help_panel=PANEL_INPUT, show_default=False,
                 help="Skip files matching this glob (repeatable)."),
]
RecursiveOpt = Annotated[
    bool, typer.Option("--recursive/--no-recursive", rich_help_panel=PANEL_INPUT, help="Walk sub-folders.")
]
MaxPixelsOpt = Annotated[
    Optional[int],  # noqa: UP045
    typer.Option("--max-pixels", min=1, envvar="IMGXLATE_MAX_PIXELS", rich_help_panel=PANEL_INPUT,
                 show_default=LazyText(_default_max_pixels_text),
                 help="Refuse images with more pixels than this (read from the header, before decoding)."),
]
TileOpt = Annotated[
    Optional[int],  # noqa: UP045
    typer.Option("--tile", min=0, rich_help_panel=PANEL_TILING, show_default="automatic from the image size, the model and --max-memory",
                 help="Tile edge in pixels; 0 = the whole image at once."),
]
TileOverlapOpt = Annotated[
    int, typer.Option("--tile-overlap", min=0, rich_help_panel=PANEL_TILING,
                      help="Overlap between tiles in pixels (blend tiling only).")
]
TilingOpt = Annotated[
    Literal[TILING_CHOICES], typer.Option("--tiling", case_sensitive=False, rich_help_panel=PANEL_TILING,
                      help="exact: a whole-image run's result (up to float rounding); blend: overlap and feather, each "
                           "tile normalised on its own (tiles differ in tone on large images).")
]
BackendOpt = Annotated[
    Literal["auto", "onnxruntime", "openvino"],
    typer.Option("--backend", case_sensitive=False, rich_help_panel=PANEL_DEVICE,
                 help=f"auto: ONNX Runtime. openvino: OpenVINO's CPU runtime ({escape(pip_install('openvino'))}). "
                      "The runtime that runs is printed."),
]
MaxMemoryOpt = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option("--max-memory", rich_help_panel=PANEL_TILING,
                 show_default="CPU: half the free memory, at most 1.2G; CUDA: half the card's free memory",
                 help="Memory for one image (or video frame), e.g. 1.5G; larger ones run in exact tiles."),
]
BatchSizeOpt = Annotated[
    Optional[int],  # noqa: UP045
    typer.Option("--batch-size", min=1, rich_help_panel=PANEL_DEVICE, show_default="4 on CUDA, 1 on CPU",
                 help="Images (or video frames) per model run."),
]


@contextlib.contextmanager
def warnings_as_messages(quiet: bool) -> Iterator[None]:
    """Python warnings raised while a command runs (a model's fallback notes: a fixed input size,
    blend tiles instead of exact ones) as the command's own ``warning:`` lines, each once; none with
    -q. Without this they came out as Python prints them (``translator.py:99: UserWarning: ...``),
    -q or not."""
    import warnings

    shown: set[str] = set()

    def show(message: Warning | str, *_: object, **__: object) -> None:
        text = str(message)
        if not quiet and text not in shown:
            shown.add(text)
            print_warning(text)

    with warnings.catch_warnings():
        # UserWarnings (the notes, and image libraries' own) each reach show(), which says it once; the
        # other categories keep Python's filters (a library's DeprecationWarning stays hidden)
        warnings.simplefilter("always", UserWarning)
        warnings.showwarning = show
        yield


_EMPTY_PATH = ("is empty (an unset shell variable?); an empty path would mean the current folder, so give the "
               "path itself")


def expand_home(value: Any) -> Any:
    """A str path option's leading ``~`` (quoted, so the shell left it): the home folder, as for inputs.
    An empty one is refused (see :func:`path_option`)."""
    if value is None:
        return None
    if isinstance(value, str) and not value.strip():
        raise typer.BadParameter(_EMPTY_PATH)
    return Path(os.path.expanduser(value)) if isinstance(value, Path) else os.path.expanduser(value)


def path_option(text: str) -> Path:
    """The parser of every Path-typed path argument and option (``parser=path_option``), which sees
    the text as typed, before ``Path`` turns "" into "." and drops a trailing "/": a leading ``~`` is
    the home folder; an empty path is refused (``--out "$DST"`` with DST unset wrote the results among
    the current folder's files); so is a name ending in "/" (a folder) with an image or video suffix
    that is not an existing folder, which would otherwise be written as one file of that name."""
    if not text.strip():
        raise typer.BadParameter(_EMPTY_PATH)
    path = Path(os.path.expanduser(text))
    if text.endswith(("/", os.sep)) and not path.is_dir():
        from imgxlate.imaging.formats import _SUFFIX_TO_PIL
        from imgxlate.inputs import VIDEO_SUFFIXES

        if path.suffix.lower() in _SUFFIX_TO_PIL or path.suffix.lower() in VIDEO_SUFFIXES:
            raise typer.BadParameter(
                f"{text!r} ends with '/', a folder, but is named like a {path.suffix.lower()} file, which is how "
                "it would be read; make the folder first, or give it a name without that suffix")
    return path


def examples(*lines: str) -> str:
    """A help epilog: ``Examples`` and one command per line (kept as lines by rich)."""
    return "[bold]Examples[/]\n\n" + "\n\n".join(f"  {line}" for line in lines)


def print_error(err: BaseException | str, console: Console | None = None) -> None:
    """``error: <message>`` in red on stderr, without a traceback; one line, whatever names it holds
    (:func:`one_line`)."""
    (console or stderr).print(f"[bold red]error:[/] {escape(one_line(err))}")


def print_warning(message: str, console: Console | None = None) -> None:
    (console or stderr).print(f"[yellow]warning:[/] {escape(one_line(message))}")


def one_line(text: object) -> str:
    """``text`` for a line of output: characters that would break or fake a line (a newline or a
    carriage return in a file name, other control characters, the undecodable bytes of a non-UTF-8
    name) shown as escapes (``\\n``, ``\\udcff``); everything else as it is."""
    s = str(text)
    if s.isprintable():
        return s
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in s)


def emit_json(doc: Any) -> None:
    """One JSON document on stdout (the only thing a command writes there with --json)."""
    write_stdout(json.dumps(doc, indent=2) + "\n")


def write_stdout(text: str) -> None:
    """A command's results on stdout. Standard output that cannot take them (a full disk, a closed
    pipe) is one error line naming standard output and exit 1, not a traceback or advice about the
    output folder; what the command did is on stderr too."""
    import imgxlate.cli

    imgxlate.cli._JSON_ERROR = False  # one JSON document: a late Ctrl-C must not add an error object
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except OSError as exc:
        with contextlib.suppress(OSError):  # nothing more goes to that stdout, not even at exit
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        print_error(f"cannot write the results to standard output ({exc.strerror or exc}); send them where "
                    "they can be written")
        raise typer.Exit(1) from None


def json_error(message: str, kind: str, exit_code: int) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "exit_code": exit_code}}


def exit_interrupted(message: str, exit_code: int, as_json: bool, *, speak: bool = True) -> NoReturn:
    """End a command a stop signal cut short: ``message`` (what is kept, what not) on stderr unless
    ``speak`` is False, with ``--json`` also the JSON error object of type "Interrupted", then exit."""
    if speak:
        stderr.print(f"[yellow]{escape(message)}[/]")
    if as_json:
        emit_json(json_error(message, "Interrupted", exit_code))
    raise typer.Exit(exit_code)


@contextlib.contextmanager
def handle_errors(as_json: bool = False) -> Iterator[None]:
    """Turn an ImgxlateError into its message on stderr and ``typer.Exit(err.exit_code)``; with
    ``as_json``, also a JSON error object on stdout, so a script reading stdout always gets JSON. An
    OSError no code below turned into one (a file system that refuses where nothing expected it) is
    shown the same way, with the file and what the error means, exit 1, instead of a traceback."""
    try:
        yield
    except ImgxlateError as err:
        print_error(err)
        if as_json:
            emit_json(json_error(str(err), type(err).__name__, err.exit_code))
        raise typer.Exit(err.exit_code) from None
    except OSError as err:
        from imgxlate.batch import failure_reason

        message = failure_reason(err)
        print_error(message)
        if as_json:
            emit_json(json_error(message, type(err).__name__, 1))
        raise typer.Exit(1) from None


def load_translator(spec: ModelSpec, *, quiet: bool = False) -> Translator:
    """Load the model for a command; print its notes and the provider line on stderr (nothing when
    quiet: -q prints errors only). Raises ImgxlateError (use inside ``handle_errors()``)."""
    import warnings

    with warnings.catch_warnings(), defer_stop():
        warnings.simplefilter("ignore")  # the same notes are printed below
        translator = spec.load()
    if quiet:
        return translator
    for note in translator.notes:
        if note.kind == "direction":  # which way the pair runs: information, not a problem
            stderr.print(f"note: {escape(note.text)}")
        else:
            print_warning(note.text)
    stderr.print(escape(translator.engine.describe()))
    return translator


@dataclass
class Stop:
    """Which stop signal a command received (set by :func:`stop_signals`; None: none). ``deferring``:
    inside :func:`defer_stop` blocks (the signal is held until they end); ``held``: one came then."""

    signum: int | None = None
    deferring: int = 0
    held: bool = False

    @property
    def exit_code(self) -> int:
        """128 + the signal, as a shell reports a process ended by it: 130 for Ctrl-C, 143 for SIGTERM."""
        return 128 + (self.signum or signal.SIGINT)


@contextlib.contextmanager
def stop_signals(message: str = "finishing files being written", *, speak: bool = True) -> Iterator[Stop]:
    """Ctrl-C (SIGINT) and SIGTERM (a job scheduler's time limit, ``docker stop``, ``kill``) stop a
    command the same clean way: the first raises KeyboardInterrupt in the main thread (the command
    finishes what it was writing, reports, exits with :attr:`Stop.exit_code`); a second exits at once.
    ``message`` says what happens now; the line names the signal. It is said once: not by processes
    forked while the block is held (a data loader's workers get the terminal's Ctrl-C too), nor when
    ``speak`` is False (the other ranks of a distributed run)."""
    stop = Stop()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    owner = os.getpid()

    def handler(signum: int, frame: Any) -> None:
        if stop.signum is None:
            stop.signum = signum
            name = "interrupted" if signum == signal.SIGINT else f"stopped by {signal.Signals(signum).name}"
            again = "Ctrl-C" if signum == signal.SIGINT else "the signal"
            if speak and os.getpid() == owner:
                stderr.print(f"[yellow]{escape(f'{name}: {message} ({again} again to stop at once)')}[/]")
            if stop.deferring:
                stop.held = True  # raised when the defer_stop block ends
                return
            raise KeyboardInterrupt
        os._exit(128 + signum)

    # A signal this process inherited as ignored stays ignored (`cmd &` in a shell ignores SIGINT, nohup
    # SIGHUP): the shell asked for that.
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)
                if signal.getsignal(sig) is not signal.SIG_IGN}
    _active.append(stop)
    try:
        yield stop
    finally:
        _active.remove(stop)
        for sig, old in previous.items():
            signal.signal(sig, old)


_active: list[Stop] = []  # the Stop of the running command's stop_signals block, for defer_stop


def preload_runtimes(modules: tuple[str, ...] = ("onnx", "onnxruntime")) -> None:
    """Import ``modules`` (onnx and onnxruntime) now (call it inside :func:`defer_stop`), so that no
    later lazy import of them can be cut by a stop signal. A missing one is reported where it is needed."""
    import importlib

    for name in modules:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)


@contextlib.contextmanager
def defer_stop() -> Iterator[Stop | None]:
    """Hold a stop signal until the block ends, then raise the KeyboardInterrupt (a second signal
    still exits at once). For loading a model: it imports native extensions (onnx, onnxruntime), and
    a KeyboardInterrupt raised from Python code their module initialisation calls aborts the process
    (measured: 3 of 360 Ctrl-Cs at 0.35 s after start ended in SIGABRT / SIGSEGV inside ``import
    onnx``, ``terminate called after throwing an instance of 'nanobind::python_error'``).
    Yields the command's :class:`Stop` (None outside :func:`stop_signals`): code inside the block can
    see a stop being held (its ``signum``), as a distributed training run does to stop its ranks together."""
    stop = _active[-1] if _active else None
    if stop is None:
        yield None
        return
    stop.deferring += 1
    try:
        yield stop
    finally:
        stop.deferring -= 1
    if stop.deferring == 0 and stop.held:
        stop.held = False
        raise KeyboardInterrupt


# Where stderr is not a terminal (a log file, nohup, a scheduler's job), a line per task this often.
LOG_EVERY_S = 10.0


def progress_bar(quiet: bool, rate_prefix: str = "", log_every: float = LOG_EVERY_S) -> Any:
    """The rich progress bar of every command, on stderr: description, bar, count, rate, ETA.
    Tasks must carry a ``rate`` field (a preformatted string). Where stderr is not a terminal the bar
    is not drawn (rich draws nothing there until the end), so each task prints a plain line instead,
    ``converting 120/2000 (6%) 4.10 img/s``, every ``log_every`` seconds and when it completes (in
    place of the bar rich would print there at the end): a job writing to a log shows it is alive."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class LoggedProgress(Progress):
        def __init__(self, *columns: Any, **kwargs: Any) -> None:
            super().__init__(*columns, **kwargs)
            self.lines = not quiet and not self.console.is_terminal
            self._said: dict[Any, tuple[float, float]] = {}  # task -> (when, completed) last printed

        def update(self, task_id: Any, **kwargs: Any) -> None:
            super().update(task_id, **kwargs)
            self._log(task_id)

        def advance(self, task_id: Any, advance: float = 1) -> None:
            super().advance(task_id, advance)
            self._log(task_id)

        def stop(self) -> None:
            if self.lines:  # every task's last state, unless that is what was printed last, or nothing
                for task_id, task in list(self._tasks.items()):  # ("clip.mp4 0" after a video's error)
                    said = self._said.get(task_id)
                    if said is None and not task.completed:
                        continue
                    if (said or (0.0, -1.0))[1] != task.completed:
                        self._line(task_id)
            super().stop()

        def _log(self, task_id: Any) -> None:
            if not self.lines or task_id not in self._tasks:
                return
            now = time.monotonic()
            when, _ = self._said.setdefault(task_id, (now, -1.0))  # the first line after log_every
            if now - when >= log_every:
                self._line(task_id)

        def _line(self, task_id: Any) -> None:
            task = self._tasks[task_id]
            self._said[task_id] = (time.monotonic(), task.completed)
            count = f"{task.completed:.0f}" + (f"/{task.total:.0f} ({100 * task.completed / max(task.total, 1):.0f}%)"
                                               if task.total else "")
            rate = str(task.fields.get("rate", ""))
            line = Text.from_markup(task.description)  # the description is markup (names escaped)
            line.append(f" {count}{' ' + rate_prefix + rate if rate else ''}")
            self.console.print(line, highlight=False)

    return LoggedProgress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(rate_prefix + "{task.fields[rate]}"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=stderr,
        disable=quiet or not stderr.is_terminal,  # off a terminal the plain lines above say it all
    )
