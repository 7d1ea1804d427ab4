"""The ``imgxlate serve`` page in a real headless Chromium: upload, wait, download, check."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import web_harness as harness
import web_inputs
from PIL import Image


def _pixels(path: Path) -> np.ndarray:
    import cv2

    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)


def test_upload_translate_download(page: Any, tmp_path: Path) -> None:
    src = web_inputs.jpeg(tmp_path / "street photo.jpg", 64, 48)
    text = harness.upload_images(page, [src])
    assert "Translated 1 of 1 image to zebra" in text
    assert "CPUExecutionProvider" in text or "CUDAExecutionProvider" in text
    assert "street photo.jpg" in text and " s," in text  # the time it took
    # input and result side by side
    assert page.locator("#pairs img").count() == 2
    links = harness.download_links(page)
    # one image: no zip; named after the domain, so that it never lands on the original's name
    assert list(links) == ["street photo.zebra.jpg"]
    got = harness.download(page, links["street photo.zebra.jpg"], tmp_path / "got.jpg")
    assert got.stat().st_size > 500
    assert got.read_bytes() != src.read_bytes()
    with Image.open(got) as im:
        assert im.format == "JPEG" and im.size == (64, 48)
    assert np.abs(_pixels(got).astype(int) - _pixels(src).astype(int)).mean() > 1.0


def test_page_result_is_the_cli_result(page: Any, server: harness.Server, tiny_pair: Path, tmp_path: Path) -> None:
    """Same decode, translation and encode as `imgxlate convert`: the downloads are byte-identical."""
    import subprocess
    import sys

    folder = tmp_path / "in"
    folder.mkdir()
    srcs = [web_inputs.jpeg(folder / "rot.jpg", 56, 40, orientation=8), web_inputs.png_rgba(folder / "alpha.png"),
            web_inputs.png16(folder / "d16.png")]
    harness.upload_images(page, srcs)
    links = harness.download_links(page)
    r = subprocess.run([sys.executable, "-m", "imgxlate", "convert", str(folder), "--model", str(tiny_pair),
                        "--to", "zebra", "--out", str(tmp_path / "cli"), "--threads", "1", "--quiet"],
                       capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stderr
    for src in srcs:
        got = harness.download(page, links[f"{src.stem}.zebra{src.suffix}"], tmp_path / f"page-{src.name}")
        assert got.read_bytes() == (tmp_path / "cli" / src.name).read_bytes(), src.name


def test_bad_upload_shows_reason_then_good_upload_works(page: Any, tmp_path: Path) -> None:
    bad = web_inputs.text_file(tmp_path / "notes.jpg")
    text = harness.upload_images(page, [bad])
    assert "it is a text file, not an image" in _cli_reason(bad)
    assert f"notes.jpg failed: {_cli_reason(bad)}" in text
    assert "/tmp" not in text and "imgxlate-serve-" not in text  # no server paths shown
    assert harness.download_links(page) == {}
    harness.clear_images(page)
    good = web_inputs.jpeg(tmp_path / "good.jpg", 48, 40)
    text = harness.upload_images(page, [good])
    assert "Translated 1 of 1 image" in text and "failed" not in text
    got = harness.download(page, harness.download_links(page)["good.zebra.jpg"], tmp_path / "out.jpg")
    with Image.open(got) as im:
        assert im.size == (48, 40)


def _cli_reason(path: Path, max_pixels: int | None = None) -> str:
    """What ``imgxlate convert`` says about this file, with the bare name for the path."""
    from imgxlate.errors import ImgxlateError
    from imgxlate.imaging import read_image

    with pytest.raises(ImgxlateError) as info:
        read_image(path, max_pixels=max_pixels)
    return str(info.value).replace(str(path), path.name)


def test_too_many_pixels_and_truncated_show_the_cli_reasons(page: Any, tmp_path: Path) -> None:
    big = tmp_path / "big.png"
    Image.fromarray(web_inputs.gradient(250, 250)).save(big)  # 62 500 px > the server's 40 000
    cut = web_inputs.truncated_jpeg(tmp_path / "cut.jpg")
    text = harness.upload_images(page, [big, cut])
    assert "Translated 0 of 2 images" in text
    big_reason = _cli_reason(big, max_pixels=40_000)
    assert "62,500 pixels" in big_reason
    assert f"big.png failed: {big_reason}" in text
    assert f"cut.jpg failed: {_cli_reason(cut)}" in text


def test_many_images_keep_format_alpha_orientation_16_bit_and_zip(page: Any, tmp_path: Path) -> None:
    rotated = web_inputs.jpeg(tmp_path / "portrait.jpg", 64, 48, orientation=6)  # stored landscape, shown portrait
    rgba = web_inputs.png_rgba(tmp_path / "logo.png", 40, 32)
    deep = web_inputs.png16(tmp_path / "scan16.png", 40, 30)
    text = harness.upload_images(page, [rotated, rgba, deep])
    assert "Translated 3 of 3 images" in text
    links = harness.download_links(page)
    assert set(links) == {"portrait.zebra.jpg", "logo.zebra.png", "scan16.zebra.png", "imgxlate-results.zip"}
    assert page.locator("#pairs img").count() == 6
    out = tmp_path / "out"
    out.mkdir()
    with Image.open(harness.download(page, links["portrait.zebra.jpg"], out / "portrait.jpg")) as im:
        assert im.size == (48, 64)  # EXIF orientation applied, as the CLI does
        assert im.getexif().get(0x0112, 1) == 1
    logo = _pixels(harness.download(page, links["logo.zebra.png"], out / "logo.png"))
    assert logo.shape == (32, 40, 4) and (logo[:16, :, 3] == 0).all() and (logo[16:, :, 3] > 0).all()
    deep_out = _pixels(harness.download(page, links["scan16.zebra.png"], out / "scan16.png"))
    assert deep_out.dtype == np.uint16 and deep_out.shape == (30, 40, 3)
    archive = harness.download(page, links["imgxlate-results.zip"], out / "all.zip")
    with zipfile.ZipFile(archive) as zf:
        assert sorted(zf.namelist()) == ["logo.zebra.png", "portrait.zebra.jpg", "scan16.zebra.png"]
        assert zf.read("logo.zebra.png") == (out / "logo.png").read_bytes()


def test_target_domain_choice(page: Any, tmp_path: Path) -> None:
    """Choosing the other --to name runs the other generator of the pair."""
    src = web_inputs.jpeg(tmp_path / "a.jpg", 48, 40)
    harness.upload_images(page, [src])
    first = harness.download(page, harness.download_links(page)["a.zebra.jpg"], tmp_path / "zebra.jpg")
    page.locator("#target input").click()
    page.get_by_role("option", name="horse").click()
    previous = harness.status_run(page)
    page.locator("#translate").click()
    text = harness.wait_status(page, previous)
    assert "to horse" in text
    second = harness.download(page, harness.download_links(page)["a.horse.jpg"], tmp_path / "horse.jpg")
    assert first.read_bytes() != second.read_bytes()


def test_video_tab(page: Any, tmp_path: Path) -> None:
    clip = web_inputs.clip_with_sound(tmp_path / "clip.mp4", seconds=3.0)
    page.get_by_role("tab", name="Video").click()
    page.wait_for_selector("#video-in input[type=file]", state="attached")
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypisom" + bytes(2000))
    previous = harness.status_run(page, "video-status-text")
    page.set_input_files("#video-in input[type=file]", str(broken))
    text = harness.wait_status(page, previous, "video-status-text")
    assert "error:" in text and "broken.mp4" in text and "/tmp" not in text
    page.locator("#video-in button[aria-label='Clear']").first.click()
    previous = harness.status_run(page, "video-status-text")
    page.set_input_files("#video-in input[type=file]", str(clip))
    text = harness.wait_status(page, previous, "video-status-text")
    assert "clip.mp4 → clip.zebra.mp4" in text and "audio" in text
    assert "Only the first 2 s were converted" in text
    links = harness.download_links(page, "#video-download")
    got = harness.download(page, links["clip.zebra.mp4"], tmp_path / "got.mp4")
    streams = web_inputs.probe_streams(got)
    assert "video" in streams and "audio" in streams
    assert 1.5 <= web_inputs.duration(got) <= 2.5


def test_upload_over_the_size_limit_is_refused(page: Any, tmp_path: Path) -> None:
    """The server runs with --max-upload-mb 5: a bigger file is refused with a message, nothing runs,
    and the page still works."""
    huge = tmp_path / "huge.png"
    huge.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(6 * 1024 * 1024))
    previous = harness.status_run(page)
    page.set_input_files("#images-in input[type=file]", [str(huge)])
    toast = page.locator(".toast-body").filter(has_text="exceed the maximum allowed size of 5")
    toast.first.wait_for(timeout=30_000)
    assert "huge.png" in toast.first.inner_text()
    assert harness.status_run(page) == previous
    harness.clear_images(page)
    good = web_inputs.jpeg(tmp_path / "fine.jpg", 32, 32)
    assert "Translated 1 of 1 image" in harness.upload_images(page, [good])


def test_server_refuses_big_uploads_too(server: harness.Server) -> None:
    """The limit is enforced by the server, not only by the page's script."""
    import http.client
    import urllib.parse

    boundary = "imgxlate-test-boundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"big.png\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode() + bytes(6 * 1024 * 1024) + \
        f"\r\n--{boundary}--\r\n".encode()
    url = urllib.parse.urlsplit(server.url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
    try:
        conn.putrequest("POST", "/gradio_api/upload")
        conn.putheader("Content-Type", f"multipart/form-data; boundary={boundary}")
        conn.putheader("Content-Length", str(len(body)))
        conn.endheaders()
        # The server answers 413 as soon as the limit is passed and may close the connection while the
        # rest of the body is still on its way (a loaded machine): the answer is read either way.
        try:
            for i in range(0, len(body), 64 * 1024):
                conn.send(body[i:i + 64 * 1024])
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert conn.getresponse().status == 413
    finally:
        conn.close()


def test_two_users_at_once_both_get_results(browser: Any, server: harness.Server, tmp_path: Path) -> None:
    """Requests from two pages queue for the one model session; both finish."""
    pages = [harness.open_page(browser, server.url) for _ in range(2)]
    try:
        srcs = [web_inputs.jpeg(tmp_path / f"user{i}.jpg", 40 + 8 * i, 32) for i in range(2)]
        before = [harness.status_run(p) for p in pages]
        for p, src in zip(pages, srcs):
            p.set_input_files("#images-in input[type=file]", [str(src)])
        for i, p in enumerate(pages):
            text = harness.wait_status(p, before[i])
            assert f"user{i}.jpg" in text and "Translated 1 of 1 image" in text
    finally:
        for p in pages:
            p.context.close()


def test_page_asks_nothing_of_other_hosts(browser: Any, server: harness.Server, tmp_path: Path) -> None:
    """No fonts, analytics or scripts from elsewhere: every request the page makes goes to the server."""
    context = browser.new_context()
    page = context.new_page()
    seen: list[str] = []
    page.on("request", lambda r: seen.append(r.url))
    try:
        page.goto(server.url)
        page.wait_for_selector("#images-in input[type=file]", state="attached")
        previous = harness.status_run(page)
        page.set_input_files("#images-in input[type=file]", [str(web_inputs.jpeg(tmp_path / "x.jpg", 32, 32))])
        harness.wait_status(page, previous)
    finally:
        context.close()
    outside = [u for u in seen if not u.startswith(server.url) and not u.startswith(("data:", "blob:"))]
    assert seen and outside == []
