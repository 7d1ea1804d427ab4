"""`models add` beyond a plain file: names that would hide another model, a direction added into a pair,
pairs from a zip / folder URL / the Hugging Face Hub (a local stand-in), --sha256 checked before the
download, the whole-download deadline, metadata validation and broken models in the listing, and the
generator probe shared with --model."""

from __future__ import annotations

import http.server
import json
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hub_standin import HubStandIn
from model_builders import build, meta, pair_folder

from imgxlate import registry as reg
from imgxlate.errors import ImgxlateError, InvalidModelError, UsageError
from imgxlate.metadata import ModelMetadata


@pytest.fixture()
def bundled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, home: Path) -> Path:
    """A bundled cat2dog pair (cat <-> dog)."""
    root = tmp_path / "bundled-models"
    pair_folder(root / "cat2dog")
    monkeypatch.setattr(reg.pairs, "bundled_models_dir", lambda: root)
    return root


def names(home: Path) -> list[str]:
    return sorted(p.name for p in home.iterdir())


# ------------------------------------------------------------------------------- hiding another model


def test_single_direction_cannot_silently_hide_the_bundled_pair(bundled: Path, tmp_path: Path) -> None:
    one = build(tmp_path / "dl" / "mine.onnx", meta=meta(direction="b2a"))
    with pytest.raises(UsageError) as info:
        reg.install_model(one, name="cat2dog")
    msg = str(info.value)
    assert "bundled with imgxlate" in msg and "would hide its b2a generator" in msg and "--force" in msg
    assert reg.resolve_model(to="cat").pair.location == "bundled"

    told: list[str] = []
    pair = reg.install_model(one, name="cat2dog", force=True, warn=told.append)
    # The bundled a2b generator is kept beside the new b2a, so --to dog still works.
    assert pair.location == "user" and pair.directions == ("a2b", "b2a")
    assert len(told) == 1 and "hides the bundled model cat2dog" in told[0] and "a2b generator was kept" in told[0]
    assert reg.resolve_model(to="dog").pair.location == "user"
    assert (pair.path / "b2a.onnx").read_bytes() == one.read_bytes()


def test_unrelated_model_under_a_bundled_name_is_refused_then_forced(bundled: Path, tmp_path: Path) -> None:
    other = build(tmp_path / "o.onnx", meta=meta("x2y", "a2b", "x", "y"))
    with pytest.raises(UsageError, match="would hide it"):
        reg.install_model(other, name="cat2dog")
    told: list[str] = []
    reg.install_model(other, name="cat2dog", force=True, warn=told.append)
    assert "hides the bundled model cat2dog (a2b: cat -> dog, b2a: dog -> cat)" in told[0]
    assert "models remove cat2dog" in told[0]


def test_add_a_direction_into_a_pair(home: Path, tmp_path: Path) -> None:
    pair_folder(tmp_path / "half", directions=("a2b",))
    reg.install_model(tmp_path / "half", name="cat2dog")
    b2a = build(tmp_path / "b2a-only.onnx", meta=meta(direction="b2a"))
    pair = reg.install_model(b2a, name="cat2dog")  # no --force: it adds, hides nothing
    assert pair.directions == ("a2b", "b2a")
    assert names(pair.path) == ["README.md", "a2b.onnx", "b2a.onnx"]  # the model card is kept
    # The same direction again is a clash; other domains under the same name too.
    with pytest.raises(UsageError, match="already installed .* would hide its b2a generator"):
        reg.install_model(b2a, name="cat2dog")
    with pytest.raises(UsageError, match="already installed"):
        reg.install_model(build(tmp_path / "xy.onnx", meta=meta("x2y", "b2a", "x", "y")), name="cat2dog")
    told: list[str] = []
    reg.install_model(b2a, name="cat2dog", force=True, warn=told.append)
    assert "replacing the user model cat2dog" in told[0]
    assert names(home) == ["cat2dog"]  # no staging or previous copy left


# ---------------------------------------------------------------------------------------- pairs by URL


