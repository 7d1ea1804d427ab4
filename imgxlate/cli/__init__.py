"""The ``imgxlate`` command line: ``convert``, ``video``, ``models``, ``serve``, ``--version``.

One module per command (:mod:`.convert`, :mod:`.video`, :mod:`.models`, :mod:`.serve`), shared options and helpers in
:mod:`.common`, the Typer app that registers them in :mod:`.app`; :func:`main` is the console entry
point.

Exit codes, the same for every command: 0 done (or nothing to do), 1 something failed (the rest was
still done), 2 usage error (bad option or value, unknown model, missing input), 130 interrupted (Ctrl-C), 143
stopped by SIGTERM.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable, Sequence

_JSON_ERROR = False  # --json on the command line: an early stop also writes a JSON error on stdout


def _say_interrupted() -> None:
    """ "interrupted" on stderr and, with --json, the JSON error object every other error gives."""
    try:
        os.write(2, b"interrupted\n")
        if _JSON_ERROR:
            os.write(1, b'{"error": {"message": "interrupted", "type": "Interrupted", "exit_code": 130}}\n')
    except OSError:
        pass


def _interrupted_early(signum: int, frame: object) -> None:
    """SIGINT before a command has its own handler (while Python imports typer, rich, numpy...):
    "interrupted" and exit 130 at once, never a traceback.

    The process ends here (``os._exit``) rather than by raising: an exception raised in the middle of
    a module's import can leave that module half-initialised, and a later import of it then fails with
    a misleading "circular import" traceback (seen with rich). Nothing needs unwinding at this stage:
    commands that write files, start children or hold temp folders (convert, video, models add, serve)
    install their own handler before they do any of that."""
    _say_interrupted()
    os._exit(130)


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point (``imgxlate`` and ``python -m imgxlate``): :func:`run_command` of the app."""

    def load() -> object:
        from imgxlate.cli.app import app

        return app

    run_command(load, "imgxlate", argv)


def run_command(load_app: Callable[[], object], prog_name: str, argv: Sequence[str] | None = None) -> None:
    """Run a command line of ``load_app()`` (the ``imgxlate`` app, or ``imgxlate-train``'s) and exit.

    The SIGINT handler is installed first, before the heavy imports (typer, rich, numpy): commands
    that handle Ctrl-C themselves (convert, video, models add) install their own for their duration
    and restore this one.

    With ``--json`` anywhere on the line, a usage error found while parsing (an unknown option, a value
    not among the choices) also writes a JSON error object on stdout, as every later error does; so
    does a Ctrl-C that comes before the command has its own handler."""
    global _JSON_ERROR
    args = list(sys.argv[1:] if argv is None else argv)
    _JSON_ERROR = "--json" in args
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # not when the shell ignores SIGINT
        signal.signal(signal.SIGINT, _interrupted_early)
    try:
        sys.exit(_run(load_app(), args, _JSON_ERROR, prog_name))
    except KeyboardInterrupt:  # Ctrl-C inside code that restored Python's default handler
        _say_interrupted()
        sys.exit(130)


def _run(app: object, args: list[str], as_json: bool, prog_name: str = "imgxlate") -> int:
    """Run the app and turn what click raises into the exit code, as click's standalone mode does; a
    usage error found while parsing is shown with the option it is about, and with ``as_json`` also
    written as a JSON error object on stdout."""
    import typer
    from typer import rich_utils

    from imgxlate.cli.common import emit_json, json_error

    # Click's exception classes, whether Typer uses click itself or its own copy of it.
    click_exception = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")
    usage_error = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")
    try:
        if (name := file_named_like_an_option(args)) is not None:
            pattern = "*" + os.path.splitext(name)[1]
            raise usage_error(
                f"{name!r} is the name of a file here, but it reads as an option (the shell puts such names in "
                f"when it expands a pattern like {pattern}); put -- between the options and the file names "
                f"(... --out OUT -- {pattern}) or write the pattern as ./{pattern}" if prog_name == "imgxlate" else
                f"{name!r} is the name of a file here, but it reads as an option; write it as ./{name}")
        rv = app(prog_name=prog_name, args=args, standalone_mode=False)  # type: ignore[operator]
    except click_exception as exc:
        _name_the_source(exc)
        _tidy_choice_message(exc)
        rich_utils.rich_format_error(exc)
        if as_json:
            emit_json(json_error(exc.format_message(), "UsageError", exc.exit_code))
        return int(exc.exit_code)
    except typer.Exit as exc:
        return int(exc.exit_code)
    except typer.Abort:
        if not as_json:
            sys.stderr.write("Aborted!\n")
        return 1
    return rv if isinstance(rv, int) else 0


def file_named_like_an_option(args: Sequence[str]) -> str | None:
    """The first word before ``--`` that starts with ``-`` and names a file here (one with a suffix, as
    a shell pattern like ``*.jpg`` puts them in), or None. A word right after an option is left alone:
    it may be that option's value (``--out -results``).

    A photo named ``-o.jpg`` in a folder converted with ``imgxlate convert *.jpg --out OUT`` reached
    the command as the option ``-o`` with the value ``.jpg``: a later ``--out`` replaced it silently
    (the file was left out), and without one every result went into a folder named ``.jpg``."""
    previous = ""
    for arg in args:
        if arg == "--":
            return None
        after_option = previous.startswith("-") and "=" not in previous
        if (arg.startswith("-") and not after_option and os.path.splitext(arg)[1]
                and os.path.isfile(arg)):
            return arg
        previous = arg
    return None


def _tidy_choice_message(exc: BaseException) -> None:
    """Typer words a value not among an option's choices "Value error, 'exactt' is not one of 'exact',
    'blend'." (a validation library's prefix): without the prefix, and with the nearest choice."""
    from imgxlate.errors import did_you_mean

    message = getattr(exc, "message", None)
    if not isinstance(message, str) or not message.startswith("Value error, "):
        return
    import re

    message = message.removeprefix("Value error, ")
    quoted = re.findall(r"'([^']*)'", message)  # the value given, then the choices
    if " is not one of " in message and len(quoted) > 1 and (hint := did_you_mean(quoted[0], quoted[1:])):
        message = message.rstrip(".") + hint
    exc.message = message  # type: ignore[attr-defined]


def _name_the_source(exc: BaseException) -> None:
    """Click names an option's environment variable in every error about the option ("Invalid value
    for '--device' (env var: 'IMGXLATE_DEVICE')"), also when the bad value was typed and the variable
    is not set: name the variable only when the value came from it."""
    param, ctx = getattr(exc, "param", None), getattr(exc, "ctx", None)
    envvar = getattr(param, "envvar", None)
    if param is None or not envvar or getattr(exc, "param_hint", None) is not None:
        return
    source = ctx.get_parameter_source(param.name) if ctx is not None else None
    hint = " / ".join(f"'{o}'" for o in param.opts)
    if source is not None and source.name == "ENVIRONMENT":
        hint += f" (from the environment variable {envvar})"
    exc.param_hint = hint
