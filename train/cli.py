"""imgxlate-train: train a generator (CycleGAN, CUT or FastCUT) from two folders, resume it, export it.

Examples:

  imgxlate-train --domain-a photos/ --domain-b paintings/ --out runs/p2v

  imgxlate-train --method cut --both-directions --domain-a photos/ --domain-b paintings/ --out runs/p2v-cut

  imgxlate-train --resume runs/p2v

  imgxlate-train export runs/p2v/checkpoints/last.pt --out models/p2v

  imgxlate-train import --a2b horse2zebra.pth --out models/horse2zebra
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import shlex
import sys
import warnings
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape

from imgxlate._version import __version__
from imgxlate.cli.common import (
    defer_stop,
    emit_json,
    exit_interrupted,
    expand_home,
    json_error,
    preload_runtimes,
    print_error,
    stderr,
    stop_signals,
)
from imgxlate.errors import ImgxlateError, TrainingInterrupted, UsageError
from imgxlate.extras import require
from imgxlate.train.config import TrainConfig
from imgxlate.train.launch import launch_env, launched
from imgxlate.train.options import config_values, with_config_options

app = typer.Typer(
    add_completion=False,
    no_args_is_help=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    help=__doc__,
    rich_markup_mode="rich",
)

log = logging.getLogger("imgxlate.train")
# What an export imports lazily (torch.onnx.export reaches into torch._dynamo and torch.export)
EXPORTER_MODULES = ("onnx", "onnxruntime", "torch", "torch._dynamo", "torch.export", "torch.onnx", "onnxscript")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"imgxlate-train {__version__}")
        raise typer.Exit()


def _fail(err: ImgxlateError, as_json: bool = False) -> None:
    """The error on stderr and, with ``--json``, the JSON error object ``imgxlate`` writes."""
    print_error(err)
    if as_json:
        emit_json(json_error(str(err), type(err).__name__, err.exit_code))
    raise typer.Exit(err.exit_code)


def _setup_logging(quiet: bool, live: bool) -> None:
    """Messages of the ``imgxlate.train`` logger on stderr: through rich's handler when a progress bar
    is live (lines go above the bar, not over it), plain lines otherwise; errors only when quiet."""
    logger = logging.getLogger("imgxlate.train")
    logger.handlers.clear()
    if live:
        from rich.highlighter import NullHighlighter
        from rich.logging import RichHandler

        handler: logging.Handler = RichHandler(
            console=stderr,
            show_time=False,
            show_path=False,
            show_level=False,
            markup=False,
            highlighter=NullHighlighter(),
        )
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.ERROR if quiet else logging.INFO)
    logger.propagate = False

    def show(
        message: Any, category: type, filename: str, lineno: int, file: Any = None, line: Any = None
    ) -> None:
        if not quiet:
            logger.warning("warning: %s", message)

    warnings.showwarning = show


# Columns of the bar before the losses: "train", "1234/56789", a 16-cell bar, "12:34:56", the gaps.
_BAR_FIXED_WIDTH = 5 + 1 + 11 + 1 + 16 + 1 + 8 + 1


class _Progress:
    """Progress of a run on stderr: a rich bar on a terminal; without one (nohup, CI logs, ``| tee``)
    a plain line every --log-every steps: step, images/s, ETA, losses. Nothing when quiet."""

    def __init__(self, quiet: bool, live: bool) -> None:
        self.quiet, self.live = quiet, live
        self.progress: Any = None
        self.task: Any = None

    def __enter__(self) -> _Progress:  # noqa: PYI034
        if self.live and not self.quiet:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.progress = Progress(
                TextColumn("[bold]train[/]"),
                MofNCompleteColumn(),
                BarColumn(bar_width=16),
                TimeRemainingColumn(),
                TextColumn("{task.fields[info]}"),
                console=stderr,
                transient=False,
            )
            self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.__exit__(*exc)

    def __call__(self, info: Any) -> None:
        from imgxlate.train.monitor import format_losses, progress_line

        if self.quiet:
            return
        if self.progress is None:
            if info.logged:
                log.info("%s", progress_line(info))
            return
        if self.task is None:
            self.task = self.progress.add_task("train", total=info.total, completed=info.start, info="")
        text = f"ep {info.epoch:.2f}  {info.images_per_s:.2f} img/s  {format_losses(info.losses)}"
        # Cut to the width the step count, bar and ETA leave: a full loss line made rich shrink those
        # instead, and on an 80-column terminal neither the step nor the ETA was shown.
        room = self.progress.console.width - _BAR_FIXED_WIDTH
        if len(text) > room:
            text = text[: max(room - 1, 0)] + "…"
        self.progress.update(self.task, completed=info.step, info=text)


def train_command(ctx: typer.Context, **values: Any) -> None:
    """Train a generator on two unpaired image folders (or resume a run).

    --method cyclegan (the default) trains both directions with a cycle loss; cut and fastcut train one
    direction with a contrastive loss (--both-directions for a pair). See docs/training.md.
    """
    if ctx.invoked_subcommand is not None:
        return
    resume, as_json = values.pop("resume"), values.pop("json")
    # Under torchrun only rank 0 talks: its progress, its summary (one JSON object on stdout), its
    # notices. Every rank still says its own errors.
    try:
        main_rank = launch_env().is_main
    except UsageError as err:
        _fail(err, as_json)
    as_json = as_json and main_rank
    quiet = values.pop("quiet") or not main_rank
    values.pop("version", None)
    live = sys.stderr.isatty() and not quiet
    _setup_logging(quiet, live)
    settings = config_values(values)
    stop = None
    cfg: TrainConfig | None = None
    try:
        if resume:
            explicit = {
                k: v
                for k, v in settings.items()
                if getattr(ctx.get_parameter_source(k), "name", "") == "COMMANDLINE"
            }
            cfg = None
        else:
            if not settings["domain_a"] or not settings["domain_b"]:
                raise UsageError("pass --domain-a and --domain-b (or --resume RUN); `imgxlate-train --help` "
                                 "lists every option")
            cfg = TrainConfig.from_dict(settings)
            cfg.validate()  # before importing torch: a bad value answers at once
            explicit = {}
        command = "imgxlate-train " + " ".join(shlex.quote(a) for a in sys.argv[1:])
        require("train", ("torch",), "training")  # a traceback otherwise; onnxscript: train() checks
        from imgxlate.train.loop import train  # torch: only now

        # SIGTERM (a scheduler's time limit, preemption, `docker stop`) as Ctrl-C: the step under way
        # finishes (defer_stop), its checkpoint is saved, then the command stops with 128 + the signal
        with _Progress(quiet, live) as progress, \
                stop_signals("saving the last finished step", speak=main_rank) as stop:
            result = train(cfg, resume=resume, overrides=explicit, on_step=progress, command=command,
                           step_guard=defer_stop)
    except TrainingInterrupted as err:
        code = stop.exit_code if stop is not None and stop.signum is not None else err.exit_code
        if main_rank:
            stderr.print(f"[yellow]{escape(str(err))}[/]")
        if as_json:
            typer.echo(json.dumps({"interrupted": True, "step": err.step, "checkpoint": err.checkpoint,
                                   "stage": err.stage, "message": str(err), "exit_code": code}, sort_keys=True))
        raise typer.Exit(code) from None
    except KeyboardInterrupt:  # outside the guarded steps and saves (setting up, mostly): say what is kept
        code = stop.exit_code if stop is not None and stop.signum is not None else 130
        run = resume or (cfg.out if cfg is not None else None)
        if resume or (run and (Path(run) / "checkpoints" / "last.pt").is_file()):
            message = f"interrupted; the run's last checkpoint is kept: continue with --resume {run}"
        else:
            message = "interrupted before the first step; nothing was trained or saved"
        exit_interrupted(message, code, as_json, speak=main_rank)
    except ImgxlateError as err:  # every rank says its own (a folder may be missing on one node only),
        if not main_rank:         # named by its rank so that the copies of one mistake read as such
            print_error(f"[rank {os.environ.get('RANK', '?')}] {err}")
            raise typer.Exit(err.exit_code) from None
        _fail(err, as_json)
    if as_json:
        typer.echo(json.dumps(result.summary(), sort_keys=True))
    elif not quiet:
        stderr.print(
            f"done: {result.method}, {result.steps} steps, {result.images_per_s:.2f} images/s; "
            f"checkpoint {result.checkpoint}"
            + (f"; models in {result.model_dir}" if result.model_dir else ""),
        )


_LEADING = [
    inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context),
    inspect.Parameter(
        "resume",
        inspect.Parameter.KEYWORD_ONLY,
        annotation=str,
        default=typer.Option(
            None, "--resume", help="Continue a run: its folder or a checkpoint .pt file.", metavar="RUN"
        ),
    ),
    inspect.Parameter(
        "quiet",
        inspect.Parameter.KEYWORD_ONLY,
        annotation=bool,
        default=typer.Option(False, "--quiet", "-q", help="Errors only: no progress, messages or summary."),
    ),
    inspect.Parameter(
        "json",
        inspect.Parameter.KEYWORD_ONLY,
        annotation=bool,
        default=typer.Option(
            False, "--json", help="Print the final summary (or the error) as one JSON object on stdout."
        ),
    ),
    inspect.Parameter(
        "version",
        inspect.Parameter.KEYWORD_ONLY,
        annotation=bool,
        default=typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version."),
    ),
]
app.callback(invoke_without_command=True)(with_config_options(train_command, _LEADING))


@app.command("export")
def export_command(
    checkpoint: str = typer.Argument(..., callback=expand_home, help="A checkpoint .pt file or a run folder."),
    out: str = typer.Option(..., "--out", "-o", callback=expand_home, help="Folder for a2b.onnx / b2a.onnx and "
                            "README.md."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the model already in --out."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Errors only."),
    as_json: bool = typer.Option(False, "--json", help="Print what was written as JSON on stdout."),
) -> None:
    """Export the generators of a checkpoint to verified ONNX files with imgxlate metadata.

    Example: imgxlate-train export runs/p2v --out models/p2v
    """
    _setup_logging(quiet, live=False)
    # a stop unwinds (the temp files are removed) instead of ending the process where it stands
    with stop_signals("the export stops") as stop:
        try:
            _one_process("export")
            require("train", ("torch", "onnxscript"), "exporting")
            with defer_stop():  # a stop inside a half-done import of the exporter breaks it for good
                preload_runtimes(EXPORTER_MODULES)
            from imgxlate.train.export import export_checkpoint

            if not quiet and not as_json:
                stderr.print(f"exporting {checkpoint} to {out} ...", markup=False)
            reports = export_checkpoint(checkpoint, out, overwrite=overwrite)
        except KeyboardInterrupt:
            exit_interrupted(f"interrupted: nothing was exported to {out} (the checkpoint is unchanged)",
                             stop.exit_code, as_json)
        except ImgxlateError as err:
            _fail(err, as_json)
    _report_written(reports, quiet, as_json)


@app.command("import")
def import_command(
    a2b: str = typer.Option(None, "--a2b", callback=expand_home, help="The generator that maps domain A to B: a reference .pth file "
                            "(e.g. horse2zebra.pth, or a run's latest_net_G_A.pth)."),
    b2a: str = typer.Option(None, "--b2a", callback=expand_home, help="The generator that maps B to A (e.g. latest_net_G_B.pth)."),
    out: str = typer.Option(..., "--out", "-o", callback=expand_home, help="Folder for a2b.onnx / b2a.onnx and "
                            "README.md."),
    name_a: str = typer.Option(None, "--name-a", help="Name of domain A (default: read from a file named "
                               "A2B.pth or a folder A2B_pretrained, as the reference's pretrained models are)."),
    name_b: str = typer.Option(None, "--name-b", help="Name of domain B (default: as --name-a)."),
    image_size: int = typer.Option(256, "--image-size", min=16, help="The crop size it was trained at (the "
                                   "reference's --crop_size), recorded in the model's metadata."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the model already in --out."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Errors only."),
    as_json: bool = typer.Option(False, "--json", help="Print what was written as JSON on stdout."),
) -> None:
    """Import generators trained by the original CycleGAN code (junyanz/pytorch-CycleGAN-and-pix2pix,
    ResNet generators) into verified ONNX files with imgxlate metadata.

    Example: imgxlate-train import --a2b horse2zebra.pth --b2a zebra2horse.pth --out models/horse2zebra
    """
    _setup_logging(quiet, live=False)
    files = {d: p for d, p in (("a2b", a2b), ("b2a", b2a)) if p}
    with stop_signals("the import stops") as stop:
        try:
            _one_process("import")
            require("train", ("torch", "onnxscript"), "importing")
            with defer_stop():
                preload_runtimes(EXPORTER_MODULES)
            from imgxlate.train.reference import import_generators

            if not quiet and not as_json:
                stderr.print(f"importing {', '.join(files.values()) or 'nothing'} to {out} ...", markup=False)
            reports = import_generators(files, out, name_a, name_b, image_size, overwrite)
        except KeyboardInterrupt:
            exit_interrupted(f"interrupted: nothing was written to {out}", stop.exit_code, as_json)
        except ImgxlateError as err:
            _fail(err, as_json)
    _report_written(reports, quiet, as_json)
    if not quiet and not as_json:
        q = shlex.quote(str(out))
        stderr.print(f"use it: imgxlate models add {q}   (or imgxlate convert IMAGES --model {q} ...)", markup=False)


def _one_process(command: str) -> None:
    """``export`` and ``import`` write one model folder: under torchrun every rank would write it.
    Rank 0 says so; the others exit with the same code."""
    world, rank = launched()
    if world > 1:
        if rank != 0:
            raise typer.Exit(UsageError.exit_code)
        raise UsageError(f"imgxlate-train {command} runs in one process; run it without torchrun (or unset "
                         "WORLD_SIZE)")


def _report_written(reports: list[Any], quiet: bool, as_json: bool) -> None:
    """What an export or import wrote: JSON rows on stdout, or a line per file on stderr."""
    if as_json:
        rows = [
            {"path": str(r.path), "bytes": r.bytes, "max_abs_diff": r.max_abs_diff, "sizes": r.sizes}
            for r in reports
        ]
        typer.echo(json.dumps({"written": rows}, sort_keys=True))
    elif not quiet:
        for r in reports:
            stderr.print(
                f"wrote {r.path} ({r.bytes / 1e6:.1f} MB, max |ORT - torch| {r.max_abs_diff:.1e})",
                markup=False,
            )


def main() -> None:
    """``imgxlate-train``: run the way ``imgxlate`` runs (:func:`imgxlate.cli.run_command`): parse errors
    and an early Ctrl-C also as JSON with ``--json``, exit codes from the error types."""
    from imgxlate.cli import run_command

    run_command(lambda: app, "imgxlate-train")


if __name__ == "__main__":
    main()
