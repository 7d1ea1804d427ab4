"""Shared helpers of the command modules (imported by every ``imgxlate.cli.*`` command):

- ``ModelOpt``, ``ToOpt``, ``DirectionOpt``, ``DeviceOpt``, ``ThreadsOpt``, ``QuietOpt``: the model /
  device options as ``Annotated`` types, so every command spells them the same way;
- ``load_translator(...)``: load a model, print its notes and the provider line on stderr;
- ``handle_errors()``: a context manager turning ImgxlateError into a message on stderr (no traceback)
  and its exit code; ``print_error(err)``; ``stderr`` (a rich Console on stderr);
- ``sigint_guard()`` and ``progress_bar()``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer
from rich.console import Console
from rich.markup import escape

from imgxlate.errors import ImgxlateError

if TYPE_CHECKING:  # pragma: no cover
    from imgxlate.translator import Translator


stderr = Console(stderr=True, highlight=False, soft_wrap=True)
stdout = Console(highlight=False, soft_wrap=True)


ModelOpt = Annotated[
    Optional[str],  # noqa: UP045 - typer needs Optional on 3.10
    typer.Option("--model", "-m", help="Model name (see `imgxlate models`) or path to a .onnx file / pair folder."),
]
ToOpt = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option("--to", "-t", help="Target domain, e.g. vangogh: picks the generator that produces it."),
]
DirectionOpt = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option("--direction", help="a2b or b2a within the pair (instead of --to)."),
]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto | cuda | cpu.")]
ThreadsOpt = Annotated[int, typer.Option("--threads", min=0, help="CPU threads (0 = physical cores).")]
BackendOpt = Annotated[str, typer.Option(
    "--backend", help="auto | onnxruntime | openvino (auto: OpenVINO on the CPU when installed).")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or summary (errors still shown).")]


def print_error(err: BaseException, console: Console | None = None) -> None:
    """``error: <message>`` in red on stderr, without a traceback."""
    (console or stderr).print(f"[bold red]error:[/] {escape(str(err))}")


def print_warning(message: str, console: Console | None = None) -> None:
    (console or stderr).print(f"[yellow]warning:[/] {escape(message)}")


@contextlib.contextmanager
def handle_errors() -> Iterator[None]:
    """Turn an ImgxlateError into its message on stderr and ``typer.Exit(err.exit_code)``."""
    try:
        yield
    except ImgxlateError as err:
        print_error(err)
        raise typer.Exit(err.exit_code) from None


def load_translator(
    model: str | None,
    to: str | None,
    direction: str | None,
    device: str = "auto",
    threads: int = 0,
    *,
    quiet: bool = False,
    backend: str = "auto",
) -> Translator:
    """Load the model for a command; print its notes (unless quiet) and the provider line on stderr.
    Raises ImgxlateError (use inside ``handle_errors()``)."""
    import warnings

    from imgxlate.translator import load_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the same notes are printed below
        translator = load_model(model, to=to, direction=direction, device=device, threads=threads, backend=backend)
    for note in translator.warnings:
        if note.startswith("translating "):  # which way the pair runs: information, not a problem
            if not quiet:
                stderr.print(f"note: {escape(note)}")
        elif not quiet or "no imgxlate metadata" in note:
            print_warning(note)
    stderr.print(escape(translator.engine.describe()))
    return translator


@contextlib.contextmanager
def sigint_guard(message: str = "interrupted: finishing files being written (Ctrl-C again to stop at once)") \
        -> Iterator[None]:
    """First Ctrl-C raises KeyboardInterrupt (the caller stops cleanly); a second one exits at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    count = 0

    def handler(signum: int, frame: Any) -> None:
        nonlocal count
        count += 1
        if count == 1:
            stderr.print(f"[yellow]{escape(message)}[/]")
            raise KeyboardInterrupt
        os._exit(130)

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def progress_bar(quiet: bool, rate_prefix: str = "") -> Any:
    """The rich progress bar of every command, on stderr: description, bar, count, rate, ETA.
    Tasks must carry a ``rate`` field (a preformatted string)."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(rate_prefix + "{task.fields[rate]}"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=stderr,
        disable=quiet,
    )
