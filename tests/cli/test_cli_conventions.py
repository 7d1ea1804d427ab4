"""What every command shares: choices refused at parse time, help (panels, examples, defaults, env vars,
no option without help, everyday commands first), -q = errors only, --json everywhere with a JSON error
object (usage errors included), and the models commands' --json / broken listing / --force."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import typer
from model_builders import build, meta, pair_folder
from PIL import Image
from typer.testing import CliRunner

from imgxlate import registry
from imgxlate.cli import main
from imgxlate.cli.app import app


@pytest.fixture()
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("IMGXLATE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("IMGXLATE_DEFAULT_MODEL", raising=False)
    return tmp_path / "home" / "models"


def invoke(*args: str | Path, env: dict[str, str] | None = None) -> object:
    return CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "250", **(env or {})})


def plain(text: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"[│╭╮╰╯─]", " ", text))


def all_commands() -> list[tuple[str, object]]:
    root = typer.main.get_command(app)
    found = [("imgxlate", root)]
    stack = [("imgxlate", root)]
    while stack:
        name, cmd = stack.pop()
        for sub_name, sub in getattr(cmd, "commands", {}).items():
            found.append((f"{name} {sub_name}", sub))
            stack.append((f"{name} {sub_name}", sub))
    return found


def test_every_option_has_help_and_every_command_examples() -> None:
    for name, cmd in all_commands():
        for p in cmd.params:
            if getattr(p, "opts", None) and p.opts[0].startswith("-"):
                assert getattr(p, "help", None), f"{name} {p.opts[0]} has no help"
        if name != "imgxlate":
            assert "Examples" in (cmd.epilog or ""), f"{name} has no examples"


def test_root_help_lists_everyday_commands_first_and_completion() -> None:
    out = plain(invoke("--help").stdout)
    panel = out[out.index("Everyday commands"):]
    assert re.match(r"Everyday commands convert .* video .* models ", panel)
    assert "Everyday commands" in out and "--install-completion" in out
    assert "IMGXLATE_HOME" in out and "IMGXLATE_DEFAULT_MODEL" in out
    # A command without a panel would be listed before the everyday ones.
    from imgxlate.cli.app import EVERYDAY, MORE

    root = typer.main.get_command(app)
    panels = {n: getattr(c, "rich_help_panel", None) for n, c in root.commands.items()}
    assert {n: p for n, p in panels.items() if p not in (EVERYDAY, MORE)} == {}


def test_convert_help_shows_defaults_choices_and_env(home: Path) -> None:
    out = plain(invoke("convert", "--help").stdout)
    for text in ("auto|cuda|cpu|coreml|directml", "same|png|jpg|webp|tiff", "exact|blend", "a2b|b2a",
                 "env var: IMGXLATE_DEVICE", "env var: IMGXLATE_MAX_PIXELS", "default: (vangogh2photo",
                 "vangogh2photo translates photo -> vangogh", "250_000_000", "Large images", "Reporting",
                 "imgxlate convert ./photos --to vangogh --out ./out"):
        assert text in out, text
    assert "[/" not in out and "[bold" not in out  # no raw markup


def test_typos_in_choices_fail_at_parse_time(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    Image.new("RGB", (12, 8), (200, 30, 30)).save(tmp_path / "in" / "a.png")
    for args, said in ((["--device", "cdua"], "is not one of"), (["--tiling", "exactt"], "is not one of"),
                       (["--format", "bmp"], "unknown output format"), (["--direction", "x2y"], "is not one of")):
        res = invoke("convert", tmp_path / "in", "--out", tmp_path / "o", *args)
        assert res.exit_code == 2 and said in plain(res.stderr), args
        assert "running on" not in res.stderr  # refused before a model loads
    res = invoke("convert", tmp_path / "in", "--out", tmp_path / "o", env={"IMGXLATE_DEVICE": "gpu"})
    assert res.exit_code == 2 and "'gpu' is not one of" in plain(res.stderr)
    res = invoke("convert", tmp_path / "in", "--out", tmp_path / "o", "--device", "CPU", "--to", "nosuch")
    assert res.exit_code == 2 and "no model translates to 'nosuch'" in res.stderr  # CPU accepted


def test_quiet_is_errors_only(tmp_path: Path, tiny_pair: Path) -> None:
    (tmp_path / "in").mkdir()
    Image.new("RGB", (12, 8), (200, 30, 30)).save(tmp_path / "in" / "a.png")
    (tmp_path / "in" / "bad.png").write_bytes(b"not a png")
    res = invoke("convert", tmp_path / "in", "--out", tmp_path / "out", "--model", tiny_pair, "-q")
    assert res.exit_code == 1
    lines = [x for x in res.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("failed:") and "bad.png" in lines[0]
    res = invoke("convert", tmp_path / "in", "--out", tmp_path / "out2", "--model", tiny_pair, "-q",
                 "--exclude", "bad.png")
    assert res.exit_code == 0 and res.stderr == "" and res.stdout == ""


def test_json_usage_errors_are_json(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    for args in (["convert", str(tmp_path), "--out", "o", "--tiling", "exactt", "--json"],
                 ["convert", "--json"], ["models", "info", "--json", "--bogus"]):
        with pytest.raises(SystemExit) as info:
            main(args)
        assert info.value.code == 2, args
        doc = json.loads(capsys.readouterr().out)
        assert doc["error"]["type"] == "UsageError" and doc["error"]["exit_code"] == 2, args


def test_a_file_named_like_an_option_is_refused_not_read_as_one(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, tiny_pair: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`imgxlate convert *.jpg --out OUT` in a folder holding `-o.jpg`: the shell's `-o.jpg` was read as
    `-o .jpg`, the later --out replaced it, and the photo was silently left out."""
    monkeypatch.chdir(tmp_path)
    for name in ("-o.jpg", "a.jpg"):
        Image.new("RGB", (32, 24), (200, 100, 50)).save(name)
    with pytest.raises(SystemExit) as info:
        main(["convert", "-o.jpg", "a.jpg", "--out", "out", "--model", str(tiny_pair), "--json"])
    assert info.value.code == 2 and not Path("out").exists()
    doc = json.loads(capsys.readouterr().out)
    assert "'-o.jpg' is the name of a file here" in doc["error"]["message"]
    assert "--out OUT -- *.jpg" in doc["error"]["message"]
    # after --, or as ./-o.jpg, it is a file like any other
    for args in (["--out", "out", "--", "-o.jpg", "a.jpg"], ["./-o.jpg", "a.jpg", "--out", "out2"]):
        with pytest.raises(SystemExit) as info:
            main(["convert", "--model", str(tiny_pair), "--to", "zebra", "--quiet", *args])
        assert info.value.code == 0, args
    assert sorted(p.name for p in Path("out").iterdir()) == ["-o.jpg", "a.jpg"]
    assert sorted(p.name for p in Path("out2").iterdir()) == ["-o.jpg", "a.jpg"]
    # an option's value that starts with "-" and exists is a value, not a stray name
    Path("-results").mkdir()
    Path("-q").write_text("a stray file named like an option")
    with pytest.raises(SystemExit) as info:
        main(["convert", "a.jpg", "--model", str(tiny_pair), "--to", "zebra", "--out", "-results", "-q"])
    assert info.value.code == 0 and [p.name for p in Path("-results").iterdir()] == ["a.jpg"]


