"""``imgxlate video``: translate video files (or folders of them) frame by frame.

Registered on the main app by :mod:`imgxlate.cli.app` through :func:`register`. The work is in
:mod:`imgxlate.video.convert`; this module only parses options, plans output names, shows progress and sets
the exit code (0 all done or skipped, 1 any video failed, 2 usage errors, 130 interrupted by Ctrl-C, 143 by SIGTERM).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer
from rich.markup import escape

from imgxlate.cli.common import (
    BackendOpt,
    BatchSizeOpt,
    DeviceOpt,
    DirectionOpt,
    JsonOpt,
    MaxMemoryOpt,
    ModelOpt,
    OverwriteOpt,
    QuietOpt,
    ThreadsOpt,
    ToOpt,
    handle_errors,
    load_translator,
    one_line,
    path_option,
    print_error,
    print_warning,
    progress_bar,
    stderr,
    stop_signals,
    warnings_as_messages,
)
from imgxlate.errors import ImgxlateError, UsageError

if TYPE_CHECKING:  # pragma: no cover
    from imgxlate.inputs import Found
    from imgxlate.video.convert import VideoResult


def _out_is_file(out: Path) -> bool:
    """Is ``--out`` the name of one output video (else a folder)?"""
    from imgxlate.video.media import OUTPUT_SUFFIXES

    return out.suffix.lower() in OUTPUT_SUFFIXES and not out.is_dir()


def _beside_problem(src: Path, folder: Path) -> str:
    """Why the video of ``src`` cannot be written beside it in ``folder`` ("" when it can)."""
    from imgxlate._atomic import folder_write_problem

    why = folder_write_problem(folder)
    return (f"{src}: the video would be written beside it, but {str(folder)!r} cannot be written into ({why}); "
            "pass --out to write elsewhere") if why else ""


def plan_videos(
    inputs: list[Path], out: Path | None, target: str, frames_dir: Path | None, frames_only: bool
) -> tuple[list[tuple[Path, Path | None, Path | None]], list[Found]]:
    """(src, dst, frames_dir) for every video the inputs name, and what the folder walk found but left
    out with a reason to report (FIFOs, devices, symlink loops, unreadable folders: the same rules
    as ``convert``).

    Folders are walked for video suffixes; files this command wrote before (``*.<target>.mp4``) and hidden
    files are skipped there. ``out``: None -> beside each input; a file name (single input only); else
    a folder that mirrors the input folders.
    """
    from imgxlate._paths import path_key
    from imgxlate.inputs import VIDEO_SUFFIXES, Found, collect_inputs, domain_tag
    from imgxlate.video.convert import default_output

    for p in inputs:
        if not p.exists() and not any(c in str(p) for c in "*?["):
            raise UsageError(f"input {p} does not exist; give video files or folders of videos")
    found = collect_inputs([str(p) for p in inputs], out_dir=out if out is not None and out.is_dir() else None,
                           suffixes=VIDEO_SUFFIXES)
    mark = f".{domain_tag(target)}"
    files = [f for f in found if f.explicit or Path(f.src.stem).suffix != mark]
    if not files:
        kinds = ", ".join(suffix[1:] for suffix in VIDEO_SUFFIXES)
        raise UsageError(f"no videos found in the inputs; give video files ({kinds}) or folders that hold them")
    out_is_file = out is not None and _out_is_file(out)
    if out_is_file and len(files) > 1:
        raise UsageError(f"--out {out} is one file but {len(files)} videos are given; pass a folder as --out")
    plans = []
    left_out = [n for n in found.found if n.status in ("skipped", "failed")]
    claimed: dict[str, Path] = {}  # path_key of an output file or frames folder -> the input it is for
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
        # clip.mp4 and clip.mov, or a/clip.mp4 and b/clip.mp4 into one --out: one output name. The
        # second was "skipped: output exists" (this run's own), or with --overwrite written over the
        # first while both were counted converted.
        taken = [(what, path) for what, path in (("output", None if frames_only else dst), ("frames folder", fdir))
                 if path is not None and path_key(path) in claimed]
        if taken:
            what, path = taken[0]
            left_out.append(Found(f.src, "failed", f"{claimed[path_key(path)]} and {f.src} would both be written to "
                                                   f"the {what} {path}; rename one of them, or convert them "
                                                   "one at a time, each with its own --out"))
            continue
        for path in (None if frames_only else dst, fdir):
            if path is not None:
                claimed[path_key(path)] = f.src
        plans.append((f.src, None if frames_only else dst, fdir))
    return plans, left_out


def precheck(inputs: list[Path], out: Path | None, codec: str, pix_fmt: str, frames_only: bool, crf: int = 23,
             preset: str = "ultrafast", frames_dir: Path | None = None) -> dict[Path, str]:
    """What can be refused before the model is loaded (usage errors raise, exit 2): missing inputs,
    an encoder FFmpeg lacks, the container cannot hold or that refuses ``crf`` / ``preset``, an
    ``--out`` under a file or named as a video the tool does not write. Returns the
    explicitly named files that are not videos (FIFO, device, still image, unreadable) with the reason:
    they fail (exit 1) without costing a model load."""
    from imgxlate._atomic import folder_write_problem
    from imgxlate.errors import VideoError
    from imgxlate.inputs import VIDEO_SUFFIXES
    from imgxlate.video.convert import _check_parent
    from imgxlate.video.encoder import check_encoder
    from imgxlate.video.media import OUTPUT_SUFFIXES
    from imgxlate.video.probe import probe_video

    for p in inputs:
        if not p.exists() and not p.is_symlink() and not any(c in str(p) for c in "*?["):
            raise UsageError(f"input {p} does not exist; give video files or folders of videos")
    suffix = ".mp4"
    if out is not None and out.suffix.lower() in VIDEO_SUFFIXES and out.suffix.lower() not in OUTPUT_SUFFIXES \
            and not out.is_dir():  # a video name, not a folder: one this tool cannot write
        raise UsageError(f"--out {out}: imgxlate writes {', '.join(OUTPUT_SUFFIXES)} videos, not "
                         f"{out.suffix.lower()}; give a name ending in one of those, or a folder")
    if out is not None:
        if _out_is_file(out):
            suffix = out.suffix.lower()
            _check_parent(out.parent, "--out")
        else:
            if out.exists() and not out.is_dir():
                raise UsageError(f"--out {out} is a file; give a folder, or a file name ending in "
                                 f"{', '.join(OUTPUT_SUFFIXES)}")
            _check_parent(out, "--out")
    if not frames_only:
        check_encoder(codec, suffix, pix_fmt, crf, preset)
    # Folders nothing can be written into, said once before the model loads (as convert does), not
    # as an exception about a lock file after it: --out and --frames-dir are usage errors; beside an
    # input in a read-only folder, that input fails.
    for option, folder in (("--out", None if frames_only else out), ("--frames-dir", frames_dir)):
        if folder is None:
            continue
        where = folder.parent if option == "--out" and _out_is_file(folder) else folder
        if why := folder_write_problem(where):
            raise UsageError(f"{option}: cannot write into {str(where)!r}: {why}")
    bad: dict[Path, str] = {}
    if out is None and not frames_only:  # a named file (folders and patterns: each video, once planned)
        for p in inputs:
            if p.is_file() and (why := _beside_problem(p, p.parent)):
                bad[p] = why
    for p in inputs:
        if p in bad or p.is_dir() or not (p.exists() or p.is_symlink()):
            continue
        try:
            probe_video(p)
        except VideoError as err:
            bad[p] = str(err)
    return bad


def video(
    inputs: Annotated[list[Path], typer.Argument(help="Video files or folders of videos.", show_default=False,
                                                 parser=path_option)],
    out: Annotated[
        Optional[Path],  # noqa: UP045 - typer needs Optional on 3.10
        typer.Option("--out", "-o", parser=path_option, help="Output file (one input) or folder. Default: "
                     "<name>.<domain>.mp4 beside each input."),
    ] = None,
    model: ModelOpt = None,
    to: ToOpt = None,
    direction: DirectionOpt = None,
    device: DeviceOpt = "auto",
    threads: ThreadsOpt = 0,
    backend: BackendOpt = "auto",
    max_memory: MaxMemoryOpt = None,
    start: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--start", help="Start at this time (seconds or HH:MM:SS); audio is cut to match."),
    ] = None,
    duration: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--duration", help="Convert only this long (seconds or HH:MM:SS)."),
    ] = None,
    temporal: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--temporal", help="Temporal stability: off (every frame on its own; the default) or flow "
                     "(blend the previous output along the input's optical flow where it is reliable: far less "
                     "flicker; see docs/video.md).", metavar="off|flow", show_default="off")
    ] = None,
    codec: Annotated[str, typer.Option("--codec", help="Video encoder (libx264, libx265, libvpx-vp9, ...).")]
    = "libx264",
    crf: Annotated[int, typer.Option("--crf", min=0, max=63, help="Quality: lower is better (18 looks "
                                                                   "transparent with x264; x264/x265 take 0-51, "
                                                                   "VP9/AV1 0-63).")] = 18,
    preset: Annotated[str, typer.Option("--preset", help="x264/x265 speed preset (ultrafast .. veryslow).")]
    = "medium",
    pix_fmt: Annotated[
        str, typer.Option("--pix-fmt", help="Pixel format: yuv420p plays everywhere but needs even sizes (an odd "
                          "row/column is dropped); yuv444p keeps every pixel.")
    ] = "yuv420p",
    batch_size: BatchSizeOpt = None,
    frames_dir: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option("--frames-dir", parser=path_option, help="Also write every output frame as PNG into this "
                     "folder."),
    ] = None,
    frames_only: Annotated[
        bool, typer.Option("--frames-only", help="Write only the PNG frames (needs --frames-dir).")
    ] = False,
    overwrite: OverwriteOpt = False,
    resume: Annotated[
        bool, typer.Option("--resume/--restart", help="Continue an interrupted video where it stopped (default), "
                           "or start it afresh.")
    ] = True,
    stabilize: Annotated[
        Optional[bool],  # noqa: UP045
        typer.Option("--stabilize/--no-stabilize", hidden=True, help="Deprecated: --temporal flow / off."),
    ] = None,
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Translate videos frame by frame: same length, frame rate and size, original audio in sync (--temporal
    flow for less flicker)."""
    from imgxlate.video.convert import DEFAULT_TEMPORAL, convert_video, is_the_input
    from imgxlate.video.convert import VideoResult as VideoResultT
    from imgxlate.video.probe import parse_time
    from imgxlate.video.stabilize import TEMPORAL_MODES

    results: list[VideoResult] = []
    failures: list[dict[str, str | None]] = []
    interrupted = False
    current: tuple[Path, Path | None] | None = None  # the video being converted
    translator = None
    quiet_ui = quiet or as_json
    t0 = time.perf_counter()
    with stop_signals("keeping the frames translated so far") as stop, handle_errors(as_json), \
            warnings_as_messages(quiet):
        try:
            if stabilize is not None:
                wanted = "flow" if stabilize else "off"
                if temporal is not None and temporal != wanted:
                    raise UsageError(f"--{'' if stabilize else 'no-'}stabilize means --temporal {wanted}, but "
                                     f"--temporal {temporal} is given too; leave out the deprecated --stabilize")
                temporal = wanted
                if not quiet:  # -q is errors only
                    print_warning("--stabilize/--no-stabilize are deprecated; use --temporal flow / --temporal off")
            temporal = temporal or DEFAULT_TEMPORAL
            if temporal not in TEMPORAL_MODES:
                raise UsageError(f"--temporal {temporal!r}: choose one of {', '.join(TEMPORAL_MODES)}")
            if frames_only and out is not None:
                raise UsageError("--frames-only writes PNG frames to --frames-dir and no video: leave out --out, "
                                 "or --frames-only to write the video too")
            if frames_only and frames_dir is None:
                raise UsageError("--frames-only needs --frames-dir DIR (where the PNG frames go)")
            parse_time(start, "--start")
            dur = parse_time(duration, "--duration")
            if dur is not None and dur <= 0:
                raise UsageError("--duration must be more than 0 seconds")
            bad = precheck(inputs, out, codec, pix_fmt, frames_only, crf, preset, frames_dir)
            for src, reason in bad.items():
                failures.append({"src": str(src), "status": "failed", "reason": reason})
                print_error(reason)
            todo = [p for p in inputs if p not in bad]
            if todo:
                from imgxlate.options import ModelSpec
                from imgxlate.tiling.auto import parse_memory

                spec = ModelSpec(model=model, to=to, direction=direction, device=device, threads=threads,
                                 backend=backend, max_memory=parse_memory(max_memory) if max_memory else None)
                translator = load_translator(spec, quiet=quiet)  # its notes on stderr with --json too, as convert
                plans, left_out = plan_videos(todo, out, translator.metadata.target, frames_dir, frames_only)
                for n in left_out:  # reported as convert reports them: a FIFO is skipped, not waited on
                    if n.status == "failed":
                        failures.append({"src": str(n.path), "status": "failed", "reason": n.reason})
                        print_error(f"{n.path}: {n.reason}")
                        continue
                    results.append(VideoResultT(n.path, None, "skipped", reason=n.reason))
                    if not quiet_ui:
                        stderr.print(f"skipped {escape(one_line(n.path))}: {escape(one_line(n.reason))}")
            else:
                plans = []
            for src, dst, fdir in plans:
                # beside a video in a folder nothing can be written into (found through a folder or a
                # pattern): its reason, not the lock file's PermissionError after the model ran
                if out is None and dst is not None and (why := _beside_problem(src, dst.parent)):
                    failures.append({"src": str(src), "status": "failed", "reason": why})
                    print_error(why)
                    continue
                # an output that is the input itself is a usage error (from convert_video), not "exists"
                if dst is not None and dst.exists() and not overwrite and not is_the_input(src, dst):
                    results.append(VideoResultT(src, dst, "skipped", reason="output exists (pass --overwrite "
                                                "to replace it)"))
                    if not quiet_ui:
                        stderr.print(f"skipped {escape(one_line(src))}: {escape(one_line(results[-1].reason))}")
                    continue
                with progress_bar(quiet, "") as progress:  # on stderr: shown with --json too, not with -q
                    task = progress.add_task(escape(one_line(src.name)), total=None, rate="")
                    first: list[tuple[int, float]] = []

                    def report(done: int, total: int | None, task: Any = task, first: Any = first) -> None:
                        now = time.perf_counter()
                        if not first:
                            first.append((done, now))
                            progress.update(task, completed=done, total=total, rate="")
                            return
                        n0, t_first = first[0]
                        rate = (done - n0) / max(now - t_first, 1e-9)
                        progress.update(task, completed=done, total=total, rate=f"{rate:.2f} frames/s")

                    current = (src, dst)
                    try:
                        r = convert_video(
                            src, dst, translator, codec=codec, crf=crf, preset=preset, pix_fmt=pix_fmt,
                            start=start, duration=duration, frames_dir=fdir, frames_only=frames_only,
                            temporal=temporal, batch_size=batch_size, progress=report, overwrite=overwrite,
                            resume=resume,
                        )
                    except UsageError:
                        raise
                    except (ImgxlateError, OSError) as err:  # this video's failure: the next one still runs
                        from imgxlate.batch import failure_reason

                        reason = failure_reason(err)
                        failures.append({"src": str(src), "status": "failed", "reason": reason})
                        progress.console.print(f"[red]failed:[/] {escape(one_line(src))}")
                        print_error(reason, progress.console)
                        current = None
                        continue
                current = None
                results.append(r)
                if not quiet:  # -q is errors only, as for convert (the warnings are in --json's results)
                    for w in r.warnings:
                        print_warning(f"{src.name}: {w}")
                if quiet_ui:
                    continue
                if r.status == "skipped":
                    stderr.print(f"skipped {escape(one_line(src))}: {escape(one_line(r.reason))}")
                else:
                    where = escape(one_line(r.dst if r.dst is not None else r.frames_dir))
                    resumed = f", {r.resumed_frames} of them from the interrupted run" if r.resumed_frames else ""
                    stderr.print(
                        f"wrote {where}: {r.frames} frames {r.width}x{r.height} in {r.seconds:.1f} s "
                        f"({r.frames_per_second:.2f} frames/s{resumed}), audio {r.audio}, temporal {r.temporal}"
                    )
        except KeyboardInterrupt:
            interrupted = True
            if current is not None:  # the video under way: named in --json, with where its frames are kept
                from imgxlate.video.segments import parts_dir

                src, dst = current
                kept = parts_dir(dst) if dst is not None else None
                failures.append({"src": str(src), "dst": str(dst) if dst is not None else None,
                                 "status": "interrupted", "parts": str(kept) if kept and kept.is_dir() else None,
                                 "reason": "stopped; run the same command again to continue"})
    elapsed = time.perf_counter() - t0
    done = sum(r.status == "converted" for r in results)
    skipped = sum(r.status == "skipped" for r in results)
    failed = sum(f["status"] == "failed" for f in failures)
    if as_json:
        summary = {
            "results": [r.to_dict() for r in results] + failures,
            "totals": {"converted": done, "skipped": skipped, "failed": failed, "seconds": round(elapsed, 3),
                       "frames": sum(r.frames for r in results if r.status == "converted"),
                       "interrupted": interrupted},
            "provider": translator.runtime if translator is not None else "",
            "model": str(translator.model_path) if translator is not None else None,
        }
        sys.stdout.write(json.dumps(summary, indent=2) + "\n")
        sys.stdout.flush()
    if not quiet or interrupted:
        stderr.print(f"{'interrupted: ' if interrupted else ''}converted {done}, skipped {skipped}, failed "
                     f"{failed} in {elapsed:.1f} s")
        if interrupted and frames_only and temporal == "flow":
            stderr.print("the frames translated so far are kept; --temporal flow cannot go on from saved frames "
                         "(each is smoothed with the one before): run it again with --overwrite")
        elif interrupted:
            stderr.print("the frames translated so far are kept; run the same command again to continue")
    if interrupted:
        raise typer.Exit(stop.exit_code)
    if failed:
        raise typer.Exit(1)
