"""The ``imgxlate`` command line: ``convert``, ``video``, ``models``, ``--version``.

One module per command (:mod:`.convert`, :mod:`.video`, :mod:`.models`), shared options and helpers in
:mod:`.common`, the Typer app that registers them in :mod:`.app`; :func:`main` is the console entry
point.
"""

from __future__ import annotations

import os
import signal
import sys


def _interrupted_early(signum: int, frame: object) -> None:
    """SIGINT before a command has its own handler (while Python imports typer, rich, numpy...):
    a clean "interrupted" and exit 130, never a KeyboardInterrupt traceback. SystemExit unwinds like any
    exception (finally blocks, temp file clean-up run); click does not turn it into "Aborted!"."""
    try:
        os.write(2, b"interrupted\n")
    except OSError:
        pass
    raise SystemExit(130)


def main() -> None:
    """Console entry point (``imgxlate`` and ``python -m imgxlate``).

    The SIGINT handler is installed first, before the heavy imports: commands that handle Ctrl-C
    themselves (convert, video, models add) install their own for their duration and restore this one.
    """
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # not when the shell ignores SIGINT
        signal.signal(signal.SIGINT, _interrupted_early)
    try:
        from imgxlate.cli.app import app

        app(prog_name="imgxlate")
    except KeyboardInterrupt:  # Ctrl-C inside code that restored Python's default handler
        try:
            os.write(2, b"interrupted\n")
        except OSError:
            pass
        sys.exit(130)
