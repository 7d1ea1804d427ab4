"""``imgxlate models``: list, inspect, install and remove models.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer
from rich.markup import escape

from imgxlate._units import file_size
from imgxlate.cli.common import (
    JsonOpt,
    QuietOpt,
    complete_model,
    defer_stop,
    emit_json,
    examples,
    exit_interrupted,
    handle_errors,
    preload_runtimes,
    print_warning,
    stderr,
    stdout,
    stop_signals,
)
from imgxlate.registry import DEFAULT_DOWNLOAD_DEADLINE, DOWNLOAD_DEADLINE_ENV

if TYPE_CHECKING:  # pragma: no cover
    from imgxlate.registry import ModelPair

models_app = typer.Typer(
    help="List, inspect, install and remove models.", invoke_without_command=True, no_args_is_help=False
)


def _pair_doc(p: ModelPair, default: str) -> dict[str, Any]:
    return {
        "name": p.name, "default": p.name == default, "domains": list(p.domains),
        "directions": {f.direction: f.label for f in p.files}, "bytes": p.size_bytes,
        "location": p.location, "path": str(p.path),
    }


def _list_models(as_json: bool) -> None:
    from rich.table import Table

    from imgxlate.registry import default_model_name, scan_models, user_models_dir

    default = default_model_name()
    pairs, broken = scan_models()
    if as_json:
        rows = [_pair_doc(p, default) for p in pairs]
        rows += [{"name": b.name, "default": b.name == default, "location": b.location, "path": str(b.path),
                  "broken": b.reason} for b in broken]
        emit_json(rows)
        return
    if not pairs and not broken:
        stdout.print(
            f"no models installed (user folder: {escape(str(user_models_dir()))}); install one with "
            "`imgxlate models add PATH|URL|hf://ORG/REPO` or pass --model PATH"
        )
        return
    rows = [
        (
            p.name + (" (default)" if p.name == default else ""),
            " <-> ".join(p.domains),
            ", ".join(f"{f.direction}: {f.label}" for f in p.files),
            file_size(p.size_bytes),
            f"{p.location}: {p.path}",
        )
        for p in pairs
    ]
    rows += [(b.name, "BROKEN", b.reason, "", f"{b.location}: {b.path}") for b in broken]
    if not stdout.is_terminal:  # piped: one tab-separated line per model, never wrapped
        for row in rows:
            sys.stdout.write("\t".join(row) + "\n")
    else:
        table = Table(title=None, show_lines=False)
        for col in ("name", "domains", "directions", "size", "location"):
            table.add_column(col, overflow="fold")
        for row in rows:
            style = "red" if row[1] == "BROKEN" else None
            table.add_row(*(escape(c) for c in row), style=style)
        stdout.print(table)
    for b in broken:
        print_warning(f"model {b.name} ({b.location}) cannot be used: {b.reason}; fix or remove it "
                      f"(`imgxlate models remove {b.name}`)")


def _json(ctx: typer.Context, as_json: bool) -> bool:
    """``--json`` of the sub-command, or given before it (``imgxlate models --json info NAME``, which
    ``--help`` of ``models`` offers): either way the answer is JSON."""
    return as_json or bool(ctx.parent is not None and ctx.parent.params.get("as_json"))


@models_app.callback()
def _models_root(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """List, inspect, install and remove models. With no sub-command: list every model (name, domains,
    directions, size, location; broken ones marked with the reason)."""
    if ctx.invoked_subcommand is None:
        with handle_errors(as_json):
            _list_models(as_json)


@models_app.command("list", epilog=examples("imgxlate models list --json"))
def models_list(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """List every model (the default marked, broken ones with the reason)."""
    as_json = _json(ctx, as_json)
    with handle_errors(as_json):
        _list_models(as_json)


def _info_doc(pair: ModelPair) -> dict[str, Any]:
    from imgxlate.registry import SOURCE_FILE

    source = None
    card = pair.path / SOURCE_FILE if pair.path.is_dir() else None
    if card is not None and card.is_file():
        try:
            source = json.loads(card.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            source = None
    return {
        "name": pair.name, "location": pair.location, "path": str(pair.path), "bytes": pair.size_bytes,
        "domains": list(pair.domains), "source": source,
        "files": [{"direction": f.direction, "translates": f.label, "path": str(f.path), "assumed": f.assumed,
                   "metadata": None if f.assumed else f.metadata.to_dict()} for f in pair.files],
    }


@models_app.command("info", epilog=examples(
    "imgxlate models info vangogh2photo", "imgxlate models info ./runs/p2v/model --json"))
def models_info(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Model name or path.", autocompletion=complete_model)],
    as_json: JsonOpt = False,
) -> None:
    """Show a model's metadata (and where it was installed from)."""
    from imgxlate.registry import find_pair, load_pair

    as_json = _json(ctx, as_json)
    with handle_errors(as_json):
        path = Path(name).expanduser()
        pair = load_pair(path) if path.exists() else find_pair(name)
        doc = _info_doc(pair)
    if as_json:
        emit_json(doc)
        return
    stdout.print(f"[bold]{escape(pair.name)}[/] ({pair.location}: {escape(str(pair.path))}, "
                 f"{file_size(pair.size_bytes)})")
    if doc["source"]:
        stdout.print(f"installed from: {escape(json.dumps(doc['source'], sort_keys=True))}")
    for f in pair.files:
        stdout.print(f"\n[bold]{f.direction}[/]: {escape(f.label)}  ({escape(str(f.path))})")
        if f.assumed:
            stdout.print("  no imgxlate metadata: assuming RGB NCHW in [-1, 1]")
            continue
        for key, value in f.metadata.to_dict().items():
            text = json.dumps(value, sort_keys=True) if isinstance(value, (dict, list, tuple)) else str(value)
            stdout.print(f"  {key}: {escape(text)}")


