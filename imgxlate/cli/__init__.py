"""The ``imgxlate`` command line: ``convert``, ``video``, ``models``, ``--version``.

One module per command (:mod:`.convert`, :mod:`.video`, :mod:`.models`), shared options and helpers in
:mod:`.common`, the Typer app that registers them in :mod:`.app`; :func:`main` is the console entry
point.

Exit codes, the same for every command: 0 done (or nothing to do), 1 something failed (the rest was
still done), 2 usage error (bad option or value, unknown model, missing input), 130 interrupted.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Sequence


def _interrupted_early(signum: int, frame: object) -> None:
    """SIGINT before a command has its own handler (while Python imports typer, rich, numpy...):
    "interrupted" and exit 130 at once, never a traceback.

    The process ends here (``os._exit``) rather than by raising: an exception raised in the middle of
    a module's import can leave that module half-initialised, and a later import of it then fails with
    a misleading "circular import" traceback (seen with rich). Nothing needs unwinding at this stage:
    commands that write files, start children or hold temp folders (convert, video, models add, serve)
    install their own handler before they do any of that."""
    try:
        os.write(2, b"interrupted\n")
    except OSError:
        pass
    os._exit(130)


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point (``imgxlate`` and ``python -m imgxlate``).

    The SIGINT handler is installed first, before the heavy imports (typer, rich, numpy): commands
    that handle Ctrl-C themselves (convert, video, models add) install their own for their duration
    and restore this one.

    With ``--json`` anywhere on the line, a usage error found while parsing (an unknown option, a value
    not among the choices) also writes a JSON error object on stdout, as every later error does."""
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # not when the shell ignores SIGINT
        signal.signal(signal.SIGINT, _interrupted_early)
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        from imgxlate.cli.app import app

        if "--json" not in args:
            app(prog_name="imgxlate", args=args)
            return
        sys.exit(_run_json(app, args))
    except KeyboardInterrupt:  # Ctrl-C inside code that restored Python's default handler
        try:
            os.write(2, b"interrupted\n")
        except OSError:
            pass
        sys.exit(130)


def _run_json(app: object, args: list[str]) -> int:
    import typer
    from typer import rich_utils

    from imgxlate.cli.common import emit_json, json_error

    # Click's exception classes, whether Typer uses click itself or its own copy of it.
    click_exception = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")
    try:
        rv = app(prog_name="imgxlate", args=args, standalone_mode=False)  # type: ignore[operator]
    except click_exception as exc:
        rich_utils.rich_format_error(exc)
        emit_json(json_error(exc.format_message(), "UsageError", exc.exit_code))
        return int(exc.exit_code)
    except typer.Exit as exc:
        return int(exc.exit_code)
    except typer.Abort:
        return 1
    return rv if isinstance(rv, int) else 0
