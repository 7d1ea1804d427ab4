"""The ``imgxlate`` command line: ``convert``, ``models``, ``--version`` (and ``video`` from cli_video).

Shared helpers for other command modules (cli_video.py imports them):

- ``ModelOpt``, ``ToOpt``, ``DirectionOpt``, ``DeviceOpt``, ``ThreadsOpt``, ``QuietOpt``: the model /
  device options as ``Annotated`` types, so every command spells them the same way;
- ``load_translator(...)``: load a model, print its notes and the provider line on stderr;
- ``handle_errors()``: a context manager turning ImgxlateError into a message on stderr (no traceback)
  and its exit code; ``print_error(err)``; ``stderr`` (a rich Console on stderr).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer
from rich.console import Console
from rich.markup import escape

from imgxlate._version import __version__
from imgxlate.errors import ImgxlateError

if TYPE_CHECKING:  # pragma: no cover
    from imgxlate.pipeline import FileResult, Translator

stderr = Console(stderr=True, highlight=False, soft_wrap=True)
stdout = Console(highlight=False, soft_wrap=True)

app = typer.Typer(
    name="imgxlate",
    help="Translate images and videos between visual domains (photo -> Van Gogh, horse -> zebra).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
models_app = typer.Typer(
    help="List, inspect, install and remove models.", invoke_without_command=True, no_args_is_help=False
)
app.add_typer(models_app, name="models")

# ------------------------------------------------------------------------------------ shared options

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
) -> Translator:
    """Load the model for a command; print its notes (unless quiet) and the provider line on stderr.
    Raises ImgxlateError (use inside ``handle_errors()``)."""
    import warnings

    from imgxlate.pipeline import load_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the same notes are printed below
        translator = load_model(model, to=to, direction=direction, device=device, threads=threads)
    for note in translator.warnings:
        if note.startswith("translating "):  # which way the pair runs: information, not a problem
            if not quiet:
                stderr.print(f"note: {escape(note)}")
        elif not quiet or "no imgxlate metadata" in note:
            print_warning(note)
    stderr.print(escape(translator.engine.describe()))
    return translator


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"imgxlate {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version_callback, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """Translate images and videos between visual domains with CycleGAN generators."""


# ------------------------------------------------------------------------------------------- Ctrl-C


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


# ------------------------------------------------------------------------------------------ convert


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


@app.command()
def convert(
    inputs: Annotated[list[str], typer.Argument(help="Image files, folders (recursive) or glob patterns.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder (input trees are mirrored under it).")],
    to: ToOpt = None,
    direction: DirectionOpt = None,
    model: ModelOpt = None,
    device: DeviceOpt = "auto",
    threads: ThreadsOpt = 0,
    fmt: Annotated[str, typer.Option("--format", "-f", help="same | png | jpg | webp | tiff.")] = "same",
    quality: Annotated[int, typer.Option("--quality", min=1, max=100, help="JPEG / WebP quality.")] = 95,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing outputs.")] = False,
    include: Annotated[
        Optional[list[str]],  # noqa: UP045
        typer.Option("--include", help="Only files matching this glob (repeatable)."),
    ] = None,
    exclude: Annotated[
        Optional[list[str]],  # noqa: UP045
        typer.Option("--exclude", help="Skip files matching this glob (repeatable)."),
    ] = None,
    recursive: Annotated[bool, typer.Option("--recursive/--no-recursive", help="Walk sub-folders.")] = True,
    max_pixels: Annotated[
        Optional[int],  # noqa: UP045
        typer.Option("--max-pixels", min=1, help="Refuse images with more pixels than this."),
    ] = None,
    tile: Annotated[
        Optional[int],  # noqa: UP045
        typer.Option("--tile", min=0, help="Tile edge in pixels (0 = whole image; default: automatic)."),
    ] = None,
    tile_overlap: Annotated[int, typer.Option("--tile-overlap", min=0, help="Overlap for blend tiling.")] = 32,
    tiling: Annotated[str, typer.Option("--tiling", help="exact (same result as whole) | blend.")] = "exact",
    batch_size: Annotated[
        Optional[int],  # noqa: UP045
        typer.Option("--batch-size", min=1, help="Images per model run (default 4 on CUDA, 1 on CPU)."),
    ] = None,
    quiet: QuietOpt = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary on stdout.")] = False,
) -> None:
    """Translate images into --out, mirroring folders; existing outputs are skipped (reruns resume)."""
    from imgxlate.pipeline import plan_conversion, run_plans

    interrupted = False
    results: list[FileResult] = []
    translator = None
    t0 = time.perf_counter()
    with sigint_guard(), handle_errors():
        try:
            plans = plan_conversion(
                inputs, out, fmt=fmt, overwrite=overwrite, include=include or (), exclude=exclude or (),
                recursive=recursive,
            )
            translator = load_translator(model, to, direction, device, threads, quiet=quiet or as_json)
            t0 = time.perf_counter()
            it = run_plans(
                plans, translator=translator, fmt=fmt, quality=quality, max_pixels=max_pixels, tile=tile,
                tile_overlap=tile_overlap, tiling=tiling, batch_size=batch_size,
            )
            try:
                with progress_bar(quiet or as_json) as progress:
                    task = progress.add_task("converting", total=len(plans), rate="")
                    converted = 0
                    for r in it:
                        results.append(r)
                        if r.status == "converted":
                            converted += 1
                        elif r.status == "failed":
                            progress.console.print(
                                f"[red]failed:[/] {escape(str(r.src))}: {escape(r.reason)}"
                            )
                        elapsed = max(time.perf_counter() - t0, 1e-9)
                        progress.update(task, advance=1, rate=f"{converted / elapsed:.2f} img/s")
            finally:
                it.close()
        except KeyboardInterrupt:
            interrupted = True
    elapsed = time.perf_counter() - t0
    provider = translator.provider if translator is not None else ""
    counts = {s: sum(r.status == s for r in results) for s in ("converted", "skipped", "failed")}
    rate = counts["converted"] / elapsed if elapsed > 0 else 0.0
    if as_json:
        summary = {
            "results": [r.to_dict() for r in results],
            "totals": {**counts, "seconds": round(elapsed, 3), "images_per_second": round(rate, 3),
                       "interrupted": interrupted},
            "provider": provider,
            "model": str(translator.model_path) if translator is not None else None,
        }
        sys.stdout.write(json.dumps(summary, indent=2) + "\n")
        sys.stdout.flush()
    if not quiet or interrupted:
        stderr.print(
            f"{'interrupted: ' if interrupted else ''}converted {counts['converted']}, skipped "
            f"{counts['skipped']}, failed {counts['failed']} in {elapsed:.1f} s ({rate:.2f} images/s) on "
            f"{provider or 'no provider'}"
        )
        if counts["skipped"] and not overwrite:
            stderr.print(f"{counts['skipped']} skipped (existing outputs are kept; pass --overwrite to redo them)")
    if interrupted:
        raise typer.Exit(130)
    if counts["failed"]:
        raise typer.Exit(1)


# ------------------------------------------------------------------------------------------- models


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"  # pragma: no cover


def _list_models(as_json: bool) -> None:
    from rich.table import Table

    from imgxlate.registry import default_model_name, list_models, user_models_dir

    default = default_model_name()
    pairs = list_models()
    if as_json:
        rows = [
            {
                "name": p.name, "default": p.name == default, "domains": list(p.domains),
                "directions": {f.direction: f.label for f in p.files}, "bytes": p.size_bytes,
                "location": p.location, "path": str(p.path),
            }
            for p in pairs
        ]
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    if not pairs:
        stdout.print(
            f"no models installed (user folder: {escape(str(user_models_dir()))}); install one with "
            "`imgxlate models add PATH|URL` or pass --model PATH"
        )
        return
    rows = [
        (
            p.name + (" (default)" if p.name == default else ""),
            " <-> ".join(p.domains),
            ", ".join(f"{f.direction}: {f.label}" for f in p.files),
            _size(p.size_bytes),
            f"{p.location}: {p.path}",
        )
        for p in pairs
    ]
    if not stdout.is_terminal:  # piped: one tab-separated line per model, never wrapped
        for row in rows:
            sys.stdout.write("\t".join(row) + "\n")
        return
    table = Table(title=None, show_lines=False)
    for col in ("name", "domains", "directions", "size", "location"):
        table.add_column(col, overflow="fold")
    for row in rows:
        table.add_row(*(escape(c) for c in row))
    stdout.print(table)


@models_app.callback()
def _models_root(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable list.")] = False,
) -> None:
    """With no sub-command: list every model (name, domains, directions, size, location)."""
    if ctx.invoked_subcommand is None:
        with handle_errors():
            _list_models(as_json)


@models_app.command("list")
def models_list(as_json: Annotated[bool, typer.Option("--json", help="Machine-readable list.")] = False) -> None:
    """List every model (default marked)."""
    with handle_errors():
        _list_models(as_json)


@models_app.command("info")
def models_info(name: Annotated[str, typer.Argument(help="Model name or path.")]) -> None:
    """Show a model's metadata."""
    from imgxlate.registry import find_pair, load_pair

    with handle_errors():
        path = Path(name).expanduser()
        pair = load_pair(path) if path.exists() else find_pair(name)
        stdout.print(f"[bold]{escape(pair.name)}[/] ({pair.location}: {escape(str(pair.path))}, "
                     f"{_size(pair.size_bytes)})")
        for f in pair.files:
            stdout.print(f"\n[bold]{f.direction}[/]: {escape(f.label)}  ({escape(str(f.path))})")
            if f.assumed:
                stdout.print("  no imgxlate metadata: assuming RGB NCHW in [-1, 1]")
                continue
            for key, value in f.metadata.to_dict().items():
                text = json.dumps(value, sort_keys=True) if isinstance(value, (dict, list, tuple)) else str(value)
                stdout.print(f"  {key}: {escape(text)}")