def test_pair_from_a_zip_url_and_a_folder_url(home: Path, tmp_path: Path, http_root: tuple[Path, str]) -> None:
    root, base = http_root
    src = pair_folder(tmp_path / "src" / "cat2dog")
    with zipfile.ZipFile(root / "cat2dog.zip", "w") as zf:
        for f in src.iterdir():
            zf.write(f, f"cat2dog/{f.name}")
        zf.writestr("../evil.onnx", b"never unpacked")
    pair = reg.install_model(f"{base}/cat2dog.zip", name="zipped")
    assert pair.directions == ("a2b", "b2a") and names(pair.path) == ["README.md", "a2b.onnx", "b2a.onnx",
                                                                      "source.json"]
    assert json.loads((pair.path / "source.json").read_text())["source"] == f"{base}/cat2dog.zip"
    assert not (home.parent / "evil.onnx").exists()

    import shutil

    shutil.copytree(src, root / "models" / "cat2dog")
    pair = reg.install_model(f"{base}/models/cat2dog/")
    assert pair.name == "cat2dog" and pair.directions == ("a2b", "b2a")
    assert (pair.path / "README.md").read_text().startswith("# cat2dog")
    with pytest.raises(ImgxlateError, match="neither a2b.onnx nor b2a.onnx"):
        reg.install_model(f"{base}/models/nothing/")
    # a folder URL without its '/': the server's listing page is not installed as a model
    with pytest.raises(ImgxlateError, match="web page .*a pair folder's URL ends with '/'"):
        reg.install_model(f"{base}/models/cat2dog", name="listing")
    # a file that is not ONNX: the error names the URL, not the temp copy
    (root / "junk.onnx").write_bytes(b"junk")
    with pytest.raises(ImgxlateError, match=f"^{base}/junk.onnx is not a readable ONNX file") as info:
        reg.install_model(f"{base}/junk.onnx", name="junk")
    assert ".download" not in str(info.value)
    assert sorted(p.name for p in home.iterdir()) == ["cat2dog", "zipped"]  # nothing else installed or left


def test_malformed_sha256_is_refused_before_downloading(home: Path, tmp_path: Path) -> None:
    seen: list[str] = []

    class Count(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.path)
            self.send_error(404)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Count)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/m.onnx"
        for bad in ("abc", "g" * 64, "0" * 63):
            with pytest.raises(UsageError, match="64 hexadecimal digits"):
                reg.install_model(url, sha256=bad)
        with pytest.raises(UsageError, match="not a folder"):
            reg.install_model(url.replace("m.onnx", ""), sha256="0" * 64)
    finally:
        server.shutdown()
        server.server_close()
    assert seen == []


@pytest.fixture()
def trickle() -> Iterator[str]:
    """A server that announces 1 MB and sends one byte every 0.2 s."""
    stop = threading.Event()

    class Slow(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(1 << 20))
            self.end_headers()
            while not stop.is_set():
                try:
                    self.wfile.write(b"\x08")
                    self.wfile.flush()
                except OSError:
                    return
                time.sleep(0.2)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/slow.onnx"
    finally:
        stop.set()
        server.shutdown()
        server.server_close()


