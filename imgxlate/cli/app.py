"""The ``imgxlate`` Typer app: the root callback (``--version``) and the commands, registered
from their modules (:mod:`~imgxlate.cli.convert`, :mod:`~imgxlate.cli.video`,
:mod:`~imgxlate.cli.models`). Command modules never import this one, so there is no cycle.
"""

from __future__ import annotations

from typing import Annotated

import typer

from imgxlate._version import __version__
from imgxlate.cli.convert import convert
from imgxlate.cli.models import models_app
from imgxlate.cli.video import video

app = typer.Typer(
    name="imgxlate",
    help="Translate images and videos between visual domains (photo -> Van Gogh, horse -> zebra).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(models_app, name="models")


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


app.command()(convert)
app.command("video")(video)
