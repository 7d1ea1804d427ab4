"""Model lookup by name / path / target domain, install (file, folder, URL + sha256), remove."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from imgxlate import registry as reg
from imgxlate.errors import (
    AmbiguousModelError,
    ImgxlateError,
    InvalidModelError,
    ModelNotFoundError,
    UsageError,
)


def strip_metadata(src: Path, dst: Path) -> Path:
    import onnx

    model = onnx.load(str(src))
    del model.metadata_props[:]
    onnx.save(model, str(dst))
    return dst


def test_user_folder_from_env(home: Path) -> None:
    assert reg.user_models_dir() == home
    assert reg.list_models() == []


def test_default_name_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IMGXLATE_DEFAULT_MODEL", raising=False)
    assert reg.default_model_name() == reg.DEFAULT_MODEL == "vangogh2photo"
    monkeypatch.setenv("IMGXLATE_DEFAULT_MODEL", "horse2zebra")
    assert reg.default_model_name() == "horse2zebra"


def test_load_pair_folder(tiny_pair: Path) -> None:
    pair = reg.load_pair(tiny_pair)
    assert pair.name == "horse2zebra" and pair.location == "path"
    assert pair.domains == ("horse", "zebra")
    assert pair.directions == ("a2b", "b2a")
    assert pair.by_target("zebra").path.name == "a2b.onnx"
    assert pair.by_target("Zebra").path.name == "a2b.onnx"
    assert pair.by_direction("b2a").metadata.target == "horse"
    assert pair.size_bytes == sum((tiny_pair / f).stat().st_size for f in ("a2b.onnx", "b2a.onnx"))


def test_resolve_by_path_to_and_direction(tiny_pair: Path) -> None:
    assert reg.resolve_model(tiny_pair, to="horse").file.path.name == "b2a.onnx"
    assert reg.resolve_model(str(tiny_pair), direction="a2b").file.metadata.target == "zebra"
    single = reg.resolve_model(tiny_pair / "b2a.onnx")
    assert single.file.metadata.target == "horse" and single.notes == ()
    with pytest.raises(UsageError, match="not both"):
        reg.resolve_model(tiny_pair, to="horse", direction="a2b")
    with pytest.raises(UsageError, match="unknown direction"):
        reg.resolve_model(tiny_pair, direction="x2y")


def test_neither_to_nor_direction_picks_one_and_says_so(tiny_pair: Path) -> None:
    r = reg.resolve_model(tiny_pair)
    assert r.file.direction == "a2b"
    assert any("--to horse" in n.text for n in r.notes)
    assert [n.kind for n in r.notes] == ["direction"]


def test_photo_domain_is_the_default_source(tmp_path: Path, tiny_pair: Path) -> None:
    import dataclasses

    pair = reg.load_pair(tiny_pair)
    files = tuple(
        dataclasses.replace(f, metadata=dataclasses.replace(
            f.metadata, domain_a="vangogh", domain_b="photo",
            source="vangogh" if f.direction == "a2b" else "photo",
            target="photo" if f.direction == "a2b" else "vangogh"))
        for f in pair.files
    )
    assert dataclasses.replace(pair, files=files).default_file().metadata.target == "vangogh"


def test_typo_in_to_suggests(tiny_pair: Path) -> None:
    with pytest.raises(ModelNotFoundError) as info:
        reg.resolve_model(tiny_pair, to="zebr")
    assert "no model translates to 'zebr'; did you mean 'zebra'?" in str(info.value)
    assert "imgxlate models" in str(info.value)


def test_missing_path_and_non_onnx(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        reg.resolve_model(tmp_path / "nope.onnx")
    text = tmp_path / "model.bin"
    text.write_text("hello")
    with pytest.raises(InvalidModelError, match="not an ONNX model"):
        reg.resolve_model(text)
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08garbage that is not protobuf \xff\xff")
    with pytest.raises(InvalidModelError, match="copy or download it again"):
        reg.resolve_model(bad)
    zero = tmp_path / "zero.onnx"
    zero.write_bytes(b"")  # an empty file parses as an empty model: said so, not "0 graph inputs"
    with pytest.raises(InvalidModelError, match="holds no model .*copy or download it again"):
        reg.resolve_model(zero)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidModelError, match="neither a2b.onnx nor b2a.onnx; give the folder"):
        reg.resolve_model(tmp_path / "empty")


def test_file_without_metadata_is_assumed_with_a_note(tmp_path: Path, tiny_pair: Path) -> None:
    bare = strip_metadata(tiny_pair / "a2b.onnx", tmp_path / "mystyle.onnx")
    r = reg.resolve_model(bare, to="anything")
    assert r.file.assumed and r.pair.name == "mystyle"
    assert r.file.metadata.input_range == (-1.0, 1.0)
    assert any("no imgxlate metadata" in n.text for n in r.notes)
    assert any("--to anything ignored" in n.text for n in r.notes)
    assert [n.kind for n in r.notes] == ["no-metadata", "ignored"]


def test_a_bare_file_translates_the_same_once_installed(home: Path, tmp_path: Path, tiny_pair: Path) -> None:
    """It was "input -> plain" as a file and "a -> b" once installed, so --to plain stopped finding it."""
    bare = strip_metadata(tiny_pair / "a2b.onnx", tmp_path / "plain.onnx")
    assert reg.resolve_model(bare).file.label == "input -> plain"
    reg.install_model(bare)
    r = reg.resolve_model(None, to="plain")
    assert r.pair.name == "plain" and r.file.label == "input -> plain"


def test_a_training_run_given_as_the_model_says_where_its_model_is(tmp_path: Path, tiny_pair: Path) -> None:
    """A run folder passed as --model said "has neither a2b.onnx nor b2a.onnx" (exit 1)."""
    run = tmp_path / "runs" / "h2z"
    (run / "checkpoints").mkdir(parents=True)
    with pytest.raises(InvalidModelError, match="has neither a2b.onnx nor b2a.onnx"):  # nothing saved yet
        reg.resolve_model(run)
    (run / "checkpoints" / "last.pt").write_bytes(b"PK")  # a checkpoint: a PyTorch file
    with pytest.raises(UsageError, match=r"is a training run without an exported model; export it first: "
                                         r"imgxlate-train export .*h2z --out .*h2z/model"):
        reg.resolve_model(run)
    shutil.copytree(tiny_pair, run / "model")
    with pytest.raises(UsageError, match=r"h2z is a training run; its model is .*h2z/model: pass --model"):
        reg.resolve_model(run)
    assert reg.resolve_model(run / "model", to="zebra").file.direction == "a2b"
    with pytest.raises(ModelNotFoundError, match="model horse2zebra translates to"):  # was "model model ..."
        reg.resolve_model(run / "model", to="cat")
    with pytest.raises(UsageError, match=r"last.pt is a PyTorch file, not an ONNX model: .*imgxlate-train export RUN"):
        reg.resolve_model(run / "checkpoints" / "last.pt")


def test_a_pair_folder_whose_files_disagree_is_refused(home: Path, tmp_path: Path, tiny_pair: Path) -> None:
    """Installed before, then "has no b2a generator (it has a2b, a2b)" at use."""
    twice = tmp_path / "dup"
    twice.mkdir()
    shutil.copy(tiny_pair / "a2b.onnx", twice / "a2b.onnx")
    shutil.copy(tiny_pair / "a2b.onnx", twice / "b2a.onnx")
    with pytest.raises(InvalidModelError, match="b2a.onnx translates horse -> zebra, which its metadata calls a2b"):
        reg.install_model(twice)
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(tiny_pair / "a2b.onnx", other / "a2b.onnx")
    import onnx

    from imgxlate.metadata import METADATA_KEY, read_onnx_metadata

    meta = read_onnx_metadata(str(tiny_pair / "b2a.onnx"))
    model = onnx.load(str(tiny_pair / "b2a.onnx"))
    for prop in model.metadata_props:
        if prop.key == METADATA_KEY:
            import dataclasses

            prop.value = dataclasses.replace(meta, domain_a="cat", domain_b="dog", source="dog",
                                             target="cat").to_json()
    onnx.save(model, str(other / "b2a.onnx"))
    with pytest.raises(InvalidModelError, match="does not hold one pair"):
        reg.install_model(other)
    assert not home.is_dir() or not any(home.iterdir())  # nothing installed


def test_remove_with_an_empty_name_touches_nothing(home: Path, tiny_pair: Path) -> None:
    reg.install_model(tiny_pair)
    with pytest.raises(ModelNotFoundError, match="no user model named ''"):
        reg.remove_model("")
    assert [p.name for p in reg.list_models() if p.location == "user"] == ["horse2zebra"]


def test_default_model_missing(home: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="default model 'vangogh2photo' is not installed"):
        reg.resolve_model()
    with pytest.raises(ModelNotFoundError, match="no models are installed"):
        reg.resolve_model(to="vangogh")


def test_default_model_variable_says_what_it_takes(home: Path, tiny_pair: Path, monkeypatch: pytest.MonkeyPatch,
                                                    tmp_path: Path) -> None:
    """$IMGXLATE_DEFAULT_MODEL set to a model folder's path said "the default model '/.../model' is not
    installed", and with --to "no model translates to ...", never naming the variable."""
    reg.install_model(tiny_pair)
    monkeypatch.chdir(tmp_path)  # a folder here named like the installed model: the name still wins
    (tmp_path / "horse2zebra").mkdir()
    monkeypatch.setenv("IMGXLATE_DEFAULT_MODEL", "horse2zebra")
    assert reg.resolve_model().pair.name == "horse2zebra"
    monkeypatch.setenv("IMGXLATE_DEFAULT_MODEL", str(tiny_pair))
    for to in (None, "zebra"):
        with pytest.raises(UsageError, match=r"IMGXLATE_DEFAULT_MODEL is '.*', a path; it takes the name of an "
                                             r"installed model: install it with `imgxlate models add .* --name NAME`"):
            reg.resolve_model(to=to)
    monkeypatch.setenv("IMGXLATE_DEFAULT_MODEL", "h2z")
    for to in (None, "zebra"):
        with pytest.raises(ModelNotFoundError, match=r"IMGXLATE_DEFAULT_MODEL names the model 'h2z', which is not "
                                                     r"installed \(installed models: horse2zebra\)"):
            reg.resolve_model(to=to)
    assert reg.resolve_model(tiny_pair).pair.name == tiny_pair.name  # --model PATH is unaffected
    monkeypatch.setenv("IMGXLATE_DEFAULT_MODEL", "horse2zebra")
    assert reg.resolve_model(to="horse").file.direction == "b2a"