def test_a_value_not_among_the_choices_is_said_plainly_with_the_nearest(capsys: pytest.CaptureFixture[str],
                                                                          tmp_path: Path) -> None:
    """Typer's "Value error, 'exactt' is not one of ..." (a validation library's prefix), without a hint."""
    from imgxlate.train.cli import main as train_main

    for run, args in ((main, ["convert", str(tmp_path), "--out", "o", "--tiling", "exactt", "--json"]),
                      (train_main, ["--domain-a", "a", "--domain-b", "b", "--method", "cyclgan", "--json"])):
        with pytest.raises(SystemExit) as info:
            run(args) if run is main else _argv(run, args)
        assert info.value.code == 2
        message = json.loads(capsys.readouterr().out)["error"]["message"]
        assert "Value error" not in message and "is not one of" in message, message
        assert message.endswith(("did you mean 'exact'?", "did you mean 'cyclegan'?")), message


def _argv(run: object, args: list[str]) -> None:
    import sys

    old, sys.argv = sys.argv, ["imgxlate-train", *args]
    try:
        run()  # type: ignore[operator]
    finally:
        sys.argv = old


def test_json_domain_errors_are_json(home: Path, tmp_path: Path) -> None:
    res = invoke("models", "info", "nosuch", "--json")
    assert res.exit_code == 2
    assert json.loads(res.stdout)["error"]["type"] == "ModelNotFoundError"
    res = invoke("convert", tmp_path / "missing", "--out", tmp_path / "o", "--json")
    assert res.exit_code == 2 and "does not exist" in json.loads(res.stdout)["error"]["message"]
    res = invoke("video", tmp_path / "missing.mp4", "--temporal", "bogus", "--json")  # checked in the command
    assert res.exit_code == 2 and json.loads(res.stdout)["error"]["type"] == "UsageError"


