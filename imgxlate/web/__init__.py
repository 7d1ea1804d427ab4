"""The ``imgxlate serve`` web page (the optional ``web`` extra: Gradio).

:mod:`imgxlate.web.service` does the work with the same library functions as the CLI (no Gradio
needed, testable on its own); :mod:`imgxlate.web.app` builds the Gradio page on top of it and
launches it. ``imgxlate.cli.serve`` is only the command line around :func:`imgxlate.web.app.serve`.
"""

from __future__ import annotations

import os
from typing import Any

from imgxlate.errors import ImgxlateError
from imgxlate.extras import pip_install

EXTRA_HINT = pip_install("web")


class WebExtraMissingError(ImgxlateError):
    """Gradio (the ``web`` extra) is not installed."""

    exit_code = 2


def check_gradio_installed() -> None:
    """:class:`WebExtraMissingError` when Gradio is not installed, without importing it: Gradio fixes
    its temp folder when it is imported, and the page points it at the service's (made later)."""
    import importlib.util

    if importlib.util.find_spec("gradio") is None:
        raise WebExtraMissingError(f"the web page needs Gradio, which is not installed: {EXTRA_HINT}")


def require_gradio() -> Any:
    """Import and return :mod:`gradio`, or raise :class:`WebExtraMissingError` naming the extra.

    Gradio's usage analytics (network calls at import and launch) are switched off unless the user
    set ``GRADIO_ANALYTICS_ENABLED`` themselves.
    """
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    try:
        import gradio
    except ImportError as exc:
        raise WebExtraMissingError(
            f"the web page needs Gradio, which is not installed ({exc.msg}): {EXTRA_HINT}"
        ) from None
    return gradio
