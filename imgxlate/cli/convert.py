"""``imgxlate convert``: translate image files and folders into an output folder.
"""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer
from rich.markup import escape

if TYPE_CHECKING:  # pragma: no cover
    from imgxlate.batch import FileResult
from imgxlate.cli.common import (
    PANEL_DEVICE,
    PANEL_INPUT,
    PANEL_OUTPUT,
    BackendOpt,
    BatchSizeOpt,
    DeviceOpt,
    DirectionOpt,
    ExcludeOpt,
    FormatOpt,
    IncludeOpt,
    JsonOpt,
    MaxMemoryOpt,
    MaxPixelsOpt,
    ModelOpt,
    OverwriteOpt,
    QualityOpt,
    QuietOpt,
    RecursiveOpt,
    ThreadsOpt,
    TileOpt,
    TileOverlapOpt,
    TilingOpt,
    ToOpt,
    defer_stop,
    emit_json,
    handle_errors,
    load_translator,
    one_line,
    path_option,
    print_warning,
    progress_bar,
    stderr,
    stop_signals,
    warnings_as_messages,
    write_stdout,
)
from imgxlate.extras import pip_install
from imgxlate.inputs import SKIP_KEPT
from imgxlate.tiling.auto import parse_memory


class TileProgress:
    """Progress inside one image (its ``unit``: the tiles of a tiled image, the frames of an
    animation): a second bar on a terminal, else a line every few seconds."""

    def __init__(self, progress: Any, quiet: bool, every: float = 5.0, unit: str = "tiles") -> None:
        self.progress, self.quiet, self.every, self.unit = progress, quiet, every, unit
        self.task: Any = None
        self.last = 0.0

    def __call__(self, done: int, total: int) -> None:
        if self.quiet:
            return
        if self.progress.console.is_terminal:
            if self.task is None:
                self.task = self.progress.add_task(f"  {self.unit}", total=total, rate="")
            self.progress.update(self.task, completed=done, total=total)
            if done >= total:
                self.progress.remove_task(self.task)
                self.task = None
            return
        now = time.monotonic()
        if done >= total or now - self.last >= self.every:
            self.last = now
            self.progress.console.print(f"  {self.unit} {done}/{total} ({100 * done // max(total, 1)}%)")


