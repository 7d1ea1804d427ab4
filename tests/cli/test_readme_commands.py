"""Every shell command in the README and in docs/*.md is checked against the real command line:

- each ``imgxlate ...`` line anywhere is parsed by the CLI itself (option names, choices, argument
  counts), so a renamed or misspelt option in the docs fails here;
- the README's ``bash`` blocks are run for real, in a sandbox built from the bundled samples, except
  the lines listed in ``NOT_RUN`` with the reason (network, installs, training, long videos).
A new command in the README must either run here or be listed with its reason.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import typer

# Click's classes, whether Typer uses click itself or its own copy of it.
USAGE_ERROR = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
DOCS = sorted((REPO / "docs").glob("*.md"))
BIN = Path(sys.executable).parent

# README lines that are not run here, and why. Keys are the command as written (without its comment).
NOT_RUN: dict[str, str] = {
    "python3 -m venv .venv && . .venv/bin/activate && pip install '.[cpu]' && imgxlate convert imgxlate/samples "
    "--to vangogh --out out/vangogh":
        "installs from PyPI (network); its imgxlate command is run below as `QUICKSTART`",
    "python3 -m venv .venv && . .venv/bin/activate && pip install torch==2.13.0 && pip install -e "
    "'.[cpu,train,dev,hub,web,ray,openvino,raw,heic,jxl]' && python -m pytest -q":
        "installs from PyPI (network) and runs this suite: CI does",
    "python3 -m venv .venv && . .venv/bin/activate && pip install torch==2.13.0 && pip install -e "
    "'.[cpu,train,dev,hub,web,ray,openvino,raw,heic,jxl]'": "installs from PyPI (network): CI (.ci/run) does",
    "pip install '.[cpu]'": "installs from PyPI (network)",
    "pip install '.[gpu]'": "installs from PyPI (network); needs an NVIDIA GPU",
    "pip install '.[cpu,train]'": "installs from PyPI (network)",
    "pip install '.[cpu,train,dev]'": "installs from PyPI (network)",
    "pip install '.[cpu,hub]'": "installs from PyPI (network)",
    "pip install '.[cpu,raw]'": "installs from PyPI (network)",
    "python -m pytest -q": "this suite itself",
    "python -m pytest -q -m bench": "the benchmark runner test: CI runs it as its own step",
    "ruff check .": "lint, run by CI",
    "bash .ci/run": "CI itself (fresh venv, network)",
    "imgxlate models add https://host/model.onnx --sha256 HEX":
        "network (tests/test_models_add.py covers URLs against a local server)",
    "imgxlate models add hf://ORG/REPO@REV": "network (tests/test_models_add.py uses a local Hub stand-in)",
    "imgxlate video clip.mp4 --to vangogh --start 0:10 --duration 5 --frames-dir frames/":
        "needs a clip longer than 10 s (minutes on 2 CPU cores); tests/video covers --start/--duration",
    "imgxlate-train --domain-a data/horses --domain-b data/zebras --out runs/h2z": "training: hours",
    "imgxlate-train --resume runs/h2z": "needs a training run",
    "imgxlate-train import --a2b horse2zebra.pth --b2a zebra2horse.pth --out models/horse2zebra":
        "needs the original project's .pth files (network); tests/train/test_train_import.py imports stand-ins",
    "imgxlate models add models/horse2zebra": "needs the imported model above; tests/train/test_train_import.py",
    "imgxlate convert ./horses --to zebra --out ./zebras": "needs the imported model above; "
        "tests/train/test_train_import.py converts with one",
    "imgxlate-train export runs/h2z/checkpoints/last.pt --out models/h2z": "needs a training checkpoint",
    "torchrun --nproc-per-node 4 -m imgxlate.train --domain-a ... --domain-b ... --batch-size 4":
        "placeholders; multi-process training",
    "imgxlate --install-completion": "changes the user's shell start-up files",
    "pip install '.[cpu,web]' && imgxlate serve":
        "installs from PyPI (network); serves until Ctrl-C (tests/web start it and drive the page in Chromium)",
    "pip install '.[cpu,ray]'": "installs Ray from PyPI (network); tests/distributed covers --ray",
    "imgxlate convert /nfs/photos --to vangogh --out /nfs/out --ray-address auto":
        "needs a Ray cluster and shared storage (tests/distributed runs --ray on a local Ray instance)",
    "imgxlate convert s3://bucket/photos --to vangogh --out s3://bucket/out --ray":
        "needs an object store (tests/distributed runs the URL path on file:// URLs)",
}
QUICKSTART = "imgxlate convert imgxlate/samples --to vangogh --out out/vangogh"


def _blocks(path: Path, lang: str | None) -> list[str]:
    """The lines of the fenced code blocks of ``path`` (only ```lang blocks when ``lang`` is given)."""
    lines, inside, keep = [], False, False
    for line in path.read_text(encoding="utf-8").splitlines():
        fence = re.match(r"^\s*```(\w*)", line)
        if fence:
            if inside:
                inside = False
            else:
                inside, keep = True, lang is None or fence.group(1) == lang
            continue
        if inside and keep:
            lines.append(line)
    return lines


def _strip_comment(line: str) -> str:
    """The command without a trailing `# comment` (outside quotes)."""
    out, quote = [], ""
    for i, ch in enumerate(line):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            break
        out.append(ch)
    return "".join(out).strip()


def readme_commands() -> list[str]:
    return [c for c in (_strip_comment(x) for x in _blocks(README, "bash")) if c]


def doc_imgxlate_lines() -> list[tuple[str, str]]:
    found = []
    for path in [README, *DOCS]:
        for line in _blocks(path, None):
            cmd = _strip_comment(line)
            if cmd.startswith("imgxlate ") or cmd == "imgxlate":
                found.append((path.name, cmd))
    return found


def parse_only(args: list[str]) -> None:
    """Parse ``args`` with the real CLI (options, choices, arguments) without running the command."""
    from imgxlate.cli.app import app

    cmd = typer.main.get_command(app)
    ctx = cmd.make_context("imgxlate", list(args))
    while hasattr(cmd, "resolve_command"):  # a group: parse on into its sub-command
        rest = [*getattr(ctx, "_protected_args", []), *ctx.args]
        if not rest:
            return
        _, sub, rest = cmd.resolve_command(ctx, rest)
        assert sub is not None, f"no command {rest[:1]}"
        cmd = sub
        ctx = cmd.make_context(sub.name or "", rest, parent=ctx)


@pytest.mark.parametrize(("doc", "line"), doc_imgxlate_lines())
def test_documented_command_lines_parse(doc: str, line: str) -> None:
    args = shlex.split(line.split(" > ")[0])[1:]
    if "--install-completion" in args:  # its callback would change the shell's start-up files
        from imgxlate.cli.app import app

        names = {o for p in typer.main.get_command(app).params for o in getattr(p, "opts", [])}
        assert "--install-completion" in names
        return
    try:
        parse_only(args)
    except typer.Exit:
        pass  # --help / --version
    except USAGE_ERROR as exc:
        pytest.fail(f"{doc}: `{line}` does not parse: {exc.format_message()}")


def help_example_lines() -> list[str]:
    """The example lines of every command's help (its epilog)."""
    from imgxlate.cli.app import app

    found, stack = [], [typer.main.get_command(app)]
    while stack:
        cmd = stack.pop()
        stack.extend(getattr(cmd, "commands", {}).values())
        found += [_strip_comment(x) for x in (cmd.epilog or "").splitlines() if x.strip().startswith("imgxlate ")]
    return found


@pytest.mark.parametrize("line", help_example_lines())
def test_help_examples_parse(line: str) -> None:
    test_documented_command_lines_parse("--help", line)


def test_every_readme_command_is_run_or_says_why_not() -> None:
    unknown = [c for c in readme_commands() if c not in NOT_RUN and c not in RUNNERS]
    assert not unknown, f"README commands neither run by this test nor listed in NOT_RUN: {unknown}"
    stale = [c for c in (*NOT_RUN, *RUNNERS) if c not in readme_commands() and c != QUICKSTART]
    assert not stale, f"listed here but no longer in the README: {stale}"


# -------------------------------------------------------------------------------------------- running

# README commands run in the sandbox: command -> the exit status the README promises.
RUNNERS: dict[str, int] = {
    "imgxlate convert ./photos --to vangogh --out ./out": 0,
    "imgxlate convert ./paintings --to photo --out ./out": 0,
    "imgxlate convert a.jpg b.png 'shots/**/*.tif' --out ./out --format png": 0,
    "imgxlate convert ./photos --model ./runs/p2v/model --direction a2b --out ./out": 0,
    "imgxlate convert ./photos --to vangogh --out ./out --json > summary.json": 0,
    "imgxlate video clip.mp4 --to vangogh": 0,
    "imgxlate video ./videos --to vangogh --out ./out": 0,
    "imgxlate models": 0,
    "imgxlate models info vangogh2photo": 0,
    "imgxlate models add ./runs/p2v/model --name p2v": 0,
    "imgxlate models info p2v --json": 0,
    "imgxlate models remove p2v": 0,
    "imgxlate --help": 0,
    "imgxlate convert --help": 0,
}


def _sandbox(tmp: Path) -> Path:
    """photos/ and paintings/ (the bundled samples, made small), a pair folder at runs/p2v/model, shots/."""
    from PIL import Image

    samples = sorted((REPO / "imgxlate" / "samples").glob("*.jpg"))
    for folder in ("photos", "paintings", "shots/day"):
        (tmp / folder).mkdir(parents=True)
        for s in samples:
            im = Image.open(s)
            im.thumbnail((96, 96))
            im.save(tmp / folder / (s.stem + (".tif" if folder.startswith("shots") else ".jpg")))
    shutil.copy(samples[0], tmp / "a.jpg")
    Image.open(samples[1]).resize((64, 48)).save(tmp / "b.png")
    shutil.copytree(REPO / "imgxlate" / "models" / "vangogh2photo", tmp / "runs" / "p2v" / "model")
    shutil.copytree(REPO / "imgxlate" / "samples", tmp / "imgxlate" / "samples")
    _tiny_clip(tmp / "clip.mp4")
    (tmp / "videos").mkdir()
    shutil.copy(tmp / "clip.mp4", tmp / "videos" / "clip.mp4")
    return tmp


def _tiny_clip(path: Path) -> None:
    """8 frames of 64x48 at 8 fps (MPEG-4 part 2, which every FFmpeg build encodes)."""
    av = pytest.importorskip("av")
    import numpy as np

    with av.open(str(path), "w") as box:
        stream = box.add_stream("mpeg4", rate=8)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(8):
            rgb = np.zeros((48, 64, 3), np.uint8)
            rgb[:, : 8 * (i + 1)] = (200, 120, 40)
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                box.mux(packet)
        for packet in stream.encode():
            box.mux(packet)


def _run(cmd: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
           "IMGXLATE_HOME": str(cwd / "home"), "NO_COLOR": "1"}
    env.pop("IMGXLATE_DEFAULT_MODEL", None)
    return subprocess.run(["bash", "-c", cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=600,
                          check=False)


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("imgxlate", path=str(BIN)) is None:
        pytest.skip("the imgxlate console script is not installed beside this Python")
    return _sandbox(tmp_path_factory.mktemp("readme"))


@pytest.mark.slow
def test_readme_commands_run(sandbox: Path) -> None:
    """The README's runnable commands, in order (models add before models info p2v, remove last)."""
    cmds = [c for c in readme_commands() if c in RUNNERS]
    assert cmds, "no runnable README command found"
    failures = []
    for cmd in cmds:
        res = _run(cmd, sandbox)
        if res.returncode != RUNNERS[cmd]:
            failures.append(f"`{cmd}` exited {res.returncode} (README: {RUNNERS[cmd]}):\n{res.stderr[-1500:]}")
    assert not failures, "\n\n".join(failures)


def test_quick_start_converts_the_bundled_samples(sandbox: Path) -> None:
    res = _run(QUICKSTART, sandbox)
    assert res.returncode == 0, res.stderr
    assert sorted(p.name for p in (sandbox / "out" / "vangogh").iterdir()) == sorted(
        p.name for p in (REPO / "imgxlate" / "samples").glob("*.jpg"))