def test_install_folder_list_resolve_remove(home: Path, tiny_pair: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pair = reg.install_model(tiny_pair)
    assert pair.location == "user" and pair.path == home / "horse2zebra"
    assert sorted(p.name for p in pair.path.iterdir()) == ["README.md", "a2b.onnx", "b2a.onnx"]
    assert [p.name for p in reg.list_models()] == ["horse2zebra"]
    assert not any(p.name.startswith(".") for p in home.iterdir())  # no staging left
    # By name; --to without --model searches every pair when the default lacks the domain.
    assert reg.resolve_model("horse2zebra", to="zebra").file.direction == "a2b"
    assert reg.resolve_model(to="horse").pair.name == "horse2zebra"
    with pytest.raises(ModelNotFoundError, match="did you mean 'zebra'"):
        reg.resolve_model(to="zebr")
    with pytest.raises(ModelNotFoundError, match="did you mean 'horse2zebra'"):
        reg.resolve_model("horse2zebr")
    # a domain given as the model (it was "did you mean 'horse2zebra'?", not what to pass instead)
    with pytest.raises(ModelNotFoundError, match=r"'Zebra' is a domain of horse2zebra, not a model: give the "
                                                 r"model, horse2zebra, as --model and the domain .* as --to"):
        reg.resolve_model("Zebra")
    monkeypatch.setenv("IMGXLATE_DEFAULT_MODEL", "horse2zebra")
    assert reg.resolve_model().pair.name == "horse2zebra"
    # Second install under the same name is refused; under another name, --to becomes ambiguous.
    with pytest.raises(UsageError, match="already installed"):
        reg.install_model(tiny_pair)
    reg.install_model(tiny_pair, name="other")
    monkeypatch.delenv("IMGXLATE_DEFAULT_MODEL")
    with pytest.raises(AmbiguousModelError, match="horse2zebra, other"):
        reg.resolve_model(to="zebra")
    assert reg.remove_model("other") == home / "other"
    assert not (home / "other").exists()
    with pytest.raises(ModelNotFoundError, match="no user model named 'other'"):
        reg.remove_model("other")


def test_user_model_shadows_bundled(home: Path, tiny_pair: Path, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    bundled = tmp_path / "bundled2"
    shutil.copytree(tiny_pair, bundled / "horse2zebra")
    monkeypatch.setattr(reg.pairs, "bundled_models_dir", lambda: bundled)
    assert [(p.name, p.location) for p in reg.list_models()] == [("horse2zebra", "bundled")]
    with pytest.raises(UsageError, match="bundled"):
        reg.remove_model("horse2zebra")
    with pytest.raises(UsageError, match="bundled with imgxlate .* would hide it; .* --force"):
        reg.install_model(tiny_pair)
    hidden: list[str] = []
    reg.install_model(tiny_pair, force=True, warn=hidden.append)
    assert [(p.name, p.location) for p in reg.list_models()] == [("horse2zebra", "user")]
    assert len(hidden) == 1 and "hides the bundled model horse2zebra" in hidden[0]


def test_install_single_file_with_sha(home: Path, tiny_pair: Path, tmp_path: Path) -> None:
    src = tiny_pair / "b2a.onnx"
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    with pytest.raises(InvalidModelError, match="sha256 mismatch"):
        reg.install_model(src, name="one", sha256="0" * 64)
    assert not (home / "one").exists()
    with pytest.raises(UsageError, match="64 hexadecimal"):
        reg.install_model(src, name="one", sha256="abc")
    pair = reg.install_model(src, name="one", sha256=digest.upper())
    assert [p.name for p in pair.path.iterdir()] == ["b2a.onnx"]
    assert pair.by_target("horse") is not None
    with pytest.raises(UsageError, match="not usable as a folder name"):
        reg.install_model(src, name="../evil")


def test_install_rejects_broken_model(home: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not onnx at all")
    with pytest.raises(InvalidModelError):
        reg.install_model(bad)
    assert list(home.iterdir()) == []


def test_install_from_url(home: Path, tiny_pair: Path, http_root: tuple[Path, str]) -> None:
    root, base = http_root
    shutil.copy(tiny_pair / "a2b.onnx", root / "h2z.onnx")
    digest = hashlib.sha256((root / "h2z.onnx").read_bytes()).hexdigest()
    seen: list[tuple[int, int | None]] = []
    with pytest.raises(InvalidModelError, match="sha256 mismatch"):
        reg.install_model(f"{base}/h2z.onnx", sha256="f" * 64)
    assert list(home.iterdir()) == []
    pair = reg.install_model(f"{base}/h2z.onnx", name="fromurl", sha256=digest,
                             progress=lambda d, t: seen.append((d, t)))
    assert pair.name == "fromurl" and pair.by_target("zebra") is not None
    size = (root / "h2z.onnx").stat().st_size
    assert seen[0] == (0, size) and seen[-1] == (size, size)
    with pytest.raises(ImgxlateError, match="HTTP 404"):
        reg.install_model(f"{base}/missing.onnx")
    assert sorted(p.name for p in home.iterdir()) == ["fromurl"]