class _DownloadReport:
    """Download progress on stderr: a rich bar on a terminal, a plain line every 5 s otherwise."""

    def __init__(self, quiet: bool) -> None:
        from rich.progress import BarColumn, DownloadColumn, Progress, TimeElapsedColumn, TransferSpeedColumn

        self.quiet = quiet
        self.live = stderr.is_terminal and not quiet
        self.progress = Progress(
            "[progress.description]{task.description}", BarColumn(), DownloadColumn(), TransferSpeedColumn(),
            TimeElapsedColumn(), console=stderr, transient=True, disable=not self.live,
        )
        self.task: Any = None
        self.last = 0.0

    def __call__(self, done: int, total: int | None) -> None:
        if self.quiet:
            return
        if self.live:
            if self.task is None:
                self.task = self.progress.add_task("downloading", total=total)
            self.progress.update(self.task, completed=done, total=total)
            return
        now = time.monotonic()
        if done == 0 or now - self.last >= 5 or (total is not None and done >= total):
            self.last = now
            of = f" of {file_size(total)}" if total else ""
            stderr.print(f"downloading: {file_size(done)}{of}")


@models_app.command("add", epilog=examples(
    "imgxlate models add ./runs/p2v/model --name p2v",
    "imgxlate models add b2a.onnx --name p2v          # adds the missing direction into p2v",
    "imgxlate models add https://host/pair.zip --sha256 HEX",
    "imgxlate models add https://host/models/p2v/      # a2b.onnx, b2a.onnx, README.md",
    "imgxlate models add hf://ORG/REPO@REV --json",
    "imgxlate models add mine.onnx --name vangogh2photo --force   # hides the bundled model, says so"))
def models_add(
    ctx: typer.Context,
    source: Annotated[str, typer.Argument(
        help="A pair folder, a .onnx file, a .zip of either, an http(s) URL of any of those, a folder URL "
             "ending in / (its a2b.onnx, b2a.onnx and README.md are fetched), or hf://ORG/REPO[@REV] "
             "(needs the hub extra).")],
    name: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--name", show_default="the model's folder or pair name",
                     help="Install under this name."),
    ] = None,
    sha256: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--sha256", help="Expected SHA-256 of the file or zip, 64 hex digits (checked before "
                     "anything is downloaded for its form, after for its value)."),
    ] = None,
    force: Annotated[bool, typer.Option(
        "--force", help="Replace a user model of that name, or hide a bundled one (with a warning saying "
                        "what is hidden).")] = False,
    timeout: Annotated[float, typer.Option(
        "--timeout", min=1, envvar=DOWNLOAD_DEADLINE_ENV, help="Seconds the whole download may take.")]
    = DEFAULT_DOWNLOAD_DEADLINE,
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Check a model (it loads, and maps a small test image to one of the same size, finite, not
    constant) and install it in the user folder. A missing direction is added into an installed pair."""
    from imgxlate.registry import install_model

    as_json = _json(ctx, as_json)
    warnings: list[str] = []

    def warn(message: str) -> None:
        warnings.append(message)
        if not quiet:
            print_warning(message)

    in_place: list[Path] = []
    with handle_errors(as_json), stop_signals("stopping the install") as stop:
        try:
            with defer_stop():  # the probe below imports native extensions: see defer_stop
                preload_runtimes()
            report = _DownloadReport(quiet or as_json)
            with report.progress:
                pair = install_model(source, name=name, sha256=sha256, force=force, deadline=timeout,
                                     progress=None if quiet else report, warn=warn, installed=in_place.append)
        except KeyboardInterrupt:
            if not in_place:
                exit_interrupted("interrupted: nothing was installed", stop.exit_code, as_json)
            # the stop came after the model was in place: it is installed, and said so
            from imgxlate.registry.pairs import load_pair

            pair = load_pair(in_place[0], "user", in_place[0].name)
        with defer_stop():  # the result is said whole
            if as_json:
                emit_json({"installed": _info_doc(pair), "warnings": warnings})
            elif not quiet:
                stdout.print(
                    f"installed {escape(pair.name)} ({escape(', '.join(f.label for f in pair.files))}) at "
                    f"{escape(str(pair.path))}"
                )


@models_app.command("remove", epilog=examples("imgxlate models remove p2v"))
def models_remove(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="A user-installed model's name.", autocompletion=complete_model)],
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Delete a user-installed model (bundled models cannot be removed)."""
    from imgxlate.registry import remove_model

    as_json = _json(ctx, as_json)
    with handle_errors(as_json):
        path = remove_model(name)
    if as_json:
        emit_json({"removed": name, "path": str(path)})
    elif not quiet:
        stdout.print(f"removed {escape(name)} ({escape(str(path))})")