def convert(
    inputs: Annotated[list[str], typer.Argument(help="Image files, folders (recursive) or glob patterns.")],
    out: Annotated[str, typer.Option("--out", "-o", rich_help_panel=PANEL_OUTPUT, parser=_out_option,
                                     help="Output folder (input trees are mirrored under it); for one input "
                                          "file, an image file name (x.png) writes that file; with --ray, "
                                          "an object-store URL (s3://bucket/out).")],
    model: ModelOpt = None,
    to: ToOpt = None,
    direction: DirectionOpt = None,
    device: DeviceOpt = "auto",
    threads: ThreadsOpt = 0,
    backend: BackendOpt = "auto",
    fmt: FormatOpt = "same",
    quality: QualityOpt = None,
    overwrite: OverwriteOpt = False,
    include: IncludeOpt = None,
    exclude: ExcludeOpt = None,
    recursive: RecursiveOpt = True,
    max_pixels: MaxPixelsOpt = None,
    tile: TileOpt = None,
    tile_overlap: TileOverlapOpt = 32,
    tiling: TilingOpt = "exact",
    max_memory: MaxMemoryOpt = None,
    batch_size: BatchSizeOpt = None,
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", rich_help_panel=PANEL_INPUT,
                     help="List what would be converted, where, and why anything is skipped; convert nothing "
                          "(no model is loaded)."),
    ] = False,
    ray: Annotated[bool, typer.Option("--ray", rich_help_panel=PANEL_DEVICE,
                                      help=f"Run on Ray Data ({escape(pip_install('ray'))}): a local Ray instance "
                                           "for this command, or the cluster of --ray-address.")] = False,
    ray_address: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--ray-address", envvar="RAY_ADDRESS", rich_help_panel=PANEL_DEVICE, show_default="none",
                     help="Join a Ray cluster: 'auto' (the one this machine belongs to), host:port or "
                          "ray://host:port. Implies --ray."),
    ] = None,
) -> None:
    """Translate images into --out, mirroring folders; existing outputs are skipped (reruns resume)."""
    from imgxlate.batch import FileResult, plan_conversion, run_plans
    from imgxlate.errors import DiskFullError
    from imgxlate.options import ImageOptions, ModelSpec

    interrupted = False
    stopped: str | None = None
    results: list[FileResult] = []
    unloaded = None  # the model of a run with nothing to convert (resolved, never loaded)
    plans: Any = ()  # planned below; a Ctrl-C can come before that
    translator = None
    run = None
    report = None
    t0 = time.perf_counter()
    with stop_signals() as stop, handle_errors(as_json), warnings_as_messages(quiet), \
            contextlib.ExitStack() as ray_stdout:
        try:
            # every way of converting below takes these two, made (and checked) once
            spec = ModelSpec(model=model, to=to, direction=direction, device=device, threads=threads, backend=backend,
                             max_memory=parse_memory(max_memory) if max_memory else None)
            options = ImageOptions(fmt=fmt, quality=quality, max_pixels=max_pixels, tile=tile,
                                   tile_overlap=tile_overlap, tiling=tiling)
            if quality is not None and options.fmt in ("png", "tiff") and not quiet:
                print_warning(f"--quality is for JPEG and WebP; {options.fmt.upper()} files are written "
                              "losslessly, so it is not used")
            walk = {"fmt": options.fmt, "overwrite": overwrite, "include": include or (), "exclude": exclude or (),
                    "recursive": recursive}
            if not (ray or ray_address):
                _refuse_urls(inputs, out)
            if dry_run:
                if ray or ray_address:  # the plan the run would make: URLs are planned by Ray's planner
                    from imgxlate.distributed import plan_jobs

                    plans = plan_jobs(inputs, out, **walk)
                else:
                    plans = plan_conversion(inputs, out, **walk)
                _print_dry_run(plans, as_json)
                raise typer.Exit(1 if any(p.status == "failed" for p in plans) else 0)
            if ray or ray_address:
                from imgxlate.distributed import RunReport, plan_jobs, run_jobs

                # Ray prints raylet messages ("task submit failed", ...) on stdout whatever log_to_driver
                # says; stdout is for this command's results (--json), so they go to stderr until the
                # run is over (before an error or the summary is written)
                ray_stdout.enter_context(contextlib.redirect_stdout(sys.stderr))
                plans = plan_jobs(inputs, out, **walk)
                if any(p.status == "pending" for p in plans):
                    _check_out(out)
                report = RunReport()
                t0 = time.perf_counter()
                it = run_jobs(plans, spec=spec, options=options, address=ray_address, quiet=quiet or as_json,
                              report=report, hold_stops=defer_stop)
            else:
                plans = plan_conversion(inputs, out, **walk)
                _warn_unused_quality(plans, quality, options.fmt, quiet)
                if any(p.status == "pending" for p in plans):
                    _check_out(out)  # before the model loads and every image is translated in vain
                    translator = load_translator(spec, quiet=quiet)
                    t0 = time.perf_counter()
                    it = run = run_plans(plans, translator=translator, options=options, batch_size=batch_size)
                else:  # a rerun with every output there: no model to load (seconds, more on a GPU)
                    from imgxlate.registry import resolve_model

                    # the options are still checked against the model (its metadata only)
                    unloaded = resolve_model(spec.model, to=spec.to, direction=spec.direction).file
                    options.check_model(max(1, int(unloaded.metadata.size_multiple)))
                    it = (FileResult(p.src, p.dst, p.status, p.reason) for p in plans)
            try:
                # Ray Data shows its own progress for a --ray run
                # progress goes to stderr, --json to stdout: a long run with --json is not silent
                with progress_bar(quiet or report is not None) as progress:
                    task = progress.add_task("converting", total=len(plans), rate="")
                    if translator is not None:
                        translator.tile_progress = TileProgress(progress, quiet)
                        translator.frame_progress = TileProgress(progress, quiet, unit="frames")
                    converted = 0
                    for r in it:
                        if run is None:  # a local run records its own results (run.results)
                            results.append(r)
                        if r.status == "converted":
                            converted += 1
                            if not quiet:  # said as it happens, like a failure (not after the summary)
                                for note in r.notes:
                                    if note.kind in ("partial", "image"):
                                        print_warning(f"{r.src}: {note.text}", progress.console)
                        elif r.status == "failed":
                            progress.console.print(
                                f"[red]failed:[/] {escape(one_line(r.src))}: {escape(one_line(r.reason))}"
                            )
                        elif r.dst == Path() and not quiet:  # found by the walk, not read (FIFO, loop, ...)
                            progress.console.print(
                                f"[yellow]skipped:[/] {escape(one_line(r.src))}: {escape(one_line(r.reason))}"
                            )
                        elapsed = max(time.perf_counter() - t0, 1e-9)
                        progress.update(task, advance=1, rate=f"{converted / elapsed:.2f} img/s")
            except DiskFullError as err:
                stopped = str(err)
                if report is not None:  # Ray write tasks in flight may have finished files too
                    from imgxlate.distributed import written_unreported

                    results.extend(written_unreported(plans, report))
            finally:
                it.close()
        except KeyboardInterrupt:
            interrupted = True
            if report is not None:  # Ray write tasks may have finished files the driver never heard of
                from imgxlate.distributed import written_unreported

                results.extend(written_unreported(plans, report))
    if run is not None:
        results = run.results  # every result, also those of writes that finished after a stop
    elapsed = time.perf_counter() - t0
    provider = translator.runtime if translator is not None else ""
    counts = {s: sum(r.status == s for r in results) for s in ("converted", "skipped", "failed")}
    if run is not None:
        not_started = run.not_started
    elif report is not None:  # on Ray: the jobs never reported when a stop ended the run
        not_started = len(plans) - len(results) if stopped or interrupted else 0
    else:  # stopped while planning or loading the model: every pending file
        not_started = sum(p.status == "pending" for p in plans) if interrupted else 0
    rate = counts["converted"] / elapsed if elapsed > 0 else 0.0
    if report is not None:  # on Ray: the providers the actors ran on; the cluster in "ray"
        provider = ", ".join(sorted(report.providers))
    videos = [f.path for f in getattr(plans, "ignored", []) if f.video]  # a local walk's; Ray plans have none
    if as_json:
        summary = {
            "results": [{**r.to_dict(), "seconds": round(r.seconds, 3)} for r in results],
            "videos_left_out": [str(p) for p in videos],
            "totals": {**counts, "seconds": round(elapsed, 3), "images_per_second": round(rate, 3),
                       "interrupted": interrupted, "stopped": stopped, "not_started": not_started},
            "provider": provider,
            "notes": [{"kind": n.kind, "text": n.text} for n in translator.notes] if translator is not None else [],
            "model": str(translator.model_path) if translator is not None
            else str(unloaded.path) if unloaded is not None
            else report.model if report is not None and report.model else (str(model) if model else None),
            **({"ray": report.to_dict()} if report is not None else {}),
        }
        emit_json(summary)
    if stopped:
        stderr.print(f"[bold red]error:[/] {escape(stopped)}")
        if not_started:
            again = ("run the command again without --overwrite once there is room (with it, the finished "
                     "files would be made again)" if overwrite else
                     "run the same command again once there is room (the finished files are kept and skipped)")
            stderr.print(f"stopped: {not_started} file(s) not converted; {again}")
    if not quiet or interrupted:
        stderr.print(
            f"{'interrupted: ' if interrupted else ''}converted {counts['converted']}, skipped "
            f"{counts['skipped']}, failed {counts['failed']} in {elapsed:.1f} s"
            + (": nothing to convert, no model loaded" if unloaded is not None else
               f" ({rate:.2f} images/s) on {report.describe() if report is not None else provider or 'no provider'}")
        )
        if interrupted and not_started:
            # (not started, or cut short: the image being translated when the stop came counts here)
            stderr.print(f"{not_started} file(s) not converted; run the same command again to convert them "
                         "(finished files are skipped)")
        # the skips the hint is about: existing outputs (not what the walk left out: FIFOs, loops, ...)
        existing = sum(r.status == "skipped" and r.dst != Path() and r.reason != SKIP_KEPT for r in results)
        kept = sum(r.status == "skipped" and r.reason == SKIP_KEPT for r in results)
        if existing and not overwrite:
            stderr.print(f"{existing} skipped (existing outputs are kept; pass --overwrite to redo them)")
        if kept:
            stderr.print(f"{kept} skipped (existing outputs inside an input folder are kept, also with --overwrite; "
                         "delete them to redo them)")
        if videos:
            shown = ", ".join(escape(one_line(p)) for p in videos[:3]) + (", ..." if len(videos) > 3 else "")
            stderr.print(f"left out {len(videos)} video(s) ({shown}); convert them with `imgxlate video`")
    if interrupted:
        raise typer.Exit(stop.exit_code)
    if counts["failed"] or stopped:
        raise typer.Exit(1)


