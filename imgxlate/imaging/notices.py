"""What the imaging code says about one image it could still handle (a broken ICC profile ignored,
EXIF left out), as texts the caller attaches to that file's result.

Inside :func:`collected` the texts go to the list it yields, for the thread that opened it (the batch
decodes and encodes on pool threads, one file at a time per thread); elsewhere they are ordinary
warnings (:class:`ImageWarning`). A batch of thousands of photos then says which file each one is
about, once per file, in its summary and its ``--json`` notes, instead of one Python warning line
for the whole run.
"""

from __future__ import annotations

import contextlib
import threading
import warnings
from collections.abc import Iterator

__all__ = ["ImageWarning", "collected", "image_warning"]


class ImageWarning(UserWarning):
    """Something in an image was off and was handled (see the message)."""


_local = threading.local()


def image_warning(text: str, stacklevel: int = 2, source: object = None) -> None:
    """Say ``text`` about the image being handled: into this thread's :func:`collected` list (whose
    reader names the file), or as a warning (``stacklevel`` as for ``warnings.warn``, counted from the
    caller) that names ``source``, the file, when given."""
    sink: list[str] | None = getattr(_local, "sink", None)
    if sink is not None:
        sink.append(text)
        return
    warnings.warn(f"{source}: {text}" if source is not None else text, ImageWarning, stacklevel=stacklevel + 1)


@contextlib.contextmanager
def collected() -> Iterator[list[str]]:
    """Collect this thread's image warnings of the block into the list yielded."""
    previous = getattr(_local, "sink", None)
    _local.sink = found = []
    try:
        yield found
    finally:
        _local.sink = previous
