"""``imgxlate models``: list, inspect, install and remove models.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from imgxlate.cli.common import handle_errors, sigint_guard, stderr, stdout

models_app = typer.Typer(
    help="List, inspect, install and remove models.", invoke_without_command=True, no_args_is_help=False
)


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
