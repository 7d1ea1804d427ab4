"""`imgxlate models` list / info / add (file, folder, URL with sha256) / remove."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from imgxlate.cli.app import app


def invoke(*args: str | Path) -> object:
    return CliRunner().invoke(app, [str(a) for a in args])


def test_empty_list(home: Path) -> None:
    res = invoke("models")
    assert res.exit_code == 0 and "no models installed" in res.stdout
    res = invoke("models", "list", "--json")
    assert res.exit_code == 0 and json.loads(res.stdout) == []


def test_add_folder_list_info_remove(home: Path, tiny_pair: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    res = invoke("models", "add", tiny_pair)
    assert res.exit_code == 0, res.output
    assert "installed horse2zebra" in res.stdout
    assert (home / "horse2zebra" / "a2b.onnx").is_file()

    monkeypatch.setenv("IMGXLATE_DEFAULT_MODEL", "horse2zebra")
    res = invoke("models")
    assert res.exit_code == 0
    assert "horse2zebra (default)" in res.stdout and "horse <-> zebra" in res.stdout
    assert "a2b: horse -> zebra" in res.stdout and "user:" in res.stdout
    rows = json.loads(invoke("models", "list", "--json").stdout)
    assert rows[0]["name"] == "horse2zebra" and rows[0]["default"] is True
    assert rows[0]["directions"] == {"a2b": "horse -> zebra", "b2a": "zebra -> horse"}
    assert rows[0]["bytes"] > 0

    res = invoke("models", "info", "horse2zebra")
    assert res.exit_code == 0
    assert "pair: horse2zebra" in res.stdout and "architecture:" in res.stdout and "b2a" in res.stdout
    res = invoke("models", "info", "horse2zebr")
    assert res.exit_code == 2 and "did you mean 'horse2zebra'" in res.stderr

    # Installed by name, the default pair is used by convert with no --model.
    res = invoke("models", "add", tiny_pair)
    assert res.exit_code == 2 and "already installed" in res.stderr
    res = invoke("models", "remove", "horse2zebra")
    assert res.exit_code == 0 and not (home / "horse2zebra").exists()
    res = invoke("models", "remove", "horse2zebra")
    assert res.exit_code == 2 and "no user model named" in res.stderr


@pytest.mark.parametrize("when", ["before", "after"])
def test_a_stop_during_add_says_what_was_installed(home: Path, tiny_pair: Path, monkeypatch: pytest.MonkeyPatch,
                                                   when: str) -> None:
    """A Ctrl-C before the model is in place installs nothing; one after it (while the staging folder is
    tidied up) leaves it installed, and the command says so: it used to say "nothing was installed"
    (exit 130) with the pair in place."""
    from imgxlate.registry import install

    if when == "before":
        def stopped(*args: object) -> None:
            raise KeyboardInterrupt

        monkeypatch.setattr(install, "_swap_into_place", stopped)
    else:
        real = install.load_pair

        def stopped(*args: object, **kwargs: object) -> object:
            if args[1:2] != ("user",):  # the source's checks; the last call loads the installed pair
                return real(*args, **kwargs)
            raise KeyboardInterrupt  # after the rename, before install_model returns

        monkeypatch.setattr(install, "load_pair", stopped)
    res = invoke("models", "add", tiny_pair, "--json")
    if when == "before":
        assert res.exit_code == 130, res.output
        assert json.loads(res.stdout)["error"] == {"message": "interrupted: nothing was installed",
                                                   "type": "Interrupted", "exit_code": 130}
        assert not (home / "horse2zebra").exists()
    else:
        assert res.exit_code == 0, res.output
        assert json.loads(res.stdout)["installed"]["name"] == "horse2zebra"
        assert (home / "horse2zebra" / "a2b.onnx").is_file() and "nothing was installed" not in res.output


def test_json_before_the_sub_command_counts(home: Path, tiny_pair: Path) -> None:
    """`imgxlate models --json info NAME`: the group's --help offers --json; it used to be ignored."""
    res = invoke("models", "--json", "info", "horse2zebr")
    assert res.exit_code == 2 and json.loads(res.stdout)["error"]["type"] == "ModelNotFoundError"
    res = invoke("models", "--json", "add", tiny_pair)
    assert res.exit_code == 0 and json.loads(res.stdout)["installed"]["name"] == "horse2zebra"
    res = invoke("models", "--json", "list")
    assert res.exit_code == 0 and [r["name"] for r in json.loads(res.stdout)] == ["horse2zebra"]
    res = invoke("models", "--json", "remove", "horse2zebra")
    assert res.exit_code == 0 and json.loads(res.stdout)["removed"] == "horse2zebra"


def test_add_single_file_with_name(home: Path, tiny_pair: Path) -> None:
    res = invoke("models", "add", tiny_pair / "b2a.onnx", "--name", "zebra-to-horse")
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in (home / "zebra-to-horse").iterdir()) == ["b2a.onnx"]
    assert "zebra -> horse" in invoke("models").stdout


def test_add_rejects_non_model(home: Path, tmp_path: Path) -> None:
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"PK\x03\x04 a zip file, not a model")
    res = invoke("models", "add", junk)
    assert res.exit_code == 1 and "error:" in res.stderr and "Traceback" not in res.output
    assert not home.exists() or list(home.iterdir()) == []
    res = invoke("models", "add", tmp_path / "missing.onnx")
    assert res.exit_code == 2 and "does not exist" in res.stderr


def test_add_url_with_sha256(home: Path, tiny_pair: Path, http_root: tuple[Path, str]) -> None:
    root, base = http_root
    shutil.copy(tiny_pair / "a2b.onnx", root / "horse2zebra-a2b.onnx")
    digest = hashlib.sha256((root / "horse2zebra-a2b.onnx").read_bytes()).hexdigest()
    url = f"{base}/horse2zebra-a2b.onnx"

    res = invoke("models", "add", url, "--sha256", "0" * 64)
    assert res.exit_code == 1 and "sha256 mismatch" in res.stderr
    assert list(home.iterdir()) == []  # nothing installed, no temp left

    res = invoke("models", "add", url, "--sha256", digest, "--name", "h2z")
    assert res.exit_code == 0, res.output
    assert (home / "h2z" / "a2b.onnx").read_bytes() == (root / "horse2zebra-a2b.onnx").read_bytes()
    assert sorted(p.name for p in home.iterdir()) == ["h2z"]

    res = invoke("models", "add", f"{base}/nothing-here.onnx")
    assert res.exit_code == 1 and "HTTP 404" in res.stderr


def test_convert_uses_installed_default(home: Path, tiny_pair: Path, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import Image

    assert invoke("models", "add", tiny_pair).exit_code == 0
    monkeypatch.setenv("IMGXLATE_DEFAULT_MODEL", "horse2zebra")
    (tmp_path / "in").mkdir()
    Image.new("RGB", (10, 6), (200, 30, 30)).save(tmp_path / "in" / "a.png")
    res = invoke("convert", tmp_path / "in", "--out", tmp_path / "out", "--to", "horse")
    assert res.exit_code == 0, res.output
    assert Image.open(tmp_path / "out" / "a.png").size == (10, 6)
    # Without the default set, --to still finds the one pair that makes horses.
    monkeypatch.delenv("IMGXLATE_DEFAULT_MODEL")
    res = invoke("convert", tmp_path / "in", "--out", tmp_path / "out2", "--to", "horse")
    assert res.exit_code == 0, res.output
