"""``imgxlate-train``: train a CycleGAN pair from two folders, resume it, export it to ONNX.

imgxlate-train --domain-a photos/ --domain-b paintings/ --out runs/p2v
imgxlate-train --resume runs/p2v
imgxlate-train export runs/p2v/checkpoints/last.pt --out models/p2v
"""

from __future__ import annotations

import logging
import os
import shlex
import sys
import warnings
from pathlib import Path
from typing import Any

import typer

from imgxlate._version import __version__
from imgxlate.cli.common import print_error, print_warning, stderr
from imgxlate.errors import ImgxlateError, UsageError
from imgxlate.train.config import TrainConfig

app = typer.Typer(
    add_completion=False,
    no_args_is_help=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    help=__doc__,
)

_D = TrainConfig()


def _version(value: bool) -> None:
    if value:
        typer.echo(f"imgxlate-train {__version__}")
        raise typer.Exit()


def _fail(err: ImgxlateError) -> None:
    print_error(err)
    raise typer.Exit(err.exit_code)


def _setup_logging(quiet: bool) -> None:
    logger = logging.getLogger("imgxlate.train")
    logger.handlers.clear()
    if not quiet:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False

    def show(
        message: Any, category: type, filename: str, lineno: int, file: Any = None, line: Any = None
    ) -> None:
        print_warning(str(message))

    warnings.showwarning = show


