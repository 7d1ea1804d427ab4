"""``imgxlate serve`` from outside: the missing-extra message, start/stop, what it serves and keeps."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import web_harness as harness


def test_missing_web_extra_names_it() -> None:
    """Without Gradio the command says which extra to install, before loading any model."""
    code = (
        "import sys; sys.modules['gradio'] = None\n"
        "from imgxlate.cli import main\n"
        "sys.argv = ['imgxlate', 'serve', '--model', 'does-not-exist']\n"
        "main()\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 2, r.stderr
    assert "pip install 'gradio>=6.0,<7'" in r.stderr  # imgxlate itself is not on PyPI
    assert "Traceback" not in r.stderr


def test_unknown_model_is_the_cli_error(tmp_path: Path) -> None:
    pytest.importorskip("gradio")
    r = subprocess.run([sys.executable, "-m", "imgxlate", "serve", "--model", str(tmp_path / "nope.onnx")],
                       capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 2, r.stderr
    assert "error:" in r.stderr and "nope.onnx" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_serves_only_its_own_files_and_cleans_up(tiny_pair: Path, tmp_path: Path, sig: int) -> None:
    pytest.importorskip("gradio")
    tmp = tmp_path / "tmp"  # the server's TMPDIR: nothing of it may stay there (Gradio's files included)
    tmp.mkdir()
    with harness.run_server(["--model", str(tiny_pair)], tmp_path / "serve.log", env={"TMPDIR": str(tmp)}) as server:
        log = server.log()
        assert "imgxlate serve: http://127.0.0.1:" in log and "CPUExecutionProvider" in log
        m = re.search(r"temp folder: (\S+)", log)
        assert m is not None, log
        workdir = Path(m[1])
        assert workdir.is_dir()
        # Gradio's file route must not hand out files outside the page's own folder.
        for outside in ("/etc/passwd", str(tiny_pair / "a2b.onnx")):
            with pytest.raises(urllib.error.HTTPError) as info:
                urllib.request.urlopen(f"{server.url}gradio_api/file={outside}", timeout=10)
            assert info.value.code in (403, 404)
        code = server.stop(sig)
    assert code == 0, server.log()
    assert not workdir.exists()
    assert [p.name for p in tmp.iterdir() if p.name != ".ses"] == []  # .ses: onnxruntime's own, at import
    assert "stopped" in server.log()


def test_a_host_that_is_not_this_machines_is_named_not_the_port() -> None:
    """--host 999.1.1.1 (no such address) or an address of another machine used to end in gradio's
    port search and "pick a free port with --port"; the host is checked first and named."""
    from imgxlate.errors import UsageError
    from imgxlate.web.app import check_host

    check_host("127.0.0.1")
    check_host("0.0.0.0")
    with pytest.raises(UsageError, match="'999.1.1.1' is not a known name or address"):
        check_host("999.1.1.1")
    with pytest.raises(UsageError, match="'192.0.2.1' is not an address of this machine"):  # TEST-NET-1
        check_host("192.0.2.1")


def test_a_second_signal_while_stopping_ends_at_once_and_removes_the_temp_folder(tmp_path: Path) -> None:
    """The first Ctrl-C waits for the request in flight; a second one used to escape that wait and
    leave the temp folder (uploads, results) behind. It now removes it and exits at once."""
    import subprocess
    import sys

    marker, stopped = tmp_path / "removed", tmp_path / "stopped"
    code = (
        "import os, signal, time\n"
        "from imgxlate.cli.serve import _stop_on_signals\n"
        "class Service:\n"
        f"    def remove_workdir(self): open({str(marker)!r}, 'w').close()\n"
        f"    def stop(self): open({str(stopped)!r}, 'w').close()\n"
        "_stop_on_signals(Service())\n"
        "try:\n"
        "    os.kill(os.getpid(), signal.SIGINT)\n"
        "    time.sleep(5)\n"
        "except KeyboardInterrupt:\n"
        "    os.kill(os.getpid(), signal.SIGTERM)  # while the first is handled\n"
        "    time.sleep(5)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert res.returncode == 128 + signal.SIGTERM, res.stderr
    assert marker.exists()
    # the first signal already told the requests in flight to stop: the web server's close waited on
    # them 5 s at a time (11-12 s to stop during a conversion, past docker stop's 10 s)
    assert stopped.exists()
