"""Imaging: read and write every image users own, as sRGB arrays the model can take.

Modules: :mod:`.formats` (suffixes, output formats), :mod:`.exif` (orientation), :mod:`.color` (ICC
to sRGB, quantisation), :mod:`.decode` (files and arrays in), :mod:`.encode` (files out),
:mod:`.animation` (every frame of animated GIF, WebP, APNG, AVIF in; GIF, WebP, APNG out). The
policies they implement together:

Reading (:func:`read_image`, :func:`from_array`) gives a :class:`DecodedImage`: ``pixels`` (H, W, 3)
sRGB, upright, uint8 for 8-bit sources that need no colour conversion and float32 in [0, 1] otherwise
(``rgb`` is always the float32 view), plus what the writer needs to give the result back in the
source's kind: alpha, bit depth, grayscale, format, ICC profile and EXIF. Writing (:func:`write_image`)
takes float32 [0, 1] or uint8 results (:func:`result_dtype` says which one loses nothing), is atomic
(temp file beside the target, then ``os.replace``) and never touches the input.

Decoding
    The file is read into memory once and decoded from there, so names with spaces, colons or any
    unicode never matter. HEIC/HEIF and JPEG XL need the ``heic`` / ``jxl`` extras (Pillow plugins);
    camera RAW files the ``raw`` extra (:mod:`.raw`); without them such files fail with what to install. Pillow decodes everything except 16-bit RGB(A) PNG and 16-bit / float
    RGB(A) TIFF, which Pillow would cut to 8 bits: those go through OpenCV (``IMREAD_UNCHANGED``).
    Palette images become RGB, or RGBA when they have transparency (tRNS); 1-bit, L, LA, 16-bit and
    32-bit integer and float gray are grayscale. Float samples are taken as [0, 1] and clipped
    (bit depth reported as 16). CMYK JPEGs become RGB through their ICC profile when they have one,
    else through Pillow's naive formula; Pillow assumes Adobe's inverted polarity for every CMYK JPEG,
    which is undone for files without an Adobe APP14 marker.
    Animated GIF, WebP, PNG (APNG) and AVIF: every frame, as a viewer composes it, through the same policy
    (:mod:`.animation`); the result is written as an animation with the same durations and loop
    count (an animated GIF stays a GIF). Multi-page TIFF: every page (``pages``), written back as a
    multi-page TIFF, when every page is 8-bit or 16-bit gray without alpha; else, or for a target
    that holds one picture (:func:`fit_to_target`), the first page only, and the result says so
    (``DecodedImage.pages_left_out``; a ``partial`` note on the file's result). MPO (camera JPEGs
    with a preview or second view): the primary image; an image note says when the others are views of
    their own (a stereo pair's second eye, panorama or multi-angle shots), not previews.
    Truncated files are errors (``ImageFile.LOAD_TRUNCATED_IMAGES`` is never set). Images with more
    than ``max_pixels`` pixels are refused from their header, before anything is decoded.

Orientation
    The EXIF Orientation tag (1-8) is applied to the pixels; the EXIF kept for the output has its
    Orientation reset to 1, byte-for-byte otherwise (maker notes keep their offsets). OpenCV applies a
    TIFF's Orientation tag itself. An orientation found only in the XMP packet is applied too (Pillow's
    ``getexif`` reads it there); the XMP kept for the output has its ``tiff:Orientation`` reset to 1
    as well (:func:`imgxlate.imaging.exif.upright_xmp`).

Colour (ICC) policy
    The model was trained on sRGB photos, so it is fed sRGB:

    - RGB image with a non-sRGB profile (Adobe RGB, ProPhoto, Display P3, ...): pixels are converted
      to sRGB on read and the output embeds an sRGB profile (:func:`srgb_profile`). Matrix/TRC
      profiles (nearly all RGB profiles) are converted in float32 with numpy at full 8/16-bit
      precision, relative colorimetric, out-of-gamut colours clipped (LittleCMS gives the same within
      one 8-bit level); LUT-based profiles go through ``PIL.ImageCms`` with its default perceptual
      intent (8-bit sources; 16-bit sources with a LUT profile are left unconverted with a warning and
      keep their profile).
    - CMYK with a CMYK profile: converted through ``ImageCms``; the output (RGB) embeds sRGB.
    - A profile that is sRGB already (same primaries and curves, or named sRGB): pixels untouched, the
      original profile bytes are embedded in the output.
    - Grayscale with a gray profile: pixels untouched (a gray profile is only a tone curve; a gray
      output cannot carry an RGB sRGB profile), the original profile is embedded in the output.
    - No profile: the pixels are taken as sRGB and the output has no profile. PNG gAMA/cHRM/sRGB
      chunks are ignored.
    - A broken profile, or one for another colour space than the pixels: ignored with a
      ``warnings.warn``; pixels are taken as sRGB and the output has no profile.

    PIL images given to :func:`from_array` follow the same policy and orientation rule; arrays are
    taken as upright sRGB. ``DecodedImage.icc_profile`` is always the profile to embed in the output. The writer drops it
    when it does not fit the written colour space (a gray profile in a WebP, which is always RGB).

Writing
    ``fmt="same"`` keeps the source's format when it can be written faithfully (JPEG, PNG, WebP,
    TIFF), else PNG (still GIF, BMP, PSD, ICO, JPEG 2000, ... and arrays); an animated GIF stays an
    animated GIF, and an animation asked for as JPEG or TIFF is refused (one picture each). Alpha is kept in PNG, WebP and
    TIFF; a JPEG output of an image with alpha is composited on white. Gray sources give gray outputs
    (the model's RGB result converted with the ITU-R 601 luma weights, as Pillow's ``convert("L")``;
    WebP has no gray mode and stores it as RGB). 16-bit sources give 16-bit PNG and TIFF outputs;
    JPEG and WebP are 8-bit. Every PNG still (8 or 16 bits, gray to RGBA) is written by
    :func:`encode_png`, with its ICC (iCCP), EXIF (eXIf) and XMP (iTXt) chunks. 8-bit and gray TIFF outputs are deflate-compressed, or uncompressed when they
    carry EXIF (Pillow can write the EXIF sub-IFD only without compression). WebP at ``quality=100`` is lossless.
    16-bit RGB(A) TIFFs use a small built-in writer (:func:`encode_tiff16`: deflate + predictor, ICC
    and EXIF with its sub-IFDs). Known losses: 16-bit gray+alpha TIFF outputs are stored as RGBA (few
    readers take two 16-bit samples), without the gray profile; EXIF that Pillow cannot re-serialise
    (or over JPEG's 64 KB) is dropped with a warning; a TIFF source gives its descriptive tags
    (make, model, date, artist, copyright, software) and its EXIF / GPS sub-IFDs, not its layout tags;
    the colour-key transparency (tRNS) of 16-bit RGB PNGs is not read. XMP (ratings, keywords,
    creator, rights) is copied into JPEG, PNG, WebP and TIFF stills (not into animations or multi-page
    TIFFs; a packet over JPEG's 64 KB segment, "extended XMP", is left out); IPTC-IIM is not copied.
"""