def _warn_unused_quality(plans: Any, quality: int | None, fmt: str, quiet: bool) -> None:
    """--quality with --format same where no output is a JPEG or WebP (a folder of PNGs): say it is not
    used, as for --format png."""
    if quality is None or fmt != "same" or quiet:
        return
    from imgxlate.imaging.formats import _SUFFIX_TO_PIL

    suffixes = {p.dst.suffix.lower() for p in plans if p.status == "pending"}
    if suffixes and not any(_SUFFIX_TO_PIL.get(x) in ("JPEG", "WEBP") for x in suffixes):
        print_warning(f"--quality is for JPEG and WebP; these outputs ({', '.join(sorted(suffixes))}) are written "
                      "losslessly, so it is not used")


def _out_option(text: str) -> str:
    """--out as typed: an object-store URL stays text (as a ``Path`` "s3://bucket/out" became the local
    folder "s3:/bucket/out"); anything else is read as every path option is (:func:`path_option`)."""
    from imgxlate.distributed.storage import is_url

    return text if is_url(text) else str(path_option(text))


def _refuse_urls(inputs: list[str], out: str) -> None:
    """A URL without --ray: only a Ray run reads and writes object stores (a local run said the input
    "does not exist", and wrote an output URL as a local folder)."""
    from imgxlate.distributed.storage import is_url
    from imgxlate.errors import UsageError

    url = next((t for t in [*inputs, out] if is_url(t)), None)
    if url is not None:
        raise UsageError(f"{url} is a URL: object stores are read and written by a Ray run; add --ray (or "
                         "--ray-address), or give a local path")


