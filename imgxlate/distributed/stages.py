"""The three stages of a distributed run, as functions of one row (a dict) so Ray Data can run them.

    decode (CPU task)  ->  translate (actor: one model session each)  ->  encode + write (CPU task)

A row carries the job (``index``, ``src``, ``dst``), the decoded image between the first two stages,
the model's output between the last two, and the outcome (``status``, ``reason``, ``seconds``,
``width``, ``height``, ``provider``). A stage that fails marks the row failed with the same reason
text as the local run and later stages pass it through, so one bad file never stops the job.
Every stage calls the local run's functions (decoder, Translator, writer): a distributed run is the
local run spread over processes, not a second implementation.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, ClassVar

from imgxlate.distributed import storage
from imgxlate.distributed.plan import FAILED, PENDING, SKIPPED
from imgxlate.errors import OutputExistsError
from imgxlate.imaging.notices import collected
from imgxlate.options import ImageOptions, ModelSpec

CONVERTED = "converted"


def _failed(row: dict[str, Any], exc: BaseException) -> dict[str, Any]:
    from imgxlate.batch import failure_reason
    from imgxlate.errors import DiskFullError

    # disk_full: the driver stops the job on it, as the local run stops its batch
    row.update(status=FAILED, reason=failure_reason(exc), image=None, output=None,
               disk_full=isinstance(exc, DiskFullError))
    return row


def decode(row: dict[str, Any], *, options: ImageOptions) -> dict[str, Any]:
    """Read and decode ``row['src']`` (downloading it first when it is a URL)."""
    from imgxlate.imaging.decode import DEFAULT_MAX_PIXELS, read_image
    from imgxlate.imaging.encode import fit_to_target

    row.setdefault("image", None)
    row.setdefault("output", None)
    if row["status"] != PENDING:
        return row
    limit = DEFAULT_MAX_PIXELS if options.max_pixels is None else options.max_pixels
    t0 = time.perf_counter()
    local: Path | None = None  # a URL's downloaded copy
    try:
        with collected() as said:
            if storage.is_url(row["src"]):
                with storage.scratch() as folder:
                    local = storage.download(row["src"], folder)
                    image = read_image(local, max_pixels=limit)
            else:
                image = read_image(row["src"], max_pixels=limit)
    except Exception as exc:  # noqa: BLE001 - an unreadable file is this file's failure
        return _naming_url(_failed(row, exc), local, row["src"])
    row["said"] = _joined(row.get("said", ""), [_url_for(text, local, row["src"]) for text in said])
    image = fit_to_target(image, row["dst"])  # a multi-page TIFF's pages, where the output holds them
    row.update(image=image, width=image.width, height=image.height, pages_left_out=image.pages_left_out,
               views_left_out=image.views_left_out,
               seconds=row.get("seconds", 0.0) + time.perf_counter() - t0)
    return row


class Translate:
    """A Ray actor holding one model session; Ray Data calls it once per row. Its settings are class
    attributes (see :func:`translator_class`), so the actor is built without constructor arguments in
    the object store (which Ray warns about for restartable actors)."""

    SPEC: ClassVar[ModelSpec] = ModelSpec()
    OPTIONS: ClassVar[ImageOptions] = ImageOptions()

    def __init__(self) -> None:
        self.translator = self.SPEC.load()
        self.tiling = self.OPTIONS.tiling_args

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        row["provider"] = self.translator.runtime
        if row["status"] != PENDING:
            return row
        t0 = time.perf_counter()
        try:
            row["output"] = self.translator.translate_decoded(row["image"], **self.tiling)
        except Exception as exc:  # noqa: BLE001 - a model failure on one image must not stop the job
            return _failed(row, exc)
        row["seconds"] += time.perf_counter() - t0
        return row


def write(row: dict[str, Any], *, options: ImageOptions) -> dict[str, Any]:
    """Encode and write the result atomically (locally) or upload the finished file (URL)."""
    image, output = row.pop("image", None), row.pop("output", None)
    if row["status"] != PENDING:
        return row
    t0 = time.perf_counter()
    local: Path | None = None  # a URL's file, encoded before its upload
    try:
        with collected() as said:
            if storage.is_url(row["dst"]):
                with storage.scratch() as folder:
                    local = folder / row["dst"].rsplit("/", 1)[-1]  # the encoder picks the format by the name
                    _write_output(row, output, image, options, local)
            else:
                _write_output(row, output, image, options, None)
    except OutputExistsError as exc:  # another run wrote it since planning: kept
        row.update(status=SKIPPED, reason=str(exc))
        return row
    except Exception as exc:  # noqa: BLE001 - a failed write is this file's failure
        return _naming_url(_failed(row, exc), local, row["dst"])
    row["said"] = _joined(row.get("said", ""), [_url_for(text, local, row["dst"]) for text in said])
    row.update(status=CONVERTED, seconds=row["seconds"] + time.perf_counter() - t0)
    return row


def _joined(before: str, said: list[str]) -> str:
    """The image notes of a row, one per line (a string column: Ray Data's blocks need one type)."""
    return "\n".join([*said_in(before), *(text.replace("\n", " ") for text in said)])


def said_in(column: str) -> list[str]:
    """The image notes kept in a row's ``said`` column (see :func:`_joined`)."""
    return [text for text in column.split("\n") if text]


def _url_for(text: str, local: Path | None, url: str) -> str:
    """``text`` naming ``url`` where it named the URL's local copy (gone with its scratch folder)."""
    return text if local is None else text.replace(str(local), url)


def _naming_url(row: dict[str, Any], local: Path | None, url: str) -> dict[str, Any]:
    row["reason"] = _url_for(row["reason"], local, url)
    return row


def _write_output(row: dict[str, Any], output: Any, image: Any, options: ImageOptions, local: Path | None) -> None:
    from imgxlate.imaging.encode import write_image

    if local is not None:  # a URL: encoded into a scratch folder, then uploaded in one stream
        write_image(local, output, image, fmt=options.fmt, quality=options.quality)
        storage.upload(local, row["dst"])
    else:  # the folders are made by the atomic write, whose errors name the output as the local run's do
        write_image(row["dst"], output, image, fmt=options.fmt, quality=options.quality,
                    replace=row.get("replace", True))


def translator_class(spec: ModelSpec, options: ImageOptions) -> type[Translate]:
    """A :class:`Translate` subclass carrying one run's settings (Ray pickles the class by value)."""
    return type("Translate", (Translate,), {"SPEC": spec, "OPTIONS": options})
