"""imgxlate-train without PyTorch or onnxscript installed (the `cpu` extra alone): one line naming
what to install, exit 2, before anything is trained or written; not a traceback, and not a traceback
at the export after hours of training."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from train_helpers import write_images

TINY = ["--ngf", "8", "--ndf", "8", "--n-blocks", "1", "--image-size", "32", "--load-size", "36",
        "--workers", "0", "--threads", "1", "--max-steps", "2", "-q"]


def _cli(tmp_path: Path, hidden: str, *args: str) -> subprocess.CompletedProcess:
    """Run imgxlate-train as if ``hidden`` (comma-separated modules) were not installed."""
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(
        f"import sys\nfor name in {hidden!r}.split(','):\n    sys.modules[name] = None  # find_spec: None; import: fails\n"
    )
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, "-m", "imgxlate.train", *args], check=False, capture_output=True,
                          text=True, env=env, timeout=300)


@pytest.fixture()
def domains(tmp_path: Path) -> list[str]:
    write_images(tmp_path / "a", 3, seed=1)
    write_images(tmp_path / "b", 3, seed=2, tint=60)
    return ["--domain-a", str(tmp_path / "a"), "--domain-b", str(tmp_path / "b")]


def test_without_torch_training_says_what_to_install(tmp_path: Path, domains: list[str]) -> None:
    r = _cli(tmp_path, "torch", *domains, *TINY, "--out", str(tmp_path / "run"), "--json")
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    err = json.loads(r.stdout)["error"]
    assert err["exit_code"] == 2 and err["type"] == "UsageError"
    assert "training needs torch, which is not installed: pip install 'torch>=2.2'" in err["message"]
    assert "download.pytorch.org/whl/cpu" in err["message"]  # the small CPU build
    assert not (tmp_path / "run").exists()


def test_without_onnxscript_the_run_stops_before_training_unless_it_does_not_export(tmp_path: Path,
                                                                                    domains: list[str]) -> None:
    r = _cli(tmp_path, "onnxscript", *domains, *TINY, "--out", str(tmp_path / "run"))
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().splitlines() == [
        ("error: the ONNX export at the end of the run (--no-export skips it) needs onnxscript, which is not "
         "installed: pip install 'onnxscript>=0.1'")
    ]
    assert not (tmp_path / "run" / "checkpoints").exists()  # nothing trained
    r = _cli(tmp_path, "onnxscript", *domains, *TINY, "--out", str(tmp_path / "run"), "--no-export")
    assert r.returncode == 0, r.stderr
    r = _cli(tmp_path, "onnxscript", "export", str(tmp_path / "run"), "--out", str(tmp_path / "model"))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "exporting needs onnxscript, which is not installed: pip install 'onnxscript>=0.1'" in r.stderr
    assert not (tmp_path / "model").exists()