@models_app.command("add")
def models_add(
    source: Annotated[str, typer.Argument(help="A pair folder, a .onnx file, or an http(s) URL of one.")],
    name: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--name", help="Install under this name (default: the model's pair name)."),
    ] = None,
    sha256: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--sha256", help="Expected SHA-256 of the file (checked before installing)."),
    ] = None,
) -> None:
    """Validate a model (loads in ONNX Runtime, runs a 16x16 image) and install it in the user folder."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    from imgxlate.registry import install_model

    with handle_errors(), sigint_guard("interrupted: nothing was installed"):
        try:
            with Progress(
                "[progress.description]{task.description}", BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                console=stderr, transient=True,
            ) as progress:
                task = None

                def report(done: int, total: int | None) -> None:
                    nonlocal task
                    if task is None:
                        task = progress.add_task("downloading", total=total)
                    progress.update(task, completed=done)

                pair = install_model(source, name=name, sha256=sha256, progress=report)
        except KeyboardInterrupt:
            raise typer.Exit(130) from None
    stdout.print(
        f"installed {escape(pair.name)} ({escape(', '.join(f.label for f in pair.files))}) at "
        f"{escape(str(pair.path))}"
    )


@models_app.command("remove")
def models_remove(name: Annotated[str, typer.Argument(help="A user-installed model's name.")]) -> None:
    """Delete a user-installed model."""
    from imgxlate.registry import remove_model

    with handle_errors():
        path = remove_model(name)
    stdout.print(f"removed {escape(name)} ({escape(str(path))})")


# ---------------------------------------------------------------------------------- other commands

if importlib.util.find_spec("imgxlate.cli_video") is not None:
    from imgxlate import cli_video

    cli_video.register(app)


def main() -> None:
    """Console entry point (``imgxlate`` and ``python -m imgxlate``)."""
    try:
        app(prog_name="imgxlate")
    except KeyboardInterrupt:  # Ctrl-C outside a command's own handling (e.g. while importing)
        stderr.print("interrupted")
        sys.exit(130)
