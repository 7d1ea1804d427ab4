"""The domain errors of imgxlate.

Library code raises subclasses of :class:`ImgxlateError` whose message says what went wrong and what to
do next. The CLI prints ``str(err)`` to stderr without a traceback and exits with ``err.exit_code``.
"""

from __future__ import annotations

import errno
from collections.abc import Iterable


class ImgxlateError(Exception):
    """Base class of every error imgxlate raises on purpose."""

    exit_code = 1


class UsageError(ImgxlateError):
    """The command line or call asked for something contradictory or impossible."""

    exit_code = 2


class ModelNotFoundError(ImgxlateError):
    """No model matches the requested name, path or target domain."""

    exit_code = 2


class AmbiguousModelError(ImgxlateError):
    """More than one model matches; the user has to pick one."""

    exit_code = 2


class InvalidModelError(ImgxlateError):
    """A file is not a usable imgxlate / ONNX generator."""


class DeviceError(ImgxlateError):
    """The requested execution device is not available."""

    exit_code = 2


class ImageReadError(ImgxlateError):
    """An input image cannot be read (corrupt, not an image, too large, unsupported mode)."""


class ImageWriteError(ImgxlateError):
    """An output image cannot be written."""


class OutputExistsError(ImageWriteError):
    """The output file appeared after the run decided to write it (another run writing into the same
    folder): it is kept as it is, and the result is "skipped"."""


class DiskFullError(ImgxlateError, OSError):
    """No space left (or quota exceeded) while writing: nothing further can be written, so a batch
    stops. Also an ``OSError`` with errno ``ENOSPC``, for code that handles OS errors."""

    def __init__(self, message: str) -> None:
        OSError.__init__(self, errno.ENOSPC, message)
        self.message = message

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[type, tuple[str]]:  # picklable (worker processes)
        return (type(self), (self.message,))


class VideoError(ImgxlateError):
    """An input video cannot be read or an output video cannot be written."""


class TrainingError(ImgxlateError):
    """Training cannot start or continue (empty data folder, bad checkpoint, ...)."""


class TrainingInterrupted(TrainingError):
    """A stop signal ended a training run after its last finished step was saved: not a failure. The
    CLI exits 128 + the signal (130 for Ctrl-C, 143 for SIGTERM); this code is Ctrl-C's."""

    exit_code = 130

    def __init__(self, step: int, checkpoint: str, out: str, stage: str = "training", how: str | None = None,
                 signum: int = 0) -> None:
        # how: the command that goes on (a distributed run's names torchrun); by default --resume OUT
        how = how or f"--resume {out}"
        if stage == "export":
            text = (f"interrupted while exporting the models after the last step ({step}); the checkpoint is "
                    f"saved and the model folder left as it was: {how} exports them")
        else:
            text = f"interrupted at step {step}; checkpoint saved, continue with {how}"
        super().__init__(text)
        # stage: "training" (steps were left) or "export" (the steps were done, the export was not)
        self.step, self.checkpoint, self.out, self.stage = step, checkpoint, out, stage
        if signum:  # the signal that stopped the run, when known (a distributed run's ranks agree on it)
            self.exit_code = 128 + signum


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """Return ``"; did you mean 'x'?"`` for the closest choice, or ``""`` when nothing is close."""
    import difflib  # here, not at the top: the CLI's start-up imports this module

    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def brief(exc: BaseException, limit: int = 300) -> str:
    """A third-party exception's message for one line of ours: its first line, and when that is longer
    than ``limit`` its start and its end (where native libraries put the reason: ONNX Runtime ends a
    failed session with "error msg: Resource temporarily unavailable", which a cut at the start lost)."""
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else type(exc).__name__
    if len(text) <= limit:
        return text
    half = (limit - 5) // 2
    return f"{text[:half]} ... {text[-half:]}"
