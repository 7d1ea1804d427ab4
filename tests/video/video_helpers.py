"""Helpers of the video tests: clips made here with the FFmpeg binary of imageio-ffmpeg (an
independent reference: imgxlate itself decodes and encodes in-process with PyAV), a tiny random model."""

from __future__ import annotations

import re
import subprocess
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

FPS = 12
imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg", reason="the tests' reference FFmpeg comes from imageio-ffmpeg")
FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()


def ffmpeg(*args: str) -> None:
    subprocess.run([FFMPEG, "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *args], check=True)


def make_clip(path: Path, *extra: str, size: str = "97x61", seconds: float = 2.0, audio: bool = True) -> Path:
    """testsrc2 pattern (+ sine tone), odd size, H.264 4:4:4 (4:2:0 cannot hold odd sizes)."""
    w, h = size.split("x")
    args = ["-f", "lavfi", "-i", f"testsrc2=s=128x96:r={FPS}:d={seconds}"]
    if audio:
        args += ["-f", "lavfi", "-i", f"sine=f=440:d={seconds}"]
    args += ["-vf", f"format=yuv444p,crop={w}:{h}:0:0", "-c:v", "libx264", "-pix_fmt", "yuv444p"]
    if audio:
        args += ["-c:a", "aac"]
    ffmpeg(*args, *extra, str(path))
    return path


def frame_times(path: Path) -> list[float]:
    """Presentation times of the video frames, read with FFmpeg's framecrc (independent of imgxlate)."""
    out = subprocess.run(
        [FFMPEG, "-hide_banner", "-nostdin", "-i", str(path), "-map", "0:v:0", "-c", "copy",
         "-f", "framecrc", "-"], capture_output=True, check=True, text=True,
    ).stdout
    tb = Fraction(1)
    times = []
    for line in out.splitlines():
        m = re.match(r"#tb 0: (\d+)/(\d+)", line)
        if m:
            tb = Fraction(int(m.group(1)), int(m.group(2)))
        elif line and not line.startswith("#"):
            pts = int(line.split(",")[2])
            times.append(float(pts * tb))
    return sorted(times)


def stream_codecs(path: Path) -> list[str]:
    text = subprocess.run([FFMPEG, "-hide_banner", "-i", str(path)], capture_output=True,
                          text=True, check=False).stderr
    return re.findall(r"Stream #0:\d+.*?: (\w+: \w+)", text)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".imgxlate-tmp"))


def read_png(path: Path) -> np.ndarray:

    return np.asarray(Image.open(path).convert("RGB"))


def _pngs(folder: Path) -> list[np.ndarray]:
    return [read_png(p) for p in sorted(folder.glob("frame_*.png"))]


def stop_at(frames: int):
    """A progress callback that stops a conversion (KeyboardInterrupt, as Ctrl-C) once ``frames`` are done."""

    def stop(done: int, total: int | None) -> None:
        if done >= frames:
            raise KeyboardInterrupt

    return stop