def _check_out(out: str | Path) -> None:
    """Refuse an output folder nothing can be written into (read-only, no permission, a file in the
    way), once, before any work (:func:`imgxlate._atomic.folder_write_problem`; nothing is created)."""
    from imgxlate._atomic import folder_write_problem
    from imgxlate.distributed.storage import is_url
    from imgxlate.errors import UsageError
    from imgxlate.inputs import image_file_name

    if is_url(out):
        return
    folder = Path(out).parent if image_file_name(out) else Path(out)
    why = folder_write_problem(folder)
    if why:
        raise UsageError(f"cannot write into the output folder {str(folder)!r}: {why}")


def _print_dry_run(plans: Any, as_json: bool) -> None:
    """--dry-run: what would be converted and where, and why anything else is not (stdout)."""
    rows = [  # (a Ray plan's Job holds its paths as text: "." is no output)
        {"src": str(p.src), "dst": str(p.dst) if str(p.dst) not in ("", ".") else None,
         "action": "convert" if p.status == "pending" else p.status, "reason": p.reason}
        for p in plans
    ]
    rows += [{"src": str(f.path), "dst": None, "action": "ignored", "reason": f.reason}
             for f in getattr(plans, "ignored", [])]
    if as_json:
        emit_json(rows)
        return
    lines = [  # one line per file, whatever its name holds
        f"convert\t{one_line(row['src'])}\t-> {one_line(row['dst'])}\n" if row["action"] == "convert"
        else f"{row['action']}\t{one_line(row['src'])}\t{one_line(row['reason'])}\n"
        for row in rows
    ]
    write_stdout("".join(lines))
    counts = {a: sum(r["action"] == a for r in rows) for a in ("convert", "skipped", "failed", "ignored")}
    stderr.print(
        f"dry run: would convert {counts['convert']}; skipped {counts['skipped']}, failed {counts['failed']}, "
        f"ignored {counts['ignored']} (nothing was written; files are not decoded, so a damaged one fails only "
        "when it is converted)"
    )
