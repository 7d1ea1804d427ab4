"""XMP (ratings, keywords, creator and rights of photo managers) carried from the source to the output,
its tiff:Orientation reset like EXIF's; read back with Pillow's own parsers (not imgxlate's writer)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from imgxlate.imaging import read_image, write_image
from imgxlate.imaging.exif import XMP_MAX_BYTES, upright_xmp

NS = ('xmlns:x="adobe:ns:meta/"', 'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"')


def packet(body: str) -> bytes:
    return (f'<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?><x:xmpmeta {NS[0]}><rdf:RDF {NS[1]}>'
            f'<rdf:Description rdf:about="" xmlns:xmp="http://ns.adobe.com/xap/1.0/" '
            f'xmlns:tiff="http://ns.adobe.com/tiff/1.0/" xmlns:dc="http://purl.org/dc/elements/1.1/" {body}'
            '</rdf:RDF></x:xmpmeta><?xpacket end="w"?>').encode()


ATTR = packet('xmp:Rating="4" tiff:Orientation="6"><dc:rights><rdf:Alt><rdf:li xml:lang="x-default">(c) Ana'
              '</rdf:li></rdf:Alt></dc:rights></rdf:Description>')


def test_upright_xmp_resets_the_orientation_and_keeps_the_rest() -> None:
    assert upright_xmp(ATTR) == ATTR.replace(b'tiff:Orientation="6"', b'tiff:Orientation="1"')
    element = packet("><tiff:Orientation> 8 </tiff:Orientation></rdf:Description>")
    assert b"<tiff:Orientation>1</tiff:Orientation>" in upright_xmp(element)
    assert upright_xmp(ATTR.decode() + "\x00\x00") == upright_xmp(ATTR)  # str, NUL padding
    assert upright_xmp(None) is None and upright_xmp(b"  ") is None
    big = packet('xmp:Rating="4" tiff:Orientation="6"/>' + " " * (XMP_MAX_BYTES + 1))
    assert upright_xmp(big) == big.replace(b'tiff:Orientation="6"', b'tiff:Orientation="1"')  # any size


BIG = packet('xmp:Rating="5"><xmp:Label>' + "edit history " * 6500 + "</xmp:Label></rdf:Description>")


@pytest.mark.parametrize("fmt", ["png", "webp", "tiff", "jpg"])
def test_a_large_xmp_is_kept_where_the_format_holds_it_and_said_where_not(tmp_path: Path, fmt: str) -> None:
    """Photoshop and Lightroom keep edit histories in XMP, often past a JPEG segment's 65502 bytes: PNG,
    WebP and TIFF hold the whole packet; a JPEG output leaves it out and says so (it was dropped from
    every format, without a word)."""
    from imgxlate.imaging.notices import collected

    assert len(BIG) > XMP_MAX_BYTES
    src = tmp_path / "a.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(src, pnginfo=_png_xmp(BIG))
    decoded = read_image(src)
    assert decoded.xmp == BIG
    with collected() as said:
        out = write_image(tmp_path / f"out.{fmt}", decoded.rgb, decoded, fmt=fmt)
    with Image.open(out) as im:
        got = im.info.get("xmp")
    if fmt == "jpg":
        assert got is None and len(said) == 1 and "XMP" in said[0] and "--format png" in said[0]
    else:
        assert got == BIG and said == []


def _png_xmp(xmp: bytes) -> object:
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_itxt("XML:com.adobe.xmp", xmp.decode())
    return info


@pytest.mark.parametrize("fmt", ["jpg", "png", "webp", "tiff"])
def test_xmp_reaches_every_still_format_upright(tmp_path: Path, fmt: str) -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (16, 24, 3), dtype=np.uint8)
    src = tmp_path / "a.jpg"
    Image.fromarray(rgb).save(src, xmp=ATTR)
    decoded = read_image(src)
    out = write_image(tmp_path / f"out.{fmt}", decoded.rgb, decoded, fmt=fmt)
    with Image.open(out) as im:
        got = im.info.get("xmp")
    assert got == ATTR.replace(b'tiff:Orientation="6"', b'tiff:Orientation="1"')


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_xmp_of_16_bit_files(tmp_path: Path, suffix: str) -> None:
    """16-bit PNG and TIFF have their own writers (encode_png, encode_tiff16)."""
    deep = np.random.default_rng(1).integers(0, 65535, (10, 12, 3)).astype(np.uint16)
    plain = tmp_path / f"plain{suffix}"
    assert cv2.imwrite(str(plain), deep)
    decoded = read_image(plain)
    assert decoded.bit_depth == 16
    from dataclasses import replace

    out = write_image(tmp_path / f"out{suffix}", decoded.rgb, replace(decoded, xmp=upright_xmp(ATTR)))
    with Image.open(out) as im:
        assert b'xmp:Rating="4"' in im.info["xmp"] and b'tiff:Orientation="1"' in im.info["xmp"]
    assert cv2.imread(str(out), cv2.IMREAD_UNCHANGED).dtype == np.uint16


def test_the_cli_keeps_a_rating_and_turns_the_picture_once(tmp_path: Path, tiny_pair: Path) -> None:
    """EXIF and XMP both say Orientation 6: the output is upright (portrait) and says 1 in both."""
    from typer.testing import CliRunner

    from imgxlate.cli.app import app

    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(np.zeros((12, 20, 3), np.uint8)).save(tmp_path / "in.jpg", exif=exif, xmp=ATTR)
    res = CliRunner().invoke(app, ["convert", str(tmp_path / "in.jpg"), "--out", str(tmp_path / "out"),
                                   "--model", str(tiny_pair), "-q"])
    assert res.exit_code == 0, res.output
    with Image.open(tmp_path / "out" / "in.jpg") as im:
        assert im.size == (12, 20) and im.getexif().get(0x0112, 1) == 1
        assert b'xmp:Rating="4"' in im.info["xmp"] and b'tiff:Orientation="1"' in im.info["xmp"]
        assert b"(c) Ana" in im.info["xmp"]


@pytest.mark.parametrize("fmt", ["tiff", "jpg", "png", "webp"])
def test_xmp_does_not_push_the_exif_out(tmp_path: Path, fmt: str) -> None:
    """Pillow's TIFF writer takes tiffinfo or exif, not both: XMP given as tiffinfo dropped the camera,
    the capture date and the GPS position."""
    exif = Image.Exif()
    exif[0x010F], exif[0x0110] = "Canon", "EOS R5"
    exif.get_ifd(0x8769)[0x9003] = "2026:11:30 10:00:00"
    exif.get_ifd(0x8825)[1] = "N"
    src = tmp_path / "a.jpg"
    Image.fromarray(np.zeros((12, 16, 3), np.uint8)).save(src, exif=exif.tobytes(), xmp=ATTR)
    decoded = read_image(src)
    out = write_image(tmp_path / f"out.{fmt}", decoded.rgb, decoded, fmt=fmt)
    with Image.open(out) as im:
        got = im.getexif()
        assert (got.get(0x010F), got.get(0x0110)) == ("Canon", "EOS R5")
        assert got.get_ifd(0x8769).get(0x9003) == "2026:11:30 10:00:00" and got.get_ifd(0x8825).get(1) == "N"
        assert b'xmp:Rating="4"' in im.info["xmp"]
