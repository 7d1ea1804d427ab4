"""How good is a vangogh <-> photo generator pair? Cycle PSNR, a style classifier, checkerboard, sheets.

Run ``python bench/model_quality.py`` (or ``python -m bench.model_quality``) on a pair folder holding
``a2b.onnx`` (vangogh -> photo) and ``b2a.onnx`` (photo -> vangogh); ``--model DIR`` picks the folder,
default ``imgxlate/models/vangogh2photo``. Inference goes through ONNX Runtime on the CPU directly (input
``input``, float32 NCHW RGB in [-1, 1]; H and W reflect-padded at the bottom/right to a multiple of 4,
then cropped back), so this script measures the model files alone, not the pipeline around them.

Inputs
    test photos  ``--photos DIR`` (default ``../shared/corpus/photos``: 15 landscape photos, 256x256, none
                 of them in the training set). Every image is read by ``imgxlate.imaging.read_rgb8``, the
                 decoder ``imgxlate convert`` uses (EXIF rotation, ICC profile -> sRGB, any bit depth),
                 flattened onto white if it has alpha, rounded to 8 bits, resized so its shorter side is
                 256 (Lanczos) and centre-cropped square.
    training     ``--data DIR`` with ``vangogh/`` and ``photo/`` (default ``../shared/data/vangogh2photo``).
                 There are no held-out paintings: the paintings used for the vangogh cycle are training
                 images of the generator (they are held out from the style classifier only).

What it measures (printed as a table, written to ``--json PATH``, default ``OUT/quality.json``)
    cycle PSNR   photo -> vangogh -> photo against the input photo, and vangogh -> photo -> vangogh on
                 15 paintings, in dB over RGB at 8 bits (mean and min). It says how much content the
                 translation keeps; it says nothing about style (an identity generator scores infinity).
    vangogh rate A small CNN is trained to tell ``vangogh/`` from ``photo/`` (64-96 px random crops
                 resized to 64 px, balanced batches, seeded; 15 % of each folder held out to report its
                 own accuracy) and cached in ``--cache DIR`` (default ``bench/results/``). An image counts
                 as "vangogh" when the mean logit over a 3x3 grid of 80 px crops is positive. Rates are
                 given for the held-out paintings (the classifier's recall), the untranslated test photos
                 (its false-positive rate), the translated photos (b2a: want high), the cycle
                 reconstructions (want low) and the paintings translated to photos (a2b: want low).
                 A good model has translated >> untranslated.
    checkerboard Transposed convolutions with stride 2 leave a pattern that repeats every 2 px (one
                 upsampling) and every 4 px (two of them): sharp peaks in the 2-D spectrum at the
                 frequencies k/4 cycles/px (k = 1, 2, 3 on either axis). For an image (Hann-windowed,
                 mean removed, power summed over R, G, B) the *peak contrast* at a period is the energy
                 in the 3x3 bins around each of those lattice frequencies divided by 9x the mean
                 energy per bin of the ring of bins 3-6 away from it (the local broadband level:
                 texture, brush strokes; estimated as median / ln 2, and never below the level of
                 8-bit rounding noise). Noise-like texture has a contrast near 1 whatever its
                 strength; a periodic pattern raises it. Real inputs have some too (the test photos
                 0.2-4.5 at period 2: JPEG's 8 px block grid has harmonics at k/8), hence the score
                     checker_pN = 10 log10(contrast_pN(output) / contrast_pN(input))   [dB]
                 so 0 dB means the output carries no more period-N pattern than the input. The scale is
                 steep because photos have little energy that fine: a +-1/255 period-2 checkerboard
                 added to the 15 test photos scores +14 dB (max +24), +-4/255 (just visible zoomed in)
                 +26 dB; a +-1/255 period-4 pattern +4 dB at p4, +-4/255 +14 dB, +-8/255 +20 dB.
                 Measured at 256 px (the training size) and at 1024 px (4 photos upscaled with Lanczos,
                 translated at that size: the generator sees 4x smoother input per pixel, where any
                 pattern it adds stands out more). At 1024 the reference is the source photo at 256,
                 and for a photo smaller than 256 its original pixels: an upscale carries spectral
                 copies of its own low frequencies at k/4 (+14 dB of period-4 contrast on a test
                 photo at 4x) that say nothing about the generator.
                 ``energy_pN`` in the JSON is the plain ratio the issue asked for: the fraction of the
                 image's energy at those bins, output over input, in dB. It also moves when the output
                 merely has more or less fine texture than the input (blurring a photo: -30 dB,
                 noise of sigma 20/255: +7 dB, while the contrast score stays within 1 dB), and at
                 1024 the upscaled input has almost none, so read the contrast score first.

    border       Lines along the image edges. For each side, the mean squared derivative across the edge
                 (horizontal pixel differences for left/right, vertical for top/bottom, 8-bit levels,
                 summed over RGB) in the outer 8 px, divided by the same mean over the interior; the
                 score is that ratio for the output over that for the input, in dB, per side (mean over
                 the images), and ``worst`` = the largest side. 0 dB = the edge band is as busy,
                 relative to the interior, as the input's; a 40-level line one pixel in from the edge
                 of a textured 128 px image scores +3 dB. Measured on photo -> vangogh at 256 and
                 1024 px and on vangogh -> photo at 256 px.
    banding      Three smooth 512 px linear gradients (sky blue -> pale vertical, green -> ochre
                 horizontal, dark -> light grey vertical) translated photo -> vangogh. The profile
                 along the gradient (the mean of each row, or column, per channel) is fitted with a
                 cubic in the position; the score is the RMS residual in 8-bit levels, leaving out
                 16 px at both ends. Any smooth tone curve fits a cubic and texture averages out along
                 a row, so what is left is bands across the gradient. The inputs score 0.3 (8-bit
                 rounding); posterising a gradient to 8 levels scores > 3. A pure gradient is constant
                 along its lines, so a convolutional network's output is too (translation
                 equivariance) and any texture it paints shows as bands; the second figure is the same
                 score on the gradients with seeded noise of ``GRADIENT_NOISE`` = 2 levels added, as a
                 camera's photo would have (the inputs still score 0.3).

Images written to ``--out DIR`` (default ``bench/results/quality``): ``sheet_photos.png`` (a row per test
photo: input | photo->vangogh | back to photo), ``sheet_paintings.png`` (painting | vangogh->photo |
back to vangogh) and ``sheet_1024.png`` (input upscaled to 1024 | photo->vangogh at 1024 | its centre
256 px zoomed 4x with nearest neighbour, to see checkerboard) and ``sheet_gradients.png`` (each test
gradient | photo->vangogh).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import pickle
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from imgxlate._atomic import atomic_path, write_bytes_atomic
from imgxlate.errors import ImgxlateError, InvalidModelError, ModelNotFoundError, UsageError
from imgxlate.imaging import read_rgb8
from imgxlate.metadata import read_onnx_metadata

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("IMGXLATE_SHARED", REPO.parent / "shared"))
DEFAULT_MODEL = REPO / "imgxlate" / "models" / "vangogh2photo"
DEFAULT_PHOTOS = SHARED / "corpus" / "photos"
DEFAULT_DATA = SHARED / "data" / "vangogh2photo"
DEFAULT_CACHE = REPO / "bench" / "results"
IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}

SIZE = 256  # the training size of the generators and of every image here
HIRES = 1024
# Classifier: crops of CROP_MIN..CROP_MAX px (scale jitter) resized to CLS_INPUT px; test-time 3x3 grid
# of EVAL_CROP px crops. CLS_VERSION goes into the cache key: bump it when the classifier changes.
CLS_VERSION = 2
CROP_MIN, CROP_MAX, CLS_INPUT, EVAL_CROP = 64, 96, 64, 80
HELDOUT_FRACTION = 0.15
FULL = {"photos": 15, "paintings": 15, "hires": 4, "steps": 1200}
QUICK = {"photos": 4, "paintings": 4, "hires": 1, "steps": 200}


# ----------------------------------------------------------------------------------------------- images


def load_rgb(path: Path) -> np.ndarray:
    """Read any image as (H, W, 3) uint8 sRGB with imgxlate's own decoder (``read_rgb8``: the one
    ``imgxlate convert`` uses, EXIF rotation, ICC -> sRGB, 16-bit, CMYK, ...; alpha on white; the
    first frame of an animation)."""
    try:
        return read_rgb8(path)
    except ImgxlateError as exc:
        raise UsageError(f"cannot read {path} as an image ({exc}); remove it from the folder") from exc


def square(img: np.ndarray, size: int) -> np.ndarray:
    """Resize so the shorter side is ``size`` (Lanczos) and centre-crop to (size, size, 3)."""
    h, w = img.shape[:2]
    if (h, w) != (size, size):
        scale = size / min(h, w)
        nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
        img = np.asarray(Image.fromarray(img).resize((nw, nh), Image.Resampling.LANCZOS))
        y, x = (nh - size) // 2, (nw - size) // 2
        img = img[y : y + size, x : x + size]
    return np.ascontiguousarray(img)


def checker_reference(img: np.ndarray, size: int) -> np.ndarray | None:
    """The centre square of ``img`` at its own resolution when ``square`` had to enlarge it, else None.

    Upscaling puts spectral copies of an image's low frequencies at multiples of 1/scale cycles/px,
    i.e. right on the checkerboard lattice for 2x and 4x; the checkerboard score compares outputs
    with the image as it was before.
    """
    h, w = img.shape[:2]
    side = min(h, w)
    if side >= size or side < 32:
        return None
    y, x = (h - side) // 2, (w - side) // 2
    return np.ascontiguousarray(img[y : y + side, x : x + side])


def upscale(img: np.ndarray, size: int) -> np.ndarray:
    return np.asarray(Image.fromarray(img).resize((size, size), Image.Resampling.LANCZOS))


def list_images(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in IMAGE_EXTS and not p.name.startswith(".")
    )


# -------------------------------------------------------------------------------------------- generator


class Generator:
    """One ONNX generator file run with ONNX Runtime on the CPU: uint8 (H, W, 3) -> uint8 (H, W, 3)."""

    def __init__(self, path: Path, threads: int) -> None:
        import onnxruntime as ort

        self.path = path
        meta = read_onnx_metadata(str(path))
        self.metadata = meta.to_dict() if meta else {}
        self.multiple = int(meta.size_multiple) if meta else 4
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(
                str(path), sess_options=opts, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # ORT raises its own Fail/InvalidGraph classes
            raise InvalidModelError(f"ONNX Runtime cannot load {path} ({exc}); re-export the model") from exc
        names = [i.name for i in self.session.get_inputs()]
        if "input" not in names:
            raise InvalidModelError(
                f"{path} has inputs {names}, expected one named 'input'; export it with imgxlate.train.export"
            )
        self.seconds = 0.0
        self.pixels = 0

    def __call__(self, img: np.ndarray) -> np.ndarray:
        h, w = img.shape[:2]
        x = img.astype(np.float32).transpose(2, 0, 1)[None] / 127.5 - 1.0  # (1, 3, H, W) in [-1, 1]
        ph, pw = -h % self.multiple, -w % self.multiple
        if ph or pw:
            x = np.pad(x, ((0, 0), (0, 0), (0, ph), (0, pw)), mode="reflect")
        t0 = time.perf_counter()
        y = self.session.run(["output"], {"input": np.ascontiguousarray(x)})[0]
        self.seconds += time.perf_counter() - t0
        self.pixels += h * w
        y = y[0, :, :h, :w].transpose(1, 2, 0)
        return np.clip(np.rint((y + 1.0) * 127.5), 0, 255).astype(np.uint8)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# ------------------------------------------------------------------------------------------------ math


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two uint8 images over all channels; inf when identical."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


def _lattice_points(h: int, w: int) -> list[tuple[int, int, int]]:
    """(row bin, col bin, period) of the frequencies (i/4, j/4) cycles/px, i, j in 0..3, except DC.

    Period 2 = only 0 and 1/2 on both axes (one stride-2 upsampling); period 4 = any 1/4 or 3/4.
    """
    points = []
    for i in range(4):
        for j in range(4):
            if i == 0 and j == 0:
                continue
            period = 2 if i % 2 == 0 and j % 2 == 0 else 4
            points.append((i * h // 4, j * w // 4, period))
    return points


def spectral_peaks(img: np.ndarray) -> dict[str, float]:
    """Peak contrast and energy fraction of an (H, W, C) image at the period-2 and period-4 lattices.

    H and W are cropped to multiples of 4 so every lattice frequency falls exactly on an FFT bin.
    Returns ``contrast_p2``, ``contrast_p4`` (see the module docstring) and ``energy_p2``,
    ``energy_p4`` (lattice energy / total non-DC energy).
    """
    x = np.asarray(img, dtype=np.float64)
    if x.ndim == 2:
        x = x[:, :, None]
    h, w = x.shape[0] - x.shape[0] % 4, x.shape[1] - x.shape[1] % 4
    if h < 16 or w < 16:
        raise UsageError(f"image of {x.shape[1]}x{x.shape[0]} is too small for a spectrum (16x16 at least)")
    x = x[:h, :w] / 255.0
    window = np.outer(np.hanning(h), np.hanning(w))  # suppresses the edge discontinuity's leakage
    power = np.zeros((h, w))
    for c in range(x.shape[2]):
        chan = x[:, :, c] - x[:, :, c].mean()
        power += np.abs(np.fft.fft2(chan * window)) ** 2  # (H, W): bin (u, v) = freq (u/H, v/W)
    total = float(power.sum()) + 1e-20  # the mean is removed, so bin (0, 0) holds ~nothing
    # 8-bit rounding adds white noise of variance (1/255)^2 / 12 per pixel and channel, i.e. this much
    # power in every windowed bin: no image stored in 8 bits has a broadband level below it, and
    # flat, smooth or upscaled images would otherwise divide by ~0.
    floor = x.shape[2] * (1.0 / 255.0) ** 2 / 12.0 * float((window**2).sum())
    # A Hann-windowed sinusoid on an exact bin spreads over that bin and its two neighbours per axis,
    # so a 3x3 block holds all of a periodic pattern's energy; the ring 3..6 bins away holds none.
    off = np.arange(-6, 7)
    dy, dx = np.meshgrid(off, off, indexing="ij")
    cheb = np.maximum(np.abs(dy), np.abs(dx))
    peak_mask, ring_mask = cheb <= 1, cheb >= 3
    sums = {2: [0.0, 0.0], 4: [0.0, 0.0]}  # period -> [peak energy, 9 x ring median]
    for u, v, period in _lattice_points(h, w):
        block = power[np.ix_((u + off) % h, (v + off) % w)]  # 13x13 around the bin, wrapping
        sums[period][0] += float(block[peak_mask].sum())
        # The power of noise-like texture in a bin is exponentially distributed: mean = median / ln 2.
        sums[period][1] += 9.0 * max(float(np.median(block[ring_mask])) / math.log(2.0), floor)
    out: dict[str, float] = {}
    for period, (peak, ring) in sums.items():
        out[f"contrast_p{period}"] = peak / (ring + 1e-20)
        out[f"energy_p{period}"] = peak / total
    return out


def checker_scores(
    inputs: Sequence[np.ndarray],
    outputs: Sequence[np.ndarray],
    references: Sequence[np.ndarray] | None = None,
) -> dict[str, Any]:
    """Per-image dB scores of ``outputs`` (module docstring), aggregated as mean and max.

    ``checker_pN`` compares the output's peak contrast with that of ``references`` (default the
    inputs); ``energy_pN`` compares energy fractions with the inputs.
    """
    refs = inputs if references is None else references
    per: dict[str, list[float]] = {"checker_p2": [], "checker_p4": [], "energy_p2": [], "energy_p4": []}
    for a, r, b in zip(inputs, refs, outputs, strict=True):
        sa, sb = spectral_peaks(a), spectral_peaks(b)
        sr = sa if r is a else spectral_peaks(r)
        for p in (2, 4):
            per[f"checker_p{p}"].append(_db(sb[f"contrast_p{p}"], sr[f"contrast_p{p}"]))
            per[f"energy_p{p}"].append(_db(sb[f"energy_p{p}"], sa[f"energy_p{p}"]))
    return {k: {"mean": float(np.mean(v)), "max": float(np.max(v)), "per_image": v} for k, v in per.items()}


def _db(num: float, den: float) -> float:
    return 10.0 * math.log10(max(num, 1e-30) / max(den, 1e-30))


BORDER = 8  # px: width of the band along each image edge that the border score looks at
SIDES = ("left", "top", "right", "bottom")


def border_energy(img: np.ndarray, band: int = BORDER) -> dict[str, float]:
    """Per side: mean squared edge-normal derivative in the outer ``band`` px over the interior's.

    The derivative is taken across the edge (horizontal differences for left/right, vertical for
    top/bottom), in 8-bit levels squared, summed over the channels. A line drawn along an edge is a
    strong derivative in that direction right there; ordinary content has about the same energy near
    the edge as inside.
    """
    x = np.asarray(img, dtype=np.float64)
    if x.ndim == 2:
        x = x[:, :, None]
    h, w = x.shape[:2]
    if h < 4 * band or w < 4 * band:
        raise UsageError(f"image of {w}x{h} is too small for the border score ({4 * band} px at least)")
    dx = (np.diff(x, axis=1) ** 2).sum(axis=2)  # (H, W-1): dx[:, j] = x[:, j+1] - x[:, j]
    dy = (np.diff(x, axis=0) ** 2).sum(axis=2)  # (H-1, W)
    inner_x = float(dx[band:-band, band : w - 1 - band].mean())
    inner_y = float(dy[band : h - 1 - band, band:-band].mean())
    # the band's derivatives: the differences that touch one of its pixels (rows/cols 0..band)
    return {
        "left": float(dx[band:-band, :band].mean()) / max(inner_x, 1e-12),
        "right": float(dx[band:-band, w - 1 - band :].mean()) / max(inner_x, 1e-12),
        "top": float(dy[:band, band:-band].mean()) / max(inner_y, 1e-12),
        "bottom": float(dy[h - 1 - band :, band:-band].mean()) / max(inner_y, 1e-12),
    }


def border_scores(inputs: Sequence[np.ndarray], outputs: Sequence[np.ndarray]) -> dict[str, Any]:
    """border_SIDE = 10 log10(border_energy(output) / border_energy(input)) per image, in dB.

    0 dB: the output's edge band is as busy, relative to its interior, as the input's; border lines
    make it positive. ``worst`` is the largest of the four sides' means.
    """
    per: dict[str, list[float]] = {side: [] for side in SIDES}
    for a, b in zip(inputs, outputs, strict=True):
        ea, eb = border_energy(a), border_energy(b)
        for side in SIDES:
            per[side].append(_db(eb[side], ea[side]))
    out: dict[str, Any] = {
        side: {"mean": float(np.mean(v)), "max": float(np.max(v)), "per_image": v} for side, v in per.items()
    }
    out["worst"] = max(out[side]["mean"] for side in SIDES)
    return out


# Smooth test gradients (sky-like vertical, warm horizontal, grey vertical) for the banding score.
GRADIENTS = {
    "sky_vertical": ((70, 120, 200), (225, 215, 190), "vertical"),
    "field_horizontal": ((90, 140, 60), (220, 180, 90), "horizontal"),
    "grey_vertical": ((40, 40, 40), (215, 215, 215), "vertical"),
}
GRADIENT_SIZE = 512
BAND_MARGIN = 16  # px of the profile ends left out (the border score covers the edges)
# A pure gradient is constant along its lines, and a convolutional network is translation-equivariant,
# so its output is constant along them too: any texture it paints can only be bands. Photos carry
# sensor noise; this much (in 8-bit levels) breaks the symmetry, and the second banding figure shows
# what is left.
GRADIENT_NOISE = 2.0


def gradient_image(size: int, top: Sequence[int], bottom: Sequence[int], direction: str) -> np.ndarray:
    """A (size, size, 3) uint8 linear gradient from colour ``top`` to ``bottom`` along ``direction``."""
    yy, xx = np.mgrid[:size, :size] / (size - 1.0)
    t = yy if direction == "vertical" else xx
    a, b = np.asarray(top, np.float64), np.asarray(bottom, np.float64)
    return np.clip(np.rint(a + (b - a) * t[:, :, None]), 0, 255).astype(np.uint8)


def with_noise(img: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    """``img`` (uint8) plus seeded Gaussian noise of ``sigma`` 8-bit levels, as a camera's would be."""
    noise = np.random.default_rng(seed).normal(0.0, sigma, img.shape)
    return np.clip(np.rint(img.astype(np.float64) + noise), 0, 255).astype(np.uint8)