from __future__ import annotations

import importlib
from typing import Any

# Public names, resolved lazily (PEP 562) so that importing one submodule (e.g. ranges, which the
# translator needs) does not load Pillow: formats.py asks Pillow for its readable suffixes at import.
_LAZY = {
    "DEFAULT_MAX_PIXELS": "decode",
    "DecodedImage": "decode",
    "from_array": "arrays",
    "read_image": "decode",
    "read_rgb8": "decode",
    "to_array": "arrays",
    "encode_png": "encode",
    "encode_tiff16": "encode",
    "write_image": "encode",
    "fit_to_target": "encode",
    "result_dtype": "encode",
    "apply_orientation": "exif",
    "reset_exif_orientation": "exif",
    "OUTPUT_FORMATS": "formats",
    "READ_SUFFIXES": "formats",
    "normalize_format": "formats",
    "output_suffix": "formats",
    "luminance": "color",
    "quantize": "color",
    "shaper_to_srgb": "color",
    "srgb_profile": "color",
    "from_model": "ranges",
    "model_to_uint8": "ranges",
    "pixel_affine": "ranges",
    "to_model": "ranges",
    "uint8_to_model": "ranges",
}

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "OUTPUT_FORMATS",
    "READ_SUFFIXES",
    "DecodedImage",
    "apply_orientation",
    "encode_png",
    "encode_tiff16",
    "fit_to_target",
    "from_array",
    "from_model",
    "luminance",
    "model_to_uint8",
    "normalize_format",
    "output_suffix",
    "pixel_affine",
    "quantize",
    "read_image",
    "read_rgb8",
    "reset_exif_orientation",
    "result_dtype",
    "shaper_to_srgb",
    "srgb_profile",
    "to_array",
    "to_model",
    "uint8_to_model",
    "write_image",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
