"""``imgxlate convert``: translate image files and folders into an output folder.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer
from rich.markup import escape

if TYPE_CHECKING:  # pragma: no cover
    from imgxlate.batch import FileResult
from imgxlate.cli.common import (
    DeviceOpt,
    DirectionOpt,
    ModelOpt,
    QuietOpt,
    ThreadsOpt,
    ToOpt,
    handle_errors,
    load_translator,
    progress_bar,
    sigint_guard,
    stderr,
)


def convert(
    inputs: Annotated[list[str], typer.Argument(help="Image files, folders (recursive) or glob patterns.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder (input trees are mirrored under it); for one input file, an image file name "
                                    "(x.png) writes that file.")],
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
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="List what would be converted, where, and why anything is skipped; "
                                       "convert nothing (no model is loaded)."),
    ] = False,
) -> None:
    """Translate images into --out, mirroring folders; existing outputs are skipped (reruns resume)."""
    from imgxlate.batch import plan_conversion, run_plans
    from imgxlate.errors import DiskFullError

    interrupted = False
    stopped: str | None = None
    results: list[FileResult] = []
    translator = None
    run = None
    t0 = time.perf_counter()
    with sigint_guard(), handle_errors():
        try:
            plans = plan_conversion(
                inputs, out, fmt=fmt, overwrite=overwrite, include=include or (), exclude=exclude or (),
                recursive=recursive,
            )
            if dry_run:
                _print_dry_run(plans, as_json)
                raise typer.Exit(1 if any(p.status == "failed" for p in plans) else 0)
            translator = load_translator(model, to, direction, device, threads, quiet=quiet or as_json)
            t0 = time.perf_counter()
            run = run_plans(
                plans, translator=translator, fmt=fmt, quality=quality, max_pixels=max_pixels, tile=tile,
                tile_overlap=tile_overlap, tiling=tiling, batch_size=batch_size,
            )
            try:
                with progress_bar(quiet or as_json) as progress:
                    task = progress.add_task("converting", total=len(plans), rate="")
                    converted = 0
                    for r in run:
                        if r.status == "converted":
                            converted += 1
                        elif r.status == "failed":
                            progress.console.print(
                                f"[red]failed:[/] {escape(str(r.src))}: {escape(r.reason)}"
                            )
                        elif r.dst == Path() and not quiet:  # found by the walk, not read (FIFO, loop, ...)
                            progress.console.print(f"[yellow]skipped:[/] {escape(str(r.src))}: {escape(r.reason)}")
                        elapsed = max(time.perf_counter() - t0, 1e-9)
                        progress.update(task, advance=1, rate=f"{converted / elapsed:.2f} img/s")
            except DiskFullError as err:
                stopped = str(err)
            finally:
                run.close()
        except KeyboardInterrupt:
            interrupted = True
    if run is not None:
        results = run.results  # every result, also those of writes that finished after a stop
    elapsed = time.perf_counter() - t0
    provider = translator.provider if translator is not None else ""
    counts = {s: sum(r.status == s for r in results) for s in ("converted", "skipped", "failed")}
    not_started = run.not_started if run is not None else 0
    rate = counts["converted"] / elapsed if elapsed > 0 else 0.0
    if as_json:
        summary = {
            "results": [r.to_dict() for r in results],
            "totals": {**counts, "seconds": round(elapsed, 3), "images_per_second": round(rate, 3),
                       "interrupted": interrupted, "stopped": stopped, "not_started": not_started},
            "provider": provider,
            "model": str(translator.model_path) if translator is not None else None,
        }
        sys.stdout.write(json.dumps(summary, indent=2) + "\n")
        sys.stdout.flush()
    if stopped:
        stderr.print(f"[bold red]error:[/] {escape(stopped)}")
        if not_started:
            stderr.print(f"stopped: {not_started} file(s) not started; run the same command again once there is room")
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
    if counts["failed"] or stopped:
        raise typer.Exit(1)


def _print_dry_run(plans: Any, as_json: bool) -> None:
    """--dry-run: what would be converted and where, and why anything else is not (stdout)."""
    rows = [
        {"src": str(p.src), "dst": str(p.dst) if p.dst != Path() else None,
         "action": "convert" if p.status == "pending" else p.status, "reason": p.reason}
        for p in plans
    ]
    rows += [{"src": str(f.path), "dst": None, "action": "ignored", "reason": f.reason}
             for f in getattr(plans, "ignored", [])]
    if as_json:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    for row in rows:
        if row["action"] == "convert":
            sys.stdout.write(f"convert\t{row['src']}\t-> {row['dst']}\n")
        else:
            sys.stdout.write(f"{row['action']}\t{row['src']}\t{row['reason']}\n")
    counts = {a: sum(r["action"] == a for r in rows) for a in ("convert", "skipped", "failed", "ignored")}
    stderr.print(
        f"dry run: would convert {counts['convert']}; skipped {counts['skipped']}, failed {counts['failed']}, "
        f"ignored {counts['ignored']} (nothing was written)"
    )
