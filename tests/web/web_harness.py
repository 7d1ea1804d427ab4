"""Start ``imgxlate serve`` on a free local port and drive it with Playwright in headless Chromium.

Used by the web tests (through tests/web/conftest.py) and by tests/web/make_screenshot.py, so the
README's screenshot comes from the same setup as the tests.

Playwright cannot download its own browser everywhere (no network in CI), so it is launched at a
system Chromium: ``$IMGXLATE_CHROMIUM``, else ``chromium`` / ``chromium-browser`` / ``google-chrome``
on PATH (Debian: ``apt-get install chromium``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

BROWSER_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    """The system Chromium to launch, or None."""
    env = os.environ.get("IMGXLATE_CHROMIUM", "").strip()
    if env:
        return env if Path(env).is_file() else shutil.which(env)
    for name in BROWSER_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """A running ``imgxlate serve`` subprocess: ``url``, ``log()`` (its stderr so far), ``stop()``."""

    def __init__(self, proc: subprocess.Popen[bytes], url: str, log_path: Path) -> None:
        self.proc = proc
        self.url = url
        self.log_path = log_path

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self, sig: int = signal.SIGINT) -> int | None:
        """Ctrl-C (or ``sig``), then SIGKILL after 15 s; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(15)
        return self.proc.returncode


@contextlib.contextmanager
def run_server(args: Sequence[str], log_path: Path, *, timeout: float = 120.0,
               env: dict[str, str] | None = None) -> Iterator[Server]:
    """``python -m imgxlate serve --port <free> ARGS``; yields once the page answers; always stopped."""
    port = free_port()
    cmd = [sys.executable, "-m", "imgxlate", "serve", "--port", str(port), *args]
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=full_env)
    server = Server(proc, f"http://127.0.0.1:{port}/", log_path)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"imgxlate serve exited with {proc.returncode}:\n{server.log()}")
            if "imgxlate serve: http://" in server.log():  # printed once the page is up
                try:
                    with urllib.request.urlopen(server.url, timeout=5) as r:
                        if r.status == 200:
                            break
                except OSError:
                    pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"imgxlate serve did not answer within {timeout:.0f} s:\n{server.log()}")
            time.sleep(0.3)
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def browser(executable: str) -> Iterator[Any]:
    """A headless Chromium (Playwright) at ``executable``."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=executable, headless=True,
                              args=["--no-sandbox", "--disable-dev-shm-usage"])
        try:
            yield b
        finally:
            b.close()


# ------------------------------------------------------------------------------------- page driving

RESULT_TIMEOUT_MS = 90_000


def open_page(b: Any, url: str, width: int = 1280, height: int = 900) -> Any:
    page = b.new_page(viewport={"width": width, "height": height}, accept_downloads=True)
    page.set_default_timeout(60_000)
    page.goto(url)
    page.wait_for_selector("#images-in input[type=file]", state="attached")
    return page


def status_run(page: Any, elem: str = "status-text") -> str:
    """The run number of the status block now shown ("" before the first run)."""
    return page.evaluate(f"() => document.getElementById('{elem}')?.dataset.run ?? ''")


def wait_status(page: Any, previous: str, elem: str = "status-text") -> str:
    """Wait until a status block newer than run ``previous`` is shown; return its text."""
    page.wait_for_function(
        f"prev => {{ const s = document.getElementById('{elem}'); return s && s.dataset.run !== prev; }}",
        arg=previous, timeout=RESULT_TIMEOUT_MS,
    )
    return page.inner_text(f"#{elem}")


def upload_images(page: Any, files: Sequence[Path]) -> str:
    """Drop ``files`` on the images input (the upload starts the translation); wait for the status of
    this run and return its text."""
    previous = status_run(page)
    page.set_input_files("#images-in input[type=file]", [str(f) for f in files])
    return wait_status(page, previous)


def clear_images(page: Any) -> None:
    """Empty the images input (its clear button), so the next upload is a fresh set."""
    button = page.locator("#images-in button[aria-label='Clear']")
    if button.count():
        button.first.click()


def download_links(page: Any, elem: str = "#downloads") -> dict[str, Any]:
    """name -> link locator of the download list."""
    links = page.locator(f"{elem} a[download]")
    return {links.nth(i).get_attribute("download"): links.nth(i) for i in range(links.count())}


def download(page: Any, link: Any, dest: Path) -> Path:
    """Click a download link in the page and save what the browser got as ``dest``."""
    with page.expect_download() as info:
        link.click()
    info.value.save_as(str(dest))
    return dest