def banding_score(img: np.ndarray, direction: str) -> float:
    """RMS (8-bit levels) of the steps in an image's profile along a gradient's direction.

    The profile is the mean over the lines across the gradient (rows for a vertical one, columns for
    a horizontal one), per channel: texture and noise average
    out over a line, bands across the gradient do not. A cubic in the position fits every smooth
    tone curve a translation may apply; the score is the RMS of the profile's residual from that
    fit, over the channels, leaving out ``BAND_MARGIN`` px at both ends. The input gradients score
    ~0.3 (8-bit rounding); visible bands are several levels.
    """
    x = np.asarray(img, dtype=np.float64)
    prof = x.mean(axis=1) if direction == "vertical" else x.mean(axis=0)  # (length, channels)
    prof = prof[BAND_MARGIN : len(prof) - BAND_MARGIN]
    t = np.linspace(-1.0, 1.0, len(prof))
    basis = np.stack([t**i for i in range(4)], axis=1)
    coef, *_ = np.linalg.lstsq(basis, prof, rcond=None)
    return float(np.sqrt(np.mean((prof - basis @ coef) ** 2)))


# ------------------------------------------------------------------------------------------ classifier


@dataclass
class Split:
    """Training / held-out files of one class (paths sorted, then a seeded permutation)."""

    train: list[Path]
    heldout: list[Path]


