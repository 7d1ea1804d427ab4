"""Which files a batch converts and where each result goes.

Inputs are files, folders (walked recursively unless told not to) and glob patterns. Each folder's tree
is mirrored under the output folder (``photos/a/b.jpg`` given ``photos`` -> ``OUT/a/b.jpg``), a single
file goes to ``OUT/name``, a glob's matches keep their path below the pattern's fixed prefix
(``shots/**/*.jpg`` -> ``OUT/<below shots>``). Names are kept exactly (spaces, unicode, colons).

Skipped while walking: hidden files and folders (name starts with '.'), the output folder itself (so
``--out`` inside the input tree is safe), and files whose suffix is not a readable image type.
"""

from __future__ import annotations

import fnmatch
import glob
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from imgxlate.errors import UsageError

_MAGIC = set("*?[")


@dataclass(frozen=True)
class InputFile:
    src: Path  # the file as found
    rel: Path  # its path below the output folder, before the output suffix is applied
    explicit: bool = False  # named on the command line (converted even with an unusual suffix)


@dataclass(frozen=True)
class PlannedFile:
    src: Path
    dst: Path
    status: str = "pending"  # "pending" | "skipped" | "failed"
    reason: str = ""


def _has_magic(text: str) -> bool:
    return any(c in _MAGIC for c in text)


def _glob_root(pattern: str) -> Path:
    """The fixed folder prefix of a glob pattern: ``a/b/*/c*.jpg`` -> ``a/b``."""
    parts = Path(pattern).parts
    fixed: list[str] = []
    for part in parts[:-1]:
        if _has_magic(part):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path(".")


def _matches(rel: Path, patterns: Sequence[str]) -> bool:
    posix, name = rel.as_posix(), rel.name
    for pat in patterns:
        if fnmatch.fnmatchcase(posix, pat) or fnmatch.fnmatchcase(name, pat):
            return True
        # "**/x" should match "x" at the top level too.
        if pat.startswith("**/") and fnmatch.fnmatchcase(posix, pat[3:]):
            return True
    return False


def _same(a: Path, b: Path | None) -> bool:
    if b is None:
        return False
    try:
        return a.resolve() == b
    except OSError:
        return False


def _walk(root: Path, recursive: bool, out_dir: Path | None) -> Iterable[Path]:
    """Files below ``root`` in a stable order, skipping hidden entries and the output folder."""
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = sorted(
            d for d in dirnames if not d.startswith(".") and not _same(here / d, out_dir)
        ) if recursive else []
        for name in sorted(filenames):
            if not name.startswith("."):
                yield here / name


def collect_inputs(
    inputs: Sequence[str | os.PathLike[str]],
    *,
    out_dir: str | os.PathLike[str] | None = None,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    recursive: bool = True,
    suffixes: Iterable[str] | None = None,
) -> list[InputFile]:
    """Expand files, folders and globs into a de-duplicated, ordered list of image files."""
    if suffixes is None:
        from imgxlate.imaging.formats import READ_SUFFIXES

        suffixes = READ_SUFFIXES
    wanted = {s.lower() if s.startswith(".") else "." + s.lower() for s in suffixes}
    out_resolved = Path(out_dir).resolve() if out_dir is not None else None
    if not inputs:
        raise UsageError("no inputs given; pass image files, folders or glob patterns")

    found: list[InputFile] = []
    seen: set[Path] = set()

    def add(src: Path, rel: Path, explicit: bool) -> None:
        if not explicit and src.suffix.lower() not in wanted:
            return
        if include and not _matches(rel, include):
            return
        if exclude and _matches(rel, exclude):
            return
        key = src.resolve()
        if key in seen:
            return
        seen.add(key)
        found.append(InputFile(src=src, rel=rel, explicit=explicit))

    def add_tree(root: Path, base: Path) -> None:
        for f in _walk(root, recursive, out_resolved):
            add(f, f.relative_to(base), False)

    for item in inputs:
        text = os.fspath(item)
        path = Path(text).expanduser()
        if path.is_dir():
            add_tree(path, path)
        elif path.is_file():
            add(path, Path(path.name), True)
        elif _has_magic(text):
            matches = sorted(glob.glob(str(path), recursive=True))
            if not matches:
                raise UsageError(f"no file matches {text!r}; check the pattern (quote it to stop the shell)")
            root = _glob_root(str(path))
            for m in matches:
                mp = Path(m)
                if any(part.startswith(".") for part in mp.relative_to(root).parts):
                    continue
                if mp.is_dir():
                    if not _same(mp, out_resolved):
                        add_tree(mp, root)
                elif mp.is_file() and not (out_resolved and _inside(mp, out_resolved)):
                    add(mp, mp.relative_to(root), False)
        else:
            raise UsageError(f"input {text!r} does not exist; give image files, folders or glob patterns")
    return found


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder)
        return True
    except ValueError:
        return False


def plan_outputs(
    files: Sequence[InputFile],
    out_dir: str | os.PathLike[str],
    suffix_for: Callable[[Path], str],
    *,
    overwrite: bool = False,
) -> list[PlannedFile]:
    """Map each input to its output path and decide up front what cannot or need not be written.

    ``suffix_for(src)`` gives the output suffix (e.g. ``.png``). Refuses an output that is an input
    file, refuses the second of two inputs mapping to one output, skips existing outputs unless
    ``overwrite``.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file; give a folder (it is created if missing)")
    inputs = {f.src.resolve() for f in files}
    claimed: dict[Path, Path] = {}
    plans: list[PlannedFile] = []
    for f in files:
        dst = out / f.rel.with_name(f.rel.stem + suffix_for(f.src)) if f.rel.suffix else \
            out / f.rel.with_name(f.rel.name + suffix_for(f.src))
        key = dst.resolve()
        if key in inputs:
            plans.append(PlannedFile(f.src, dst, "failed", f"output {dst} is an input file; choose another --out"))
            continue
        if key in claimed:
            plans.append(PlannedFile(
                f.src, dst, "failed",
                f"{claimed[key]} is already written to {dst}; rename one of them or choose another --format",
            ))
            continue
        claimed[key] = f.src
        if dst.exists() and not overwrite:
            plans.append(PlannedFile(f.src, dst, "skipped", "output exists (pass --overwrite to replace it)"))
            continue
        plans.append(PlannedFile(f.src, dst))
    return plans