def test_a_trickling_download_ends_at_the_deadline(home: Path, trickle: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[int] = []
    t0 = time.monotonic()
    with pytest.raises(ImgxlateError, match="did not finish within 1.5 s"):
        reg.install_model(trickle, deadline=1.5, progress=lambda d, t: seen.append(d))
    assert time.monotonic() - t0 < 10  # not the minutes a 1 MB trickle would take
    assert seen[0] == 0 and seen[-1] >= 1  # progress was reported while it trickled
    assert names(home) == []
    monkeypatch.setenv("IMGXLATE_DOWNLOAD_TIMEOUT", "1")
    with pytest.raises(ImgxlateError, match="within 1 s"):
        reg.install_model(trickle)


# ---------------------------------------------------------------------------------- Hugging Face Hub


@pytest.fixture()
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[HubStandIn]:
    pytest.importorskip("huggingface_hub")
    from huggingface_hub import constants
    stand_in = HubStandIn()
    monkeypatch.setenv("HF_ENDPOINT", stand_in.url)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    try:
        yield stand_in
    finally:
        stand_in.close()


def test_hub_pinned_revision_cache_and_offline(home: Path, tmp_path: Path, hub: HubStandIn) -> None:
    old = hub.add("org/cat2dog", pair_folder(tmp_path / "v1"), ref="v1")
    new = hub.add("org/cat2dog", pair_folder(tmp_path / "v2", directions=("a2b",)), ref="main")

    pair = reg.install_model("hf://org/cat2dog")
    assert pair.name == "cat2dog" and pair.directions == ("a2b",)
    src = json.loads((pair.path / "source.json").read_text())
    assert src == {"source": "hf://org/cat2dog", "revision": new, "requested": "main"}

    pair = reg.install_model("hf://org/cat2dog@v1", name="pinned")
    assert pair.directions == ("a2b", "b2a")
    assert json.loads((pair.path / "source.json").read_text())["revision"] == old
    assert (tmp_path / "hf-cache").is_dir()  # the Hub client's own cache holds the files

    hub.close()  # offline from here: the cached revision still installs, an uncached one says why
    pair = reg.install_model(f"hf://org/cat2dog@{old}", name="offline")
    assert pair.directions == ("a2b", "b2a")
    with pytest.raises(ImgxlateError, match="cannot be reached .* not in the Hugging Face cache"):
        reg.install_model("hf://org/other@v9", name="never")


def test_hub_errors(home: Path, tmp_path: Path, hub: HubStandIn) -> None:
    hub.add("org/cat2dog", pair_folder(tmp_path / "v1"))
    with pytest.raises(ImgxlateError, match="no model repository org/nothing"):
        reg.install_model("hf://org/nothing")
    with pytest.raises(ImgxlateError, match="no revision 'v7'"):
        reg.install_model("hf://org/cat2dog@v7")
    for bad in ("hf://justone", "hf://org/x@", "hf://a/b/c"):
        with pytest.raises(UsageError, match="not a Hugging Face model address"):
            reg.install_model(bad)
    with pytest.raises(UsageError, match="not a folder or a Hub repository"):
        reg.install_model("hf://org/cat2dog", sha256="0" * 64)


# ------------------------------------------------------------------------------ metadata, broken models


@pytest.mark.parametrize(("field", "value", "why"), [
    ("architecture", "text", "expected a JSON object"),
    ("input_range", 5, "expected [low, high]"),
    ("input_range", [1, -1], "low < high"),
    ("schema_version", "abc", "expected a whole number"),
    ("size_multiple", 0, "from 1 to 1024"),
    ("layout", "NHWC", "supports NCHW only"),
    ("color", "BGR", "supports RGB only"),
    ("dtype", "float16", "supports float32 only"),
    ("steps", -1, ">= 0"),
    ("direction", "sideways", "expected one of a2b, b2a"),
    ("target", "", "non-empty text"),
    ("source", "dog", "do not match direction a2b"),
])
def test_every_metadata_field_is_checked(tmp_path: Path, field: str, value: object, why: str) -> None:
    path = build(tmp_path / "m.onnx", meta={**meta(), field: value})
    with pytest.raises(InvalidModelError) as info:
        reg.load_pair(path)
    msg = str(info.value)
    assert str(path) in msg and repr(field) in msg and why in msg


def test_dtype_and_layout_are_checked_against_the_graph(tmp_path: Path) -> None:
    from onnx import TensorProto

    path = build(tmp_path / "half.onnx", meta=meta(), elem_type=TensorProto.DOUBLE)
    with pytest.raises(InvalidModelError, match="its input is float64 but metadata field 'dtype' says float32"):
        reg.load_pair(path)
    ModelMetadata.from_dict(meta())  # the valid one passes
    eight = build(tmp_path / "u8.onnx", meta=None, elem_type=TensorProto.UINT8)
    with pytest.raises(InvalidModelError, match="its input is uint8 but imgxlate needs float32; export the model "
                                                "with a float32 input"):
        reg.load_pair(eight)


def test_a_broken_user_model_is_listed_as_broken(home: Path, tmp_path: Path) -> None:
    reg.install_model(pair_folder(tmp_path / "good"), name="good")
    build(home / "bad" / "a2b.onnx", meta={**meta(), "architecture": "text"})
    pairs, broken = reg.scan_models()
    assert [p.name for p in pairs] == ["good"]
    assert [b.name for b in broken] == ["bad"] and "'architecture'" in broken[0].reason
    assert str(home / "bad" / "a2b.onnx") in broken[0].reason
    assert [p.name for p in reg.list_models()] == ["good"]
    assert reg.resolve_model(to="dog").pair.name == "good"


# ----------------------------------------------------------------------------------- generator probe


@pytest.mark.parametrize(("kind", "why"), [
    ("classifier", "same size"),
    ("half", "same size"),
    ("constant", "constant image"),
    ("nan", "NaN or infinite"),
])
def test_models_that_are_not_generators_are_refused(home: Path, tmp_path: Path, kind: str, why: str) -> None:
    path = build(tmp_path / f"{kind}.onnx", kind, meta=meta())
    with pytest.raises(InvalidModelError, match=why):
        reg.install_model(path)
    assert names(home) == []


def test_probe_accepts_a_real_generator(tmp_path: Path) -> None:
    from imgxlate.engine import Engine

    path = build(tmp_path / "ok.onnx", meta=meta())
    reg.probe_generator(Engine(path, device="cpu", threads=1), reg.load_pair(path).files[0].metadata, path)


@pytest.mark.parametrize("kind", ["classifier", "half", "constant", "nan"])
def test_model_path_gets_the_same_checks(tmp_path: Path, kind: str) -> None:
    """--model PATH / load_model: the probe of `models add`, before any image is converted."""
    from typer.testing import CliRunner

    from imgxlate.cli.app import app
    from imgxlate.translator import load_model

    path = build(tmp_path / f"{kind}.onnx", kind, meta=meta())
    with pytest.raises(InvalidModelError):
        load_model(path, device="cpu")
    from PIL import Image

    (tmp_path / "in").mkdir()
    Image.new("RGB", (12, 8), (10, 200, 30)).save(tmp_path / "in" / "a.png")
    res = CliRunner().invoke(app, ["convert", str(tmp_path / "in"), "--out", str(tmp_path / "out"),
                                   "--model", str(path), "--device", "cpu"])
    assert res.exit_code == 1 and "error:" in res.stderr and "Traceback" not in res.output
    assert not (tmp_path / "out" / "a.png").exists()
    good = build(tmp_path / "good.onnx", meta=meta())
    assert load_model(good, device="cpu").metadata.target == "dog"


def test_a_broken_user_model_is_replaced_only_with_force(home: Path, tmp_path: Path) -> None:
    build(home / "cat2dog" / "a2b.onnx", meta={**meta(), "layout": "NHWC"})
    good = pair_folder(tmp_path / "cat2dog")
    with pytest.raises(UsageError, match="installed at .* but cannot be loaded; .* --force"):
        reg.install_model(good)
    told: list[str] = []
    assert reg.install_model(good, force=True, warn=told.append).directions == ("a2b", "b2a")
    assert told and "replacing the user model cat2dog" in told[0]


def test_local_zip_is_unpacked_and_named_after_it(home: Path, tmp_path: Path) -> None:
    src = pair_folder(tmp_path / "p")
    with zipfile.ZipFile(tmp_path / "pets.zip", "w") as zf:
        for f in src.iterdir():
            zf.write(f, f.name)
    pair = reg.install_model(tmp_path / "pets.zip")
    assert pair.name == "cat2dog" and names(pair.path) == ["README.md", "a2b.onnx", "b2a.onnx"]


def test_training_runs_model_folders_are_named_after_their_pairs(home: Path, tmp_path: Path) -> None:
    """Every run exports into RUN/model, so `models add runs/X/model` installed each pair as "model"
    and refused the second run's."""
    from tiny_generator import write_pair

    first = reg.install_model(write_pair(tmp_path / "runs" / "h2z" / "model"))
    second = reg.install_model(write_pair(tmp_path / "runs" / "c2d" / "model", name_a="cat", name_b="dog"))
    assert (first.name, second.name) == ("horse2zebra", "cat2dog")
    assert reg.install_model(write_pair(tmp_path / "mine"), name=None).name == "mine"  # other folders: their name


def test_hub_without_the_extra_names_it(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    with pytest.raises(UsageError, match=r"needs the huggingface_hub package: pip install 'huggingface_hub>=0\.24'"):
        reg.install_model("hf://org/cat2dog")


def test_a_killed_install_s_staging_folder_goes_at_the_next_install(home: Path, tiny_pair: Path) -> None:
    """SIGKILL during `models add` leaves `.imgxlate-tmp-*` in the models folder (12-20 MB each); the
    next install removes those in which nothing changed for a day, and keeps a live one."""
    import os

    home.mkdir(parents=True, exist_ok=True)
    stale = home / ".imgxlate-tmp-abc123"
    (stale / ".download").mkdir(parents=True)
    (stale / ".download" / "model.onnx").write_bytes(b"half a download")
    live = home / ".imgxlate-tmp-def456"
    (live / ".download").mkdir(parents=True)
    (live / ".download" / "model.onnx").write_bytes(b"still downloading")
    past = time.time() - 25 * 3600
    for p in (stale / ".download" / "model.onnx", stale / ".download", stale, live):
        os.utime(p, (past, past))  # the live one's file is fresh: its download is going on
    reg.install_model(tiny_pair, name="pair")
    assert not stale.exists() and live.exists()
    assert sorted(p.name for p in home.iterdir()) == [".imgxlate-tmp-def456", "pair"]


def test_a_models_folder_that_cannot_be_written_names_imgxlate_home(home: Path, tiny_pair: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    def read_only(*args: object, **kwargs: object) -> str:
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(reg.install.tempfile, "mkdtemp", read_only)
    with pytest.raises(ImgxlateError, match="cannot write into the models folder .*set IMGXLATE_HOME") as info:
        reg.install_model(tiny_pair, name="pair")
    assert "--out" not in str(info.value)


def test_a_model_with_external_data_is_installed_with_its_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the .onnx was copied: every later run failed on the missing .data file."""
    import onnx

    from imgxlate import load_model
    from imgxlate.registry.install import install_model

    monkeypatch.setenv("IMGXLATE_HOME", str(tmp_path / "home"))
    plain = onnx.load(str(build(tmp_path / "plain.onnx", meta=None)))
    (tmp_path / "ext").mkdir()
    onnx.save_model(plain, str(tmp_path / "ext" / "model.onnx"), save_as_external_data=True,
                    location="model.onnx.data", size_threshold=0)
    assert (tmp_path / "ext" / "model.onnx.data").is_file()
    install_model(tmp_path / "ext" / "model.onnx", name="ext")
    installed = tmp_path / "home" / "models" / "ext"
    assert sorted(p.name for p in installed.iterdir() if not p.name.startswith(".")) == ["a2b.onnx"]
    rgb = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    got = load_model("ext", device="cpu", threads=1).translate_rgb(rgb)
    want = load_model(str(tmp_path / "plain.onnx"), device="cpu", threads=1).translate_rgb(rgb)
    assert np.array_equal(got, want)


def test_a_model_whose_external_data_is_missing_names_the_file_to_put_beside_it(tmp_path: Path) -> None:
    """The CPU rewrite loaded the weights and raised onnx's ValidationError: a traceback, no JSON."""
    import subprocess
    import sys

    import onnx
    from PIL import Image

    plain = onnx.load(str(build(tmp_path / "plain.onnx", meta=None)))
    (tmp_path / "ext").mkdir()
    onnx.save_model(plain, str(tmp_path / "ext" / "model.onnx"), save_as_external_data=True,
                    location="weights.bin", size_threshold=0)
    (tmp_path / "ext" / "weights.bin").unlink()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "a.png")
    cli = Path(sys.executable).parent / "imgxlate"
    r = subprocess.run([str(cli), "convert", str(tmp_path / "a.png"), "--model", str(tmp_path / "ext" / "model.onnx"),
                        "--out", str(tmp_path / "out"), "--json"], capture_output=True, text=True, check=False)
    err = json.loads(r.stdout)["error"]
    assert r.returncode == 1 and err["type"] == "InvalidModelError", r.stderr
    assert "weights.bin" in err["message"] and "put weights.bin in the folder of model.onnx" in err["message"]
    assert "Traceback" not in r.stderr and not (tmp_path / "out").exists()


def test_a_hub_repository_with_one_model_onnx_is_named_after_the_repository(
    home: Path, tmp_path: Path, hub: HubStandIn
) -> None:
    """The Hugging Face layout (config.json + model.onnx, no imgxlate metadata) was installed as 'model',
    so a second such repository clashed with the first."""
    for repo in ("org/foo2bar", "org/day2night"):
        folder = tmp_path / repo.replace("/", "_")
        build(folder / "model.onnx", meta=None)
        (folder / "config.json").write_text("{}")
        hub.add(repo, folder)
    assert reg.install_model("hf://org/foo2bar").name == "foo2bar"
    assert reg.install_model("hf://org/day2night").name == "day2night"


def test_a_user_model_installed_as_model_keeps_that_name(home: Path, tmp_path: Path) -> None:
    """Installed as "model" before runs were named by their pair: listed as "horse2zebra", which no
    command then accepted ("no model named 'horse2zebra'; did you mean 'horse2zebra'?")."""
    import shutil

    from tiny_generator import write_pair

    shutil.copytree(write_pair(tmp_path / "runs" / "h2z" / "model"), home / "model")
    assert [p.name for p in reg.list_models() if p.location == "user"] == ["model"]
    assert reg.resolve_model("model", to="zebra").pair.name == "model"
