"""``imgxlate video``: translate video files (or folders of them) frame by frame.

Registered on the main app by :mod:`imgxlate.cli.app` through :func:`register`. The work is in
:mod:`imgxlate.video.convert`; this module only parses options, plans output names, shows progress and sets
the exit code (0 all done or skipped, 1 any video failed, 2 usage errors, 130 interrupted).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer
from rich.markup import escape

from imgxlate.cli.common import (
    DeviceOpt,
    DirectionOpt,
    ModelOpt,
    QuietOpt,
    ThreadsOpt,
    ToOpt,
    handle_errors,
    load_translator,
    print_error,
    print_warning,
    progress_bar,
    sigint_guard,
    stderr,
)
from imgxlate.errors import ImgxlateError, UsageError

if TYPE_CHECKING:  # pragma: no cover
    from imgxlate.video.convert import VideoResult


def plan_videos(
    inputs: list[Path], out: Path | None, target: str, frames_dir: Path | None, frames_only: bool
) -> list[tuple[Path, Path | None, Path | None]]:
    """(src, dst, frames_dir) for every video the inputs name.

    Folders are walked for video suffixes; files this command wrote before (``*.<target>.mp4``) and hidden
    files are skipped there. ``out``: None -> beside each input; a file name (single input only); else
    a folder that mirrors the input folders.
    """
    from imgxlate.inputs import collect_inputs
    from imgxlate.video.convert import _safe_domain, default_output
    from imgxlate.video.ffmpeg import OUTPUT_SUFFIXES
    from imgxlate.video.probe import VIDEO_SUFFIXES

    for p in inputs:
        if not p.exists() and not any(c in str(p) for c in "*?["):
            raise UsageError(f"input {p} does not exist; give video files or folders of videos")
    found = collect_inputs([str(p) for p in inputs], out_dir=out if out is not None and out.is_dir() else None,
                           suffixes=VIDEO_SUFFIXES)
    mark = f".{_safe_domain(target)}"
    files = [f for f in found if f.explicit or Path(f.src.stem).suffix != mark]
    if not files:
        raise UsageError("no videos found in the inputs; give video files (mp4, mov, mkv, webm, avi, m4v) or "
                         "folders that hold them")
    out_is_file = out is not None and out.suffix.lower() in OUTPUT_SUFFIXES and not out.is_dir()
    if out_is_file and len(files) > 1:
        raise UsageError(f"--out {out} is one file but {len(files)} videos are given; pass a folder as --out")
    plans = []
    for f in files:
        if out is None:
            dst = default_output(f.src, target)
        elif out_is_file:
            dst = out
        else:
            dst = default_output(f.src, target, out / f.rel.parent)
        fdir = None
        if frames_dir is not None:
            fdir = frames_dir if len(files) == 1 else frames_dir / f.rel.parent / f.src.stem
        plans.append((f.src, None if frames_only else dst, fdir))
    return plans


def video(
    inputs: Annotated[list[Path], typer.Argument(help="Video files or folders of videos.", show_default=False)],
    out: Annotated[
        Optional[Path],  # noqa: UP045 - typer needs Optional on 3.10
        typer.Option("--out", "-o", help="Output file (one input) or folder. Default: <name>.<domain>.mp4 beside "
                     "each input."),
    ] = None,
    model: ModelOpt = None,
    to: ToOpt = None,
    direction: DirectionOpt = None,
    device: DeviceOpt = "auto",
    threads: ThreadsOpt = 0,
    start: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--start", help="Start at this time (seconds or HH:MM:SS); audio is cut to match."),
    ] = None,
    duration: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--duration", help="Convert only this long (seconds or HH:MM:SS)."),
    ] = None,
    codec: Annotated[str, typer.Option("--codec", help="FFmpeg video encoder (libx264, libx265, libvpx-vp9).")]
    = "libx264",
    crf: Annotated[int, typer.Option("--crf", min=0, max=63, help="Quality: lower is better (18 looks "
                                                                   "transparent with x264).")] = 18,
    preset: Annotated[str, typer.Option("--preset", help="x264/x265 speed preset (ultrafast .. veryslow).")]
    = "medium",
    stabilize: Annotated[
        bool, typer.Option("--stabilize/--no-stabilize", help="Smooth InstanceNorm statistics over frames "
                           "(off by default: no measurable flicker reduction with the bundled model).")
    ] = False,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, help="Frames per model run (with --no-stabilize).")
    ] = 4,
    frames_dir: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option("--frames-dir", help="Also write every output frame as PNG into this folder."),
    ] = None,
    frames_only: Annotated[
        bool, typer.Option("--frames-only", help="Write only the PNG frames (needs --frames-dir).")
    ] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing outputs.")] = False,
    quiet: QuietOpt = False,
) -> None:
    """Translate videos frame by frame: same length, frame rate and size, original audio in sync."""
    from imgxlate.video.convert import VideoResult as VideoResultT
    from imgxlate.video.convert import convert_video
    from imgxlate.video.probe import parse_time

    results: list[VideoResult] = []
    failed = 0
    interrupted = False
    t0 = time.perf_counter()
    with sigint_guard("interrupted: removing the unfinished video (Ctrl-C again to stop at once)"), \
            handle_errors():
        try:
            if frames_only and frames_dir is None:
                raise UsageError("--frames-only needs --frames-dir DIR (where the PNG frames go)")
            parse_time(start, "--start")
            dur = parse_time(duration, "--duration")
            if dur is not None and dur <= 0:
                raise UsageError("--duration must be more than 0 seconds")
            translator = load_translator(model, to, direction, device, threads, quiet=quiet)
            plans = plan_videos(inputs, out, translator.metadata.target, frames_dir, frames_only)
            for src, dst, fdir in plans:
                if dst is not None and dst.exists() and not overwrite:
                    results.append(VideoResultT(src, dst, "skipped", reason="output exists (pass --overwrite "
                                                "to replace it)"))
                    if not quiet:
                        stderr.print(f"skipped {escape(str(src))}: {escape(results[-1].reason)}")
                    continue
                with progress_bar(quiet, "frames ") as progress:
                    task = progress.add_task(escape(src.name), total=None, rate="")
                    started = time.perf_counter()

                    def report(done: int, total: int | None, task: Any = task, started: float = started) -> None:
                        rate = done / max(time.perf_counter() - started, 1e-9)
                        progress.update(task, completed=done, total=total, rate=f"{rate:.2f}/s")

                    try:
                        r = convert_video(
                            src, dst, translator, codec=codec, crf=crf, preset=preset, start=start,
                            duration=duration, frames_dir=fdir, frames_only=frames_only, stabilize=stabilize,
                            batch_size=batch_size, progress=report, overwrite=overwrite,
                        )
                    except UsageError:
                        raise
                    except ImgxlateError as err:
                        failed += 1
                        progress.console.print(f"[red]failed:[/] {escape(str(src))}")
                        print_error(err, progress.console)
                        continue
                results.append(r)
                for w in r.warnings:
                    print_warning(f"{src.name}: {w}")
                if quiet:
                    continue
                if r.status == "skipped":
                    stderr.print(f"skipped {escape(str(src))}: {escape(r.reason)}")
                else:
                    where = escape(str(r.dst if r.dst is not None else r.frames_dir))
                    stderr.print(
                        f"wrote {where}: {r.frames} frames {r.width}x{r.height} in {r.seconds:.1f} s "
                        f"({r.frames_per_second:.2f} frames/s), audio {r.audio}"
                        f"{', stabilised' if r.stabilized else ''}"
                    )
        except KeyboardInterrupt:
            interrupted = True
    if not quiet or interrupted:
        done = sum(r.status == "converted" for r in results)
        skipped = sum(r.status == "skipped" for r in results)
        stderr.print(f"{'interrupted: ' if interrupted else ''}converted {done}, skipped {skipped}, failed "
                     f"{failed} in {time.perf_counter() - t0:.1f} s")
    if interrupted:
        raise typer.Exit(130)
    if failed:
        raise typer.Exit(1)
