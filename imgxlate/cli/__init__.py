"""The ``imgxlate`` command line: ``convert``, ``video``, ``models``, ``--version``.

One module per command (:mod:`.convert`, :mod:`.video`, :mod:`.models`), shared options and helpers in
:mod:`.common`, the Typer app that registers them in :mod:`.app`; :func:`main` is the console entry
point.
"""

from __future__ import annotations

import sys


def main() -> None:
    """Console entry point (``imgxlate`` and ``python -m imgxlate``)."""
    from imgxlate.cli.common import stderr

    try:
        from imgxlate.cli.app import app

        app(prog_name="imgxlate")
    except KeyboardInterrupt:  # Ctrl-C outside a command's own handling (e.g. while importing)
        stderr.print("interrupted")
        sys.exit(130)
