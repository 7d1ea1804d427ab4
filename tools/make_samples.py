"""Write the bundled sample photos (imgxlate/samples/*.jpg) and the README's before/after strip.

The samples are real photographs that scikit-image ships in its wheel (``skimage.data``), each under
a licence that allows redistribution (public domain or CC0: see imgxlate/samples/README.md, which
quotes the docstrings). Needs scikit-image (``pip install scikit-image``); deterministic.

    python tools/make_samples.py            # the sample JPEGs
    python tools/make_samples.py --strip    # also docs/images/samples_vangogh.jpg, made by running
                                            # `imgxlate convert imgxlate/samples --to vangogh`
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "imgxlate" / "samples"
STRIP = REPO / "docs" / "images" / "samples_vangogh.jpg"
# file name -> skimage.data function; licence and source are in imgxlate/samples/README.md
SAMPLES = {
    "rocket.jpg": "rocket",  # public domain (SpaceX)
    "coffee.jpg": "coffee",  # CC0 (Rachel Michetti)
    "chelsea.jpg": "chelsea",  # CC0 (Stefan van der Walt)
    "astronaut.jpg": "astronaut",  # public domain (NASA)
}
QUALITY = 90
STRIP_HEIGHT = 200  # px per row of the strip


def write_samples() -> list[Path]:
    from skimage import data  # the tool is for maintainers; the package itself does not need skimage

    OUT.mkdir(parents=True, exist_ok=True)
    for stale in OUT.glob("*.jpg"):
        if stale.name not in SAMPLES:
            stale.unlink()
    paths = []
    for name, func in SAMPLES.items():
        img = np.asarray(getattr(data, func)())
        path = OUT / name
        Image.fromarray(img[:, :, :3]).save(path, quality=QUALITY, optimize=True)
        print(f"{path.relative_to(REPO)} {img.shape[1]}x{img.shape[0]} {path.stat().st_size // 1024} KB")
        paths.append(path)
    return paths


def _row(images: list[Image.Image], height: int, gap: int) -> Image.Image:
    scaled = [
        im.resize((round(im.width * height / im.height), height), Image.Resampling.LANCZOS) for im in images
    ]
    row = Image.new("RGB", (sum(im.width for im in scaled) + gap * (len(scaled) - 1), height), "white")
    x = 0
    for im in scaled:
        row.paste(im, (x, 0))
        x += im.width + gap
    return row


def write_strip(out: Path = STRIP, model: str | None = None) -> Path:
    """Convert the samples with the installed CLI and put inputs (top) over outputs (bottom).

    ``model``: a pair folder for ``--model``; default the bundled one.
    """
    exe = shutil.which("imgxlate") or sys.exit("imgxlate is not on PATH: pip install -e . first")
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [exe, "convert", str(OUT), "--to", "vangogh", "--out", tmp] + (
            ["--model", model] if model else []
        )
        print(" ".join(cmd))
        subprocess.run(cmd, check=True)
        names = list(SAMPLES)
        before = [Image.open(OUT / n).convert("RGB") for n in names]
        after = [Image.open(Path(tmp) / n).convert("RGB") for n in names]
        top, bottom = _row(before, STRIP_HEIGHT, 4), _row(after, STRIP_HEIGHT, 4)
    strip = Image.new("RGB", (top.width, 2 * STRIP_HEIGHT + 4), "white")
    strip.paste(top, (0, 0))
    strip.paste(bottom, (0, STRIP_HEIGHT + 4))
    out.parent.mkdir(parents=True, exist_ok=True)
    strip.save(out, quality=85, optimize=True)
    print(f"{out} {strip.width}x{strip.height} {out.stat().st_size // 1024} KB")
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--strip", action="store_true", help="also write the before/after strip for the README")
    ap.add_argument(
        "--strip-out", type=Path, default=STRIP, help=f"where the strip goes (default {STRIP.name})"
    )
    ap.add_argument("--model", default=None, help="pair folder to convert with (default: the bundled one)")
    ap.add_argument("--no-samples", action="store_true", help="keep the sample JPEGs as they are")
    args = ap.parse_args(argv)
    if not args.no_samples:
        write_samples()
    if args.strip:
        write_strip(args.strip_out, args.model)


if __name__ == "__main__":
    main()