def test_models_json_add_info_remove_force(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bundled = tmp_path / "bundled"
    pair_folder(bundled / "cat2dog")
    monkeypatch.setattr(registry.pairs, "bundled_models_dir", lambda: bundled)
    mine = build(tmp_path / "mine.onnx", meta=meta(direction="b2a"))

    res = invoke("models", "add", mine, "--name", "cat2dog")
    assert res.exit_code == 2 and "would hide its b2a generator" in plain(res.stderr)
    res = invoke("models", "add", mine, "--name", "cat2dog", "--force", "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["installed"]["name"] == "cat2dog" and doc["installed"]["location"] == "user"
    assert "hides the bundled model cat2dog" in doc["warnings"][0]
    assert "warning:" in res.stderr and "hides the bundled model" in plain(res.stderr)

    info = json.loads(invoke("models", "info", "cat2dog", "--json").stdout)
    assert [f["direction"] for f in info["files"]] == ["a2b", "b2a"]
    assert info["files"][0]["metadata"]["target"] == "dog"

    res = invoke("models", "remove", "cat2dog", "--json")
    assert res.exit_code == 0 and json.loads(res.stdout)["removed"] == "cat2dog"
    res = invoke("models", "remove", "cat2dog", "-q")
    assert res.exit_code == 2 and res.stdout == "" and "cat2dog" in res.stderr  # bundled: cannot remove


def test_broken_model_is_listed_not_fatal(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "none"
    empty.mkdir()
    monkeypatch.setattr(registry.pairs, "bundled_models_dir", lambda: empty)
    pair_folder(home / "good")
    build(home / "bad" / "a2b.onnx", meta={**meta(), "input_range": 5})
    res = invoke("models")
    assert res.exit_code == 0
    assert "good" in res.stdout and "BROKEN" in res.stdout and "'input_range'" in res.stdout
    assert "model bad (user) cannot be used" in plain(res.stderr)
    rows = json.loads(invoke("models", "list", "--json").stdout)
    assert [(r["name"], "broken" in r) for r in rows] == [("good", False), ("bad", True)]
    res = invoke("models", "info", "bad")
    assert res.exit_code == 1 and "'input_range'" in res.stderr and str(home / "bad" / "a2b.onnx") in plain(
        res.stderr)


def test_shell_completion_of_models_domains_and_choices(home: Path) -> None:
    def complete(words: str) -> list[str]:
        env = {"_IMGXLATE_COMPLETE": "complete_bash", "COMP_WORDS": words,
               "COMP_CWORD": str(len(words.split()) - (0 if words.endswith(" ") else 1))}
        res = CliRunner().invoke(app, [], prog_name="imgxlate", env=env)
        return res.stdout.split()

    assert complete("imgxlate convert --model vang") == ["vangogh2photo"]
    assert complete("imgxlate convert --to ph") == ["photo"]
    assert complete("imgxlate convert --device c") == ["cuda", "cpu", "coreml"]
    assert complete("imgxlate mo") == ["models"]
