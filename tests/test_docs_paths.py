"""Every repository path a document names in backticks (`imgxlate/...`, `docs/...`, `tools/...`)
is in the checkout, and where the checkout is a git work tree, committed or at least not ignored:
a file the docs point to that git ignores never reaches a user (the `runs/` pattern once swallowed
`docs/runs/`, and five sections of docs/default-model.md pointed at folders nobody else had)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")),
             *sorted((REPO / "imgxlate").rglob("README.md"))]
PREFIXES = ("imgxlate/", "train/", "tests/", "bench/", "tools/", "docs/", ".ci/")
# `bench/_util.run_measured` names a function: the path is what comes before the first dot after
# the last slash that is followed by a known suffix.
_TOKEN = re.compile(r"`([^`\s]+)`")
_CODE_SUFFIX = re.compile(r"^(.*?\.(?:py|md|sh|onnx|json|toml|png|jpg|txt))(?:[.:].*)?$")


def named_paths(text: str) -> list[str]:
    """The repository paths named in backticks in a Markdown text (wildcards and placeholders left out)."""
    paths = []
    for match in _TOKEN.finditer(text):
        token = match.group(1).rstrip(".,:;)")
        if not token.startswith(PREFIXES) or any(c in token for c in "*{}<>$"):
            continue
        suffixed = _CODE_SUFFIX.match(token)
        if suffixed:
            token = suffixed.group(1)
        elif "." in token.rsplit("/", 1)[-1] and not token.endswith("/"):
            token = token.rsplit(".", 1)[0]  # module.function -> module (+ .py below)
            if not (REPO / token).exists():
                token += ".py"
        paths.append(token)
    return paths


def test_named_paths_reads_files_folders_and_functions() -> None:
    text = "see `docs/tiling.md`, `bench/_util.run_measured`, `tools/gpu/` and `imgxlate/*.py`; `--tile 0`"
    assert named_paths(text) == ["docs/tiling.md", "bench/_util.py", "tools/gpu/"]


def test_every_path_the_documents_name_exists() -> None:
    missing = [f"{doc.relative_to(REPO)}: {path}" for doc in DOCUMENTS
               for path in named_paths(doc.read_text(encoding="utf-8")) if not (REPO / path).exists()]
    assert not missing, "documents name paths that are not in the checkout:\n" + "\n".join(missing)


def test_no_path_the_documents_name_is_ignored_by_git() -> None:
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git work tree (an unpacked sdist): nothing can be ignored")
    paths = sorted({path for doc in DOCUMENTS for path in named_paths(doc.read_text(encoding="utf-8"))})
    # check-ignore exits 1 when none of the paths is ignored, 0 when some are (printed), 128 on error.
    res = subprocess.run(["git", "-C", str(REPO), "check-ignore", "--no-index", *paths],
                         capture_output=True, text=True, check=False)
    assert res.returncode == 1, f"git ignores paths the documents name:\n{res.stdout}{res.stderr}"