def split_files(files: list[Path], seed: int, salt: int) -> Split:
    if len(files) < 2:
        raise UsageError(
            f"need at least 2 images in {files[0].parent if files else 'the data folder'} "
            "to hold some out for the style classifier"
        )
    order = np.random.default_rng([seed, salt]).permutation(len(files))
    n_held = max(1, round(HELDOUT_FRACTION * len(files)))
    return Split([files[i] for i in sorted(order[n_held:])], [files[i] for i in sorted(order[:n_held])])


def _build_classifier() -> Any:
    from torch import nn

    def block(cin: int, cout: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 3, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

    # (N, 3, 64, 64) -> 32 -> 16 -> 8 -> (N, 96, 4, 4) -> global mean -> (N, 1) logit of "vangogh".
    return nn.Sequential(
        *block(3, 16),
        *block(16, 32),
        *block(32, 64),
        *block(64, 96),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(96, 1),
    )


def _to_input(crops: np.ndarray) -> Any:
    """(N, s, s, 3) uint8 -> (N, 3, 64, 64) float in [-1, 1], antialiased bilinear resize."""
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    if t.shape[-1] != CLS_INPUT or t.shape[-2] != CLS_INPUT:
        t = F.interpolate(
            t, size=(CLS_INPUT, CLS_INPUT), mode="bilinear", antialias=True, align_corners=False
        )
    return t


def _random_crops(images: list[np.ndarray], idx: np.ndarray, side: int, rng: np.random.Generator) -> Any:
    """Random ``side`` px crops (clipped to the image), half of them mirrored: (len(idx), 3, 64, 64).

    Every image here went through ``square``, so all have the same size and the crops stack.
    """
    crops = []
    for i in idx:
        img = images[int(i)]
        h, w = img.shape[:2]
        s = min(side, h, w)
        y, x = int(rng.integers(0, h - s + 1)), int(rng.integers(0, w - s + 1))
        crop = img[y : y + s, x : x + s]
        crops.append(crop[:, ::-1] if rng.random() < 0.5 else crop)
    return _to_input(np.stack(crops))


def _grid_crops(img: np.ndarray) -> Any:
    h, w = img.shape[:2]
    s = min(EVAL_CROP, h, w)
    ys = np.linspace(0, h - s, 3).round().astype(int)
    xs = np.linspace(0, w - s, 3).round().astype(int)
    return _to_input(np.stack([img[y : y + s, x : x + s] for y in ys for x in xs]))


def vangogh_probability(net: Any, images: Sequence[np.ndarray]) -> np.ndarray:
    """P("vangogh") per image: sigmoid of the mean logit over a 3x3 grid of crops."""
    import torch

    if not images:
        return np.zeros(0)
    net.eval()
    with torch.no_grad():
        logits = [float(net(_grid_crops(img)).mean()) for img in images]
    return 1.0 / (1.0 + np.exp(-np.asarray(logits)))


def _cache_key(splits: dict[str, Split], steps: int, seed: int) -> str:
    desc = {
        "version": CLS_VERSION,
        "steps": steps,
        "seed": seed,
        "size": SIZE,
        "crop": [CROP_MIN, CROP_MAX, CLS_INPUT, EVAL_CROP],
        "files": {k: [(p.name, p.stat().st_size) for p in s.train] for k, s in splits.items()},
    }
    return hashlib.sha256(json.dumps(desc, sort_keys=True).encode()).hexdigest()[:16]


def train_classifier(
    splits: dict[str, Split], steps: int, seed: int, cache: Path, log: Any
) -> tuple[Any, dict]:
    """Train (or load from ``cache``) the vangogh-vs-photo CNN; returns (net, info)."""
    import torch

    torch.manual_seed(seed)
    net = _build_classifier()
    key = _cache_key(splits, steps, seed)
    path = cache / f"style_classifier-{key}.pt"
    info: dict[str, Any] = {
        "cache_file": str(path),
        "steps": steps,
        "seed": seed,
        "n_train": {k: len(s.train) for k, s in splits.items()},
        "n_heldout": {k: len(s.heldout) for k, s in splits.items()},
    }
    if path.is_file():
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            net.load_state_dict(state["state_dict"])
            info.update(cached=True, train_seconds=float(state.get("train_seconds", 0.0)))
            return net.eval(), info
        except (OSError, RuntimeError, KeyError, EOFError, pickle.UnpicklingError) as exc:
            # a truncated or foreign file: retrain and overwrite it
            log(f"  cached classifier {path.name} unreadable ({exc}); retraining")
    t0 = time.perf_counter()
    data = {k: [square(load_rgb(p), SIZE) for p in s.train] for k, s in splits.items()}
    log(f"  loaded {sum(len(v) for v in data.values())} training images in {time.perf_counter() - t0:.1f} s")
    rng = np.random.default_rng(seed)
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=max(steps, 1), pct_start=0.1)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    half = 16  # balanced batches: 16 paintings + 16 photos, whatever the folder sizes
    target = torch.cat([torch.ones(half, 1), torch.zeros(half, 1)])
    net.train()
    t1, running = time.perf_counter(), 0.0
    for step in range(steps):
        # One crop size per step for both classes (scale jitter across steps; one resize call per batch).
        side = int(rng.integers(CROP_MIN, CROP_MAX + 1))
        xa = _random_crops(data["vangogh"], rng.integers(0, len(data["vangogh"]), half), side, rng)
        xb = _random_crops(data["photo"], rng.integers(0, len(data["photo"]), half), side, rng)
        loss = loss_fn(net(torch.cat([xa, xb])), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        running = 0.95 * running + 0.05 * loss.item() if step else loss.item()
        if (step + 1) % 200 == 0 or step + 1 == steps:
            log(
                f"  classifier step {step + 1}/{steps}: loss {running:.3f} ({time.perf_counter() - t1:.0f} s)"
            )
    seconds = time.perf_counter() - t0
    info.update(cached=False, train_seconds=seconds)
    cache.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save({"state_dict": net.state_dict(), "train_seconds": seconds}, tmp)
    return net.eval(), info


# ------------------------------------------------------------------------------------------ contact sheets


def _font(size: int) -> Any:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has only the small bitmap font
        return ImageFont.load_default()


def contact_sheet(rows: Sequence[Sequence[np.ndarray]], headers: Sequence[str], path: Path) -> None:
    """Write rows of equal-size tiles under a header line, as PNG, atomically."""
    th, tw = rows[0][0].shape[:2]
    head = max(18, tw // 14)
    sheet = Image.new("RGB", (tw * len(headers), head + th * len(rows)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    font = _font(int(head * 0.7))
    for c, text in enumerate(headers):
        draw.text((c * tw + 4, head * 0.12), text, fill=(0, 0, 0), font=font)
    for r, row in enumerate(rows):
        for c, tile in enumerate(row):
            sheet.paste(Image.fromarray(tile), (c * tw, head + r * th))
    with atomic_path(path) as tmp:
        sheet.save(tmp, format="PNG")


def zoom_centre(img: np.ndarray, crop: int, factor: int) -> np.ndarray:
    h, w = img.shape[:2]
    y, x = (h - crop) // 2, (w - crop) // 2
    return np.repeat(np.repeat(img[y : y + crop, x : x + crop], factor, axis=0), factor, axis=1)


# -------------------------------------------------------------------------------------------------- main


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="python bench/model_quality.py",
        description="Measure a vangogh <-> photo generator pair: cycle PSNR, a style classifier's "
        "'looks like Van Gogh' rate, a checkerboard score, and contact sheets.",
    )
    ap.add_argument(
        "--model",
        type=Path,
        default=DEFAULT_MODEL,
        help="pair folder with a2b.onnx (vangogh->photo) and b2a.onnx (photo->vangogh)",
    )
    ap.add_argument("--photos", type=Path, default=DEFAULT_PHOTOS, help="test photos (never trained on)")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="training folders vangogh/ and photo/")
    ap.add_argument("--out", type=Path, default=DEFAULT_CACHE / "quality", help="folder for the sheets")
    ap.add_argument("--json", type=Path, default=None, help="results JSON (default OUT/quality.json)")
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="folder for the trained classifier")
    ap.add_argument(
        "--quick",
        action="store_true",
        help=f"{QUICK['photos']} photos, {QUICK['paintings']} paintings, {QUICK['hires']} at "
        f"{HIRES} px, {QUICK['steps']} classifier steps",
    )
    ap.add_argument(
        "--classifier-steps",
        type=int,
        default=None,
        help=f"training steps of the style classifier (default {FULL['steps']}, --quick {QUICK['steps']})",
    )
    ap.add_argument(
        "--hires",
        type=int,
        default=None,
        help=f"how many photos to translate at {HIRES} px (default {FULL['hires']}, --quick {QUICK['hires']}); "
        "a 64-filter generator takes ~35x as long per image as at 256 px on a CPU",
    )
    ap.add_argument("--threads", type=int, default=2, help="CPU threads for ONNX Runtime")
    ap.add_argument("--seed", type=int, default=0)
    return ap.parse_args(argv)


def _check_inputs(args: argparse.Namespace) -> tuple[list[Path], list[Path], list[Path]]:
    for name in ("a2b.onnx", "b2a.onnx"):
        if not (args.model / name).is_file():
            raise ModelNotFoundError(
                f"no {name} in {args.model}; pass --model DIR with a pair folder (a2b.onnx = vangogh->photo, "
                "b2a.onnx = photo->vangogh), or train and export the default model first"
            )
    if not args.photos.is_dir() or not list_images(args.photos):
        raise UsageError(
            f"no test photos in {args.photos}; pass --photos DIR with some .jpg/.png files "
            "(the default is ../shared/corpus/photos beside the checkout)"
        )
    folders = []
    for cls in ("vangogh", "photo"):
        folder = args.data / cls
        if not folder.is_dir() or not list_images(folder):
            raise UsageError(
                f"no training images in {folder}; pass --data DIR holding vangogh/ and photo/ "
                "(the default is ../shared/data/vangogh2photo beside the checkout)"
            )
        folders.append(list_images(folder))
    if args.threads < 1:
        raise UsageError("--threads must be 1 or more")
    if args.hires is not None and args.hires < 0:
        raise UsageError("--hires must be 0 or more")
    if args.classifier_steps is not None and args.classifier_steps < 1:
        raise UsageError("--classifier-steps must be 1 or more")
    return list_images(args.photos), folders[0], folders[1]


def _stats(values: Sequence[float]) -> dict[str, Any]:
    return {"mean": float(np.mean(values)), "min": float(np.min(values)), "n": len(values)}


def run(args: argparse.Namespace, log: Any = print) -> dict[str, Any]:
    """Do every measurement; write sheets and JSON; return the results dict."""
    import torch

    photo_files, vangogh_files, trainphoto_files = _check_inputs(args)
    budget = QUICK if args.quick else FULL
    steps = args.classifier_steps or budget["steps"]
    # The classifier's batches (32 x 3 x 64 x 64) are too small to gain from threads; on a busy machine
    # a second thread made each step ~20x slower (spin-waiting), so it trains on one.
    torch.set_num_threads(1)
    timings: dict[str, float] = {}
    t_all = time.perf_counter()

    a2b = Generator(args.model / "a2b.onnx", args.threads)  # vangogh -> photo
    b2a = Generator(args.model / "b2a.onnx", args.threads)  # photo -> vangogh
    meta = a2b.metadata
    if meta and meta.get("domain_b") != "photo":
        log(
            f"note: {args.model} translates {meta.get('domain_a')} <-> {meta.get('domain_b')}; b2a is used as "
            "photo -> painting"
        )
    splits = {
        "vangogh": split_files(vangogh_files, args.seed, 1),
        "photo": split_files(trainphoto_files, args.seed, 2),
    }

    # 1. test photos: photo -> vangogh -> photo, at 256 px.
    t0 = time.perf_counter()
    photo_files = photo_files[: budget["photos"]]
    raw = [load_rgb(p) for p in photo_files]
    photos = [square(r, SIZE) for r in raw]
    # what the checkerboard score compares outputs with: the input, or its original if it was enlarged
    photo_refs = [ref if (ref := checker_reference(r, SIZE)) is not None else s for r, s in zip(raw, photos)]
    styled = [b2a(p) for p in photos]
    recon = [a2b(s) for s in styled]
    timings["photos_256"] = time.perf_counter() - t0
    # 2. paintings (training images of the generator, held out from the classifier): vangogh -> photo -> vangogh.
    t0 = time.perf_counter()
    painting_files = splits["vangogh"].heldout[: budget["paintings"]]
    raw = [load_rgb(p) for p in painting_files]
    paintings = [square(r, SIZE) for r in raw]
    painting_refs = [
        ref if (ref := checker_reference(r, SIZE)) is not None else s for r, s in zip(raw, paintings)
    ]
    as_photo = [a2b(p) for p in paintings]
    painting_recon = [b2a(p) for p in as_photo]
    timings["paintings_256"] = time.perf_counter() - t0
    # 3. a few photos at 1024 px (Lanczos upscale), photo -> vangogh only.
    t0 = time.perf_counter()
    n_hi = min(budget["hires"] if args.hires is None else args.hires, len(photos))
    hi_idx = sorted({round(i * (len(photos) - 1) / max(n_hi - 1, 1)) for i in range(n_hi)})
    hi_in = [upscale(photos[i], HIRES) for i in hi_idx]
    b2a_before = b2a.seconds
    hi_out = [b2a(p) for p in hi_in]
    timings["photos_1024"] = time.perf_counter() - t0
    ms_1024 = 1000.0 * (b2a.seconds - b2a_before) / max(len(hi_in), 1)
    log(
        f"translated {len(photos)} photos, {len(paintings)} paintings at {SIZE} px and {len(hi_in)} at {HIRES} px "
        f"in {sum(timings.values()):.1f} s"
    )

    cycle = {
        "photo": {
            **_stats([psnr(a, b) for a, b in zip(photos, recon, strict=True)]),
            "per_image": {p.name: psnr(a, b) for p, a, b in zip(photo_files, photos, recon, strict=True)},
        },
        "vangogh": {
            **_stats([psnr(a, b) for a, b in zip(paintings, painting_recon, strict=True)]),
            "note": "the paintings are training images of the generator (no held-out paintings exist)",
            "per_image": {
                p.name: psnr(a, b) for p, a, b in zip(painting_files, paintings, painting_recon, strict=True)
            },
        },
    }
    t0 = time.perf_counter()
    checker = {f"photo2vangogh_{SIZE}": checker_scores(photos, styled, photo_refs)}
    if hi_in:
        checker[f"photo2vangogh_{HIRES}"] = checker_scores(hi_in, hi_out, [photo_refs[i] for i in hi_idx])
    checker[f"vangogh2photo_{SIZE}"] = checker_scores(paintings, as_photo, painting_refs)
    timings["checkerboard"] = time.perf_counter() - t0

    # 3b. border lines and banding.
    t0 = time.perf_counter()
    border = {
        f"photo2vangogh_{SIZE}": border_scores(photos, styled),
        f"vangogh2photo_{SIZE}": border_scores(paintings, as_photo),
    }
    if hi_in:
        border[f"photo2vangogh_{HIRES}"] = border_scores(hi_in, hi_out)
    gradients = {name: (gradient_image(GRADIENT_SIZE, a, b, d), d) for name, (a, b, d) in GRADIENTS.items()}
    gradient_out = {name: b2a(img) for name, (img, _) in gradients.items()}
    noisy_out = {name: b2a(with_noise(img, GRADIENT_NOISE)) for name, (img, _) in gradients.items()}
    banding = {
        name: {"output": banding_score(gradient_out[name], d), "input": banding_score(img, d),
               "output_noisy": banding_score(noisy_out[name], d)}
        for name, (img, d) in gradients.items()
    }
    banding["mean"] = float(np.mean([v["output"] for v in banding.values()]))
    banding["max"] = float(max(v["output"] for k, v in banding.items() if k != "mean"))
    banding["mean_noisy"] = float(np.mean([v["output_noisy"] for k, v in banding.items() if isinstance(v, dict)]))
    timings["border_banding"] = time.perf_counter() - t0

    # 4. style classifier.
    t0 = time.perf_counter()
    net, cls_info = train_classifier(splits, steps, args.seed, args.cache, log)
    held_paint = [square(load_rgb(p), SIZE) for p in splits["vangogh"].heldout]
    held_photo = [square(load_rgb(p), SIZE) for p in splits["photo"].heldout]
    probs = {
        "heldout_paintings": vangogh_probability(net, held_paint),
        "heldout_photos": vangogh_probability(net, held_photo),
        "test_photos": vangogh_probability(net, photos),
        "translated_photos": vangogh_probability(net, styled),
        "cycle_photos": vangogh_probability(net, recon),
        "translated_paintings": vangogh_probability(net, as_photo),
    }
    acc_v = float(np.mean(probs["heldout_paintings"] > 0.5))
    acc_p = float(np.mean(probs["heldout_photos"] <= 0.5))
    cls_info.update(
        heldout_accuracy=(acc_v + acc_p) / 2, heldout_accuracy_vangogh=acc_v, heldout_accuracy_photo=acc_p
    )
    rates = {k: float(np.mean(v > 0.5)) for k, v in probs.items() if k != "heldout_photos"}
    mean_prob = {k: float(np.mean(v)) for k, v in probs.items() if k != "heldout_photos"}
    timings["classifier"] = time.perf_counter() - t0

    # 5. sheets.
    t0 = time.perf_counter()
    out = args.out
    files = {"sheet_photos": out / "sheet_photos.png", "sheet_paintings": out / "sheet_paintings.png"}
    contact_sheet(
        [list(r) for r in zip(photos, styled, recon, strict=True)],
        ["input photo", "photo -> vangogh (b2a)", "back to photo (a2b)"],
        files["sheet_photos"],
    )
    contact_sheet(
        [list(r) for r in zip(paintings, as_photo, painting_recon, strict=True)],
        ["painting (training image)", "vangogh -> photo (a2b)", "back to vangogh (b2a)"],
        files["sheet_paintings"],
    )
    if hi_in:
        files[f"sheet_{HIRES}"] = out / f"sheet_{HIRES}.png"
        contact_sheet(
            [[a, b, zoom_centre(b, HIRES // 4, 4)] for a, b in zip(hi_in, hi_out, strict=True)],
            [
                f"input, Lanczos to {HIRES} px",
                f"photo -> vangogh at {HIRES} px",
                f"centre {HIRES // 4} px of it, 4x nearest",
            ],
            files[f"sheet_{HIRES}"],
        )
    files["sheet_gradients"] = out / "sheet_gradients.png"
    contact_sheet(
        [[img, gradient_out[name]] for name, (img, _) in gradients.items()],
        [f"gradient, {GRADIENT_SIZE} px", "photo -> vangogh (b2a)"],
        files["sheet_gradients"],
    )
    timings["sheets"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - t_all

    results: dict[str, Any] = {
        "model": {
            "dir": str(args.model.resolve()),
            "a2b": {"sha256": file_sha256(a2b.path), "metadata": a2b.metadata},
            "b2a": {"sha256": file_sha256(b2a.path), "metadata": b2a.metadata},
        },
        "settings": {
            "quick": bool(args.quick),
            "size": SIZE,
            "hires_size": HIRES,
            "threads": args.threads,
            "seed": args.seed,
            "photos_dir": str(args.photos),
            "data_dir": str(args.data),
            "n_photos": len(photos),
            "n_paintings": len(paintings),
            "n_hires": len(hi_in),
        },
        "cycle_psnr_db": cycle,
        "vangogh_rate": rates,
        "vangogh_mean_probability": mean_prob,
        "classifier": cls_info,
        "checkerboard_db": checker,
        "border_db": border,
        "banding_levels": banding,
        "speed_ms_per_image": {
            f"b2a_{SIZE}": 1000.0 * b2a_before / max(len(photos) + len(paintings), 1),
            f"a2b_{SIZE}": 1000.0 * a2b.seconds / max(len(photos) + len(paintings), 1),
            f"b2a_{HIRES}": ms_1024 if hi_in else None,
        },
        "files": {k: str(v) for k, v in files.items()},
        "timings_s": timings,
    }
    json_path = args.json or out / "quality.json"
    write_bytes_atomic(json_path, (json.dumps(_finite(results), indent=2, allow_nan=False) + "\n").encode())
    results["files"]["json"] = str(json_path)
    return results


def _finite(obj: Any) -> Any:
    """JSON has no inf/nan (a perfect cycle has infinite PSNR): write null instead."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def format_table(r: dict[str, Any]) -> str:
    """The human summary of a results dict."""
    c, v, p, k = r["cycle_psnr_db"], r["vangogh_rate"], r["vangogh_mean_probability"], r["classifier"]
    lines = [f"model {r['model']['dir']}", ""]
    row = "  {:<56} {:>10} {:>10}".format
    lines += [
        row("cycle PSNR (dB)", "mean", "min"),
        row(
            f"photo -> vangogh -> photo ({c['photo']['n']} test photos)",
            f"{c['photo']['mean']:.2f}",
            f"{c['photo']['min']:.2f}",
        ),
        row(
            f"vangogh -> photo -> vangogh ({c['vangogh']['n']} training paintings)",
            f"{c['vangogh']['mean']:.2f}",
            f"{c['vangogh']['min']:.2f}",
        ),
        "",
    ]
    n_train = k["n_train"]
    lines += [
        row(
            f"classified 'vangogh' (classifier: {k['heldout_accuracy']:.0%} held-out acc.,", "rate", "mean p"
        ),
        (
            f"    {'trained' if not k['cached'] else 'cached'}, {k['steps']} steps, "
            f"{n_train['vangogh']}+{n_train['photo']} images)"
        ),
    ]
    names = [
        ("heldout_paintings", "real held-out paintings"),
        ("test_photos", "untranslated test photos"),
        ("translated_photos", "translated photos (b2a)  [want high]"),
        ("cycle_photos", "cycle-reconstructed photos  [want low]"),
        ("translated_paintings", "paintings -> photo (a2b)  [want low]"),
    ]
    lines += [row(label, f"{v[key]:.0%}", f"{p[key]:.2f}") for key, label in names]
    lines += ["", row("checkerboard, output vs input (dB; 0 = none)", "period 2", "period 4")]
    for name, s in r["checkerboard_db"].items():
        lines.append(
            row(
                f"{name} (mean / max)",
                f"{s['checker_p2']['mean']:.1f}/{s['checker_p2']['max']:.1f}",
                f"{s['checker_p4']['mean']:.1f}/{s['checker_p4']['max']:.1f}",
            )
        )
    lines += ["", row(f"border lines, first {BORDER} px vs interior (dB; 0 = none)", "worst side", "l/t/r/b")]
    for name, s in r["border_db"].items():
        lines.append(row(name, f"{s['worst']:.1f}", "/".join(f"{s[side]['mean']:.1f}" for side in SIDES)))
    b = r["banding_levels"]
    lines += ["", row(f"banding on {GRADIENT_SIZE} px gradients (RMS 8-bit levels)", "output", "input")]
    lines += [
        row(name, f"{v['output']:.2f}", f"{v['input']:.2f}") for name, v in b.items() if isinstance(v, dict)
    ]
    lines.append(row("outputs: mean / max", f"{b['mean']:.2f}/{b['max']:.2f}", ""))
    lines.append(row(f"  the same with noise of {GRADIENT_NOISE:g} levels: mean", f"{b['mean_noisy']:.2f}", ""))
    sp = r["speed_ms_per_image"]
    lines += [
        "",
        "speed (ms/image, CPU, {} threads): ".format(r["settings"]["threads"])
        + ", ".join(f"{key} {val:.0f}" for key, val in sp.items() if val is not None),
    ]
    lines += ["timings (s): " + ", ".join(f"{key} {val:.1f}" for key, val in r["timings_s"].items())]
    lines += ["files: " + ", ".join(r["files"].values())]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    try:
        results = run(args, log=lambda msg: print(msg, file=sys.stderr, flush=True))
    except ImgxlateError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    except ImportError as err:
        print(
            f"error: {err.name or err} is missing; install the training extras: pip install -e '.[train]'",
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    print(format_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
