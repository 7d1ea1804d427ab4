"""Shared fixtures: tiny random-weight generator pairs (built with onnx.helper, no torch) and ../shared."""

from __future__ import annotations

import functools
import http.server
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from tiny_generator import write_pair

# 2-core CI: keep every library to one thread per test process unless a test says otherwise.
os.environ.setdefault("OMP_NUM_THREADS", "1")

# Tests send SIGINT to the commands they start (and to themselves) and expect a clean stop. A test run
# started with SIGINT ignored (a CI script run in the background: `cmd &` in a non-interactive shell)
# would hand that on to every child, and imgxlate keeps an inherited ignored SIGINT ignored, as
# Python itself does; the one test of that behaviour ignores it explicitly for its child.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("IMGXLATE_SHARED", REPO.parent / "shared"))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """../shared beside the checkout; tests that need it skip cleanly when it is absent."""
    if not SHARED.is_dir():
        pytest.skip("../shared is not present")
    return SHARED


@pytest.fixture(scope="session")
def corpus_dir(shared_dir: Path) -> Path:
    path = shared_dir / "corpus"
    if not path.is_dir():
        pytest.skip("../shared/corpus is not present")
    return path


def _make_pair(out: Path, upsample: str = "transpose", name_a: str = "horse", name_b: str = "zebra") -> Path:
    # Built with onnx.helper (tests/tiny_generator.py), not through the trainer: no torch needed.
    return write_pair(out, upsample, name_a, name_b)


@pytest.fixture(scope="session")
def tiny_pair(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with a2b.onnx (horse -> zebra), b2a.onnx and README.md: ngf 8, 2 blocks, random weights."""
    return _make_pair(tmp_path_factory.mktemp("models") / "horse2zebra")


@pytest.fixture(scope="session")
def tiny_pair_resize(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """As ``tiny_pair`` but with resize-conv upsampling (Resize nodes in the graph)."""
    return _make_pair(tmp_path_factory.mktemp("models") / "apple2orange", "resize", "apple", "orange")


@pytest.fixture()
def http_root(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A folder served over HTTP on 127.0.0.1 (a free port) for the whole test: ``(folder, base_url)``."""
    root = tmp_path / "www"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture()
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty user model folder (IMGXLATE_HOME) and no bundled models; returns the user model folder."""
    from imgxlate import registry

    monkeypatch.setenv("IMGXLATE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("IMGXLATE_DEFAULT_MODEL", raising=False)
    empty = tmp_path / "bundled"
    empty.mkdir()
    monkeypatch.setattr(registry.pairs, "bundled_models_dir", lambda: empty)
    return tmp_path / "home" / "models"
