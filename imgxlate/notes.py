"""Notes: what the library tells its caller about a run, as data (a kind and a text).

Callers decide by ``kind`` how to show a note (the CLI prints ``direction`` notes as plain
information, the others as warnings); nothing matches note texts. Kinds:

- ``direction``: which way a model pair runs (``translating photo -> vangogh with ...``);
- ``no-metadata``: the model has no imgxlate metadata, so RGB NCHW in [-1, 1] is assumed;
- ``ignored``: an option had no effect (``--to`` on a single generator without metadata);
- ``fallback``: the run differs from what was asked (resized to a fixed-size model's input, blend
  tiling instead of exact);
- ``partial``: a file was converted in part (the first page of a multi-page TIFF, the first view of
  a stereo MPO);
- ``image``: something in a file was off and was handled (a broken ICC profile ignored, EXIF that
  could not be read or written left out).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

NoteKind = Literal["direction", "no-metadata", "ignored", "fallback", "partial", "image"]
KINDS: tuple[NoteKind, ...] = ("direction", "no-metadata", "ignored", "fallback", "partial", "image")


@dataclass(frozen=True)
class Note:
    kind: NoteKind
    text: str

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown note kind {self.kind!r}; one of {', '.join(KINDS)}")

    def __str__(self) -> str:
        return self.text
