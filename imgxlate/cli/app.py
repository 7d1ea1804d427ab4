"""The ``imgxlate`` Typer app: the root callback (``--version``) and the commands, registered
from their modules (:mod:`~imgxlate.cli.convert`, :mod:`~imgxlate.cli.video`,
:mod:`~imgxlate.cli.models`). Command modules never import this one, so there is no cycle.

``imgxlate --help`` lists the three everyday commands first (convert, video, models), then the
others; every command's help ends with examples. Shell completion: ``imgxlate --install-completion``.
"""

from __future__ import annotations

from typing import Annotated

import typer

from imgxlate._version import __version__
from imgxlate.cli.common import examples
from imgxlate.cli.convert import convert
from imgxlate.cli.models import models_app
from imgxlate.cli.serve import serve
from imgxlate.cli.video import video

# Typer prints commands without a panel first, so every command names its panel: EVERYDAY for
# convert / video / models, MORE for the rest (e.g. `app.command("serve", rich_help_panel=MORE)(serve)`).
EVERYDAY = "Everyday commands"
MORE = "More commands"


CONVERT_EXAMPLES = examples(
    "imgxlate convert ./photos --to vangogh --out ./out",
    "imgxlate convert a.jpg b.png --out ./out --format jpg --quality 90",
    "imgxlate convert ./paintings --to photo --out ./out --json > summary.json",
    "imgxlate convert ./photos --model ./runs/p2v/model --direction a2b --device cpu --out ./out",
    "imgxlate convert ./photos --to vangogh --out ./out --ray",
)
VIDEO_EXAMPLES = examples(
    "imgxlate video clip.mp4 --to vangogh",
    "imgxlate video ./videos --to vangogh --out ./out",
    "imgxlate video clip.mp4 --to vangogh --start 0:10 --duration 5 --frames-dir frames/",
)
MODELS_EXAMPLES = examples(
    "imgxlate models",
    "imgxlate models info vangogh2photo --json",
    "imgxlate models add ./runs/p2v/model --name p2v",
    "imgxlate models add https://host/pair.zip --sha256 HEX",
    "imgxlate models add hf://ORG/REPO@REV",
    "imgxlate models remove p2v",
)
SERVE_EXAMPLES = examples(
    "imgxlate serve",
    "imgxlate serve --model ./runs/h2z/model --to zebra --port 8080",
)
ROOT_EPILOG = examples(
    "imgxlate convert ./photos --to vangogh --out ./out",
    "imgxlate video clip.mp4 --to vangogh",
    "imgxlate models",
) + (
    "\n\n[bold]Environment[/]\n\n  IMGXLATE_HOME: user model folder (models under $IMGXLATE_HOME/models)"
    "\n\n  IMGXLATE_DEFAULT_MODEL: the installed model (a name from `imgxlate models`) used without --model"
    "\n\n  IMGXLATE_DEVICE, IMGXLATE_THREADS, IMGXLATE_MAX_PIXELS: defaults of --device, --threads, --max-pixels"
    "\n\n  IMGXLATE_DOWNLOAD_TIMEOUT: seconds for a whole `models add` download"
)

app = typer.Typer(
    name="imgxlate",
    help="Translate images and videos between visual domains (photo -> Van Gogh, horse -> zebra).",
    epilog=ROOT_EPILOG,
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)


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


# Registration order is the order of `imgxlate --help`: the everyday commands first.
app.command(rich_help_panel=EVERYDAY, epilog=CONVERT_EXAMPLES)(convert)
app.command("video", rich_help_panel=EVERYDAY, epilog=VIDEO_EXAMPLES)(video)
models_app.info.epilog = MODELS_EXAMPLES
app.add_typer(models_app, name="models", rich_help_panel=EVERYDAY)
app.command("serve", rich_help_panel=MORE, epilog=SERVE_EXAMPLES)(serve)