class _Progress:
    """A rich progress bar with losses and images/s; nothing when quiet or stderr is not a terminal."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.progress = None
        self.task = None

    def __enter__(self) -> _Progress:  # noqa: PYI034
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.progress = Progress(
                TextColumn("[bold]train[/]"),
                BarColumn(),
                MofNCompleteColumn(),
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
        if self.progress is None:
            return
        if self.task is None:
            self.task = self.progress.add_task("train", total=info.total, completed=info.start, info="")
        losses = info.losses
        text = (
            f"ep {info.epoch:.2f}  {info.images_per_s:.2f} img/s  "
            f"G {losses.get('G_ab', 0):.3f}/{losses.get('G_ba', 0):.3f}  "
            f"cyc {losses.get('cycle_a', 0):.3f}/{losses.get('cycle_b', 0):.3f}  "
            f"D {losses.get('D_a', 0):.3f}/{losses.get('D_b', 0):.3f}"
        )
        self.progress.update(self.task, completed=info.step, info=text)


@app.callback(invoke_without_command=True)
def train_command(
    ctx: typer.Context,
    domain_a: str = typer.Option("", "--domain-a", help="Folder of domain A images (recursive)."),
    domain_b: str = typer.Option("", "--domain-b", help="Folder of domain B images (recursive)."),
    out: str = typer.Option(
        _D.out, "--out", "-o", help="Run folder: checkpoints/, samples/, model/, log.jsonl."
    ),
    resume: str = typer.Option(None, "--resume", help="Continue a run: its folder or a checkpoint .pt file."),
    name_a: str = typer.Option("", "--name-a", help="Name of domain A (default: its folder name)."),
    name_b: str = typer.Option("", "--name-b", help="Name of domain B (default: its folder name)."),
    image_size: int = typer.Option(_D.image_size, help="Random crop size (multiple of 4)."),
    load_size: int = typer.Option(_D.load_size, help="Shorter side is resized to this before cropping."),
    flip: bool = typer.Option(_D.flip, "--flip/--no-flip", help="Random horizontal flips."),
    workers: int = typer.Option(_D.workers, help="Data loading processes (0 = in the main process)."),
    ngf: int = typer.Option(_D.ngf, help="Generator width."),
    ndf: int = typer.Option(_D.ndf, help="Discriminator width."),
    n_blocks: int = typer.Option(_D.n_blocks, help="Residual blocks in the generator."),
    n_layers_d: int = typer.Option(_D.n_layers_d, help="PatchGAN layers (3 = 70x70)."),
    upsample: str = typer.Option(_D.upsample, help="transpose (reference) or resize (no checkerboard)."),
    gan_mode: str = typer.Option(_D.gan_mode, help="lsgan or vanilla."),
    lambda_cycle: float = typer.Option(_D.lambda_cycle, help="Cycle-consistency weight."),
    lambda_identity: float = typer.Option(
        _D.lambda_identity, help="Identity weight, times lambda-cycle; 0 = off."
    ),
    pool_size: int = typer.Option(_D.pool_size, help="Past fakes kept for each discriminator."),
    lr: float = typer.Option(_D.lr, help="Adam learning rate."),
    beta1: float = typer.Option(_D.beta1, help="Adam beta1."),
    batch_size: int = typer.Option(_D.batch_size, help="Images per step (per process)."),
    epochs: int = typer.Option(_D.epochs, help="Epochs at constant learning rate."),
    epochs_decay: int = typer.Option(_D.epochs_decay, help="Epochs of linear decay to 0."),
    max_steps: int = typer.Option(_D.max_steps, help="Stop after this many steps (0 = whole schedule)."),
    seed: int = typer.Option(_D.seed, help="Random seed (weights, data order, pools)."),
    device: str = typer.Option(_D.device, help="auto, cuda, cpu or mps."),
    precision: str = typer.Option(
        _D.precision, help="auto (bf16 on CUDA if supported, else fp32), fp32, bf16, fp16."
    ),
    channels_last: bool = typer.Option(_D.channels_last, "--channels-last/--no-channels-last"),
    compile: bool = typer.Option(_D.compile, "--compile/--no-compile", help="torch.compile the networks."),
    threads: int = typer.Option(_D.threads, help="CPU threads for PyTorch (0 = default)."),
    checkpoint_every: int = typer.Option(
        _D.checkpoint_every, help="Steps between checkpoints (0 = only at the end)."
    ),
    sample_every: int = typer.Option(_D.sample_every, help="Steps between sample grids (0 = none)."),
    log_every: int = typer.Option(_D.log_every, help="Steps between log.jsonl lines."),
    export: bool = typer.Option(_D.export, "--export/--no-export", help="Export ONNX models at the end."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or messages."),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Show the version."
    ),
) -> None:
    """Train a CycleGAN generator pair on two unpaired image folders (or resume one).

    Other command: `imgxlate-train export CHECKPOINT --out DIR`.
    """
    if ctx.invoked_subcommand is not None:
        return
    quiet = quiet or os.environ.get("RANK", "0") != "0"  # under torchrun only rank 0 talks
    _setup_logging(quiet)
    values = {k: v for k, v in ctx.params.items() if k not in ("resume", "quiet", "version")}
    try:
        if resume:
            explicit = {
                k: v
                for k, v in values.items()
                if getattr(ctx.get_parameter_source(k), "name", "") == "COMMANDLINE"
            }
            cfg = None
        else:
            if not domain_a or not domain_b:
                stderr.print(ctx.get_help())
                print_error(UsageError("pass --domain-a and --domain-b (or --resume RUN)"))
                raise typer.Exit(2)
            cfg = TrainConfig.from_dict(values)
            cfg.validate()  # before importing torch: a typo answers at once
            explicit = {}
        command = "imgxlate-train " + " ".join(shlex.quote(a) for a in sys.argv[1:])
        from imgxlate.train.loop import train  # torch: only now

        with _Progress(enabled=not quiet and sys.stderr.isatty()) as progress:
            result = train(cfg, resume=resume, overrides=explicit, on_step=progress, command=command)
    except ImgxlateError as err:
        _fail(err)
    if not quiet:
        stderr.print(
            f"done: {result.steps} steps, {result.images_per_s:.2f} images/s; checkpoint {result.checkpoint}"
            + (f"; models in {result.model_dir}" if result.model_dir else ""),
            highlight=False,
            soft_wrap=True,
        )


@app.command("export")
def export_command(
    checkpoint: str = typer.Argument(..., help="A checkpoint .pt file or a run folder."),
    out: str = typer.Option(..., "--out", "-o", help="Folder for a2b.onnx, b2a.onnx and README.md."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Export both generators of a checkpoint to verified ONNX files with imgxlate metadata."""
    _setup_logging(quiet)
    try:
        from imgxlate.train.loop import export_checkpoint

        reports = export_checkpoint(checkpoint, out)
    except ImgxlateError as err:
        _fail(err)
    if not quiet:
        for r in reports:
            stderr.print(
                f"wrote {r.path} ({r.bytes / 1e6:.1f} MB, max |ORT - torch| {r.max_abs_diff:.1e})",
                highlight=False,
                soft_wrap=True,
            )
    else:
        _ = Path(out)


def main() -> None:
    app(prog_name="imgxlate-train")


if __name__ == "__main__":
    main()
