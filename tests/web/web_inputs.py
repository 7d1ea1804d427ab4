"""Small test inputs for the web tests (Pillow-made, a few KB each)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def gradient(h: int, w: int, channels: int = 3, dtype: type = np.uint8) -> np.ndarray:
    top = 255 if dtype == np.uint8 else 65535
    y, x = np.mgrid[0:h, 0:w]
    planes = [(x * top // max(w - 1, 1)), (y * top // max(h - 1, 1)), ((x + y) * top // max(h + w - 2, 1))]
    planes += [np.full((h, w), top * 3 // 4)] * (channels - 3)
    return np.stack(planes[:channels], axis=-1).astype(dtype)


def jpeg(path: Path, w: int = 64, h: int = 48, orientation: int | None = None) -> Path:
    from PIL import Image

    im = Image.fromarray(gradient(h, w))
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    im.save(path, "JPEG", quality=92, exif=exif.tobytes())
    return path


def png_rgba(path: Path, w: int = 40, h: int = 32) -> Path:
    from PIL import Image

    arr = gradient(h, w, 4)
    arr[: h // 2, :, 3] = 0  # the top half fully transparent
    Image.fromarray(arr, "RGBA").save(path, "PNG")
    return path


def png16(path: Path, w: int = 40, h: int = 30) -> Path:
    import cv2

    cv2.imwrite(str(path), gradient(h, w, 3, np.uint16)[..., ::-1])  # OpenCV writes BGR
    return path


def text_file(path: Path) -> Path:
    path.write_text("this is not a picture\n")
    return path


def truncated_jpeg(path: Path) -> Path:
    whole = jpeg(path.with_name("whole-" + path.name), 64, 48).read_bytes()
    path.write_bytes(whole[: len(whole) // 2])
    return path


def _ffmpeg() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def clip_with_sound(path: Path, seconds: float = 3.0, w: int = 64, h: int = 48, fps: int = 8) -> Path:
    """A small H.264 + AAC MP4 (test pattern and a tone)."""
    import subprocess

    subprocess.run(
        [_ffmpeg(), "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc=size={w}x{h}:rate={fps}:duration={seconds}",
         "-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}", "-c:v", "libx264", "-pix_fmt", "yuv420p",
         "-c:a", "aac", "-shortest", str(path)],
        check=True, capture_output=True,
    )
    return path


def _ffmpeg_info(path: Path) -> str:
    import subprocess

    return subprocess.run([_ffmpeg(), "-hide_banner", "-i", str(path)], capture_output=True, text=True,
                          check=False).stderr


def probe_streams(path: Path) -> set[str]:
    """{"video", "audio", ...}: the kinds of stream in a media file (from ffmpeg -i)."""
    import re

    return {m.lower() for m in re.findall(r"Stream #\d+:\d+.*?: (Video|Audio|Subtitle):", _ffmpeg_info(path))}


def duration(path: Path) -> float:
    import re

    m = re.search(r"Duration: (\d+):(\d+):(\d+(?:\.\d+)?)", _ffmpeg_info(path))
    assert m is not None, f"no duration for {path}"
    return int(m[1]) * 3600 + int(m[2]) * 60 + float(m[3])
