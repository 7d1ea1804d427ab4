"""Fixtures of the web tests: a running ``imgxlate serve`` on the tiny model, a headless Chromium."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import web_harness as harness


@pytest.fixture(scope="session")
def chromium() -> str:
    pytest.importorskip("gradio", reason="the web extra (gradio) is not installed: pip install '.[web]'")
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    path = harness.find_chromium()
    if path is None:
        pytest.skip("no Chromium found (apt-get install chromium, or set IMGXLATE_CHROMIUM)")
    return path


@pytest.fixture(scope="module")
def browser(chromium: str) -> Iterator[Any]:
    with harness.browser(chromium) as b:
        yield b


@pytest.fixture(scope="module")
def server(tiny_pair: Path, tmp_path_factory: pytest.TempPathFactory, chromium: str) -> Iterator[harness.Server]:
    """``imgxlate serve`` on the tiny horse<->zebra pair with a 40 000-pixel limit (so a 250x250 upload
    is "too many pixels"), a 5 MB upload limit and a 2-second video limit."""
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    with harness.run_server(
        ["--model", str(tiny_pair), "--to", "zebra", "--max-pixels", "40000", "--max-upload-mb", "5",
         "--max-video-seconds", "2", "--threads", "1"],
        log,
    ) as s:
        yield s


@pytest.fixture()
def page(browser: Any, server: harness.Server) -> Iterator[Any]:
    p = harness.open_page(browser, server.url)
    try:
        yield p
    finally:
        p.context.close()
