"""Which files a batch converts and where each result goes.

Inputs are files, folders (walked recursively unless told not to) and glob patterns. Each folder's tree
is mirrored under the output folder (``photos/a/b.jpg`` given ``photos`` -> ``OUT/a/b.jpg``), a single
file goes to ``OUT/name``, a glob's matches keep their path below the pattern's fixed prefix
(``shots/**/*.jpg`` -> ``OUT/<below shots>``). Names are kept exactly (spaces, unicode, colons). One
input file and an ``--out`` whose name ends in an image suffix (``photo.jpg --out painting.png``)
writes exactly that file.

Patterns (globs given as inputs, ``--include``, ``--exclude``) follow gitignore rules (the pathspec
library) and match case-insensitively and in Unicode NFC (``Café*`` matches the decomposed names
macOS writes): ``*.jpg`` matches ``IMG_0001.JPG``; a pattern without a slash matches a name at any
depth (``sub`` excludes every folder named sub, with its contents); a pattern with a slash is
anchored at the input folder (``sub/*.png``, ``/top.png``, ``./top.png``); ``**`` spans folders; a
trailing ``/`` matches folders only; ``!pattern`` re-includes; a leading ``#`` is part of a name.

Two paths are one file when their :func:`path_key` agree: links resolved, and on a disk that ignores
case (exFAT SD cards, macOS and Windows disks) whatever their case. That is what decides that
``--out`` is an input folder, that two outputs collide, and which files ``--overwrite`` never touches.

While walking, only regular files are inputs. Found but not converted:

- *ignored* (listed by ``--dry-run`` only): hidden entries (name starts with '.'), the output folder
  itself (so ``--out`` inside the input tree is safe), NAS and system folders (:data:`SYSTEM_FOLDERS`:
  Synology's ``@eaDir`` thumbnails, recycle bins), suffixes that are not readable image types,
  files left out by ``--include`` / ``--exclude``;
- *skipped* (reported, exit status unchanged): named pipes, devices and sockets (reading them would
  block or never end), symlink loops, broken symlinks, symlinks to folders (not followed, so a link
  back up the tree cannot loop);
- *failed* (reported, exit 1): folders that cannot be read (permission denied).
"""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import os
import re
import stat
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from imgxlate._paths import inside_key, path_key
from imgxlate.errors import UsageError

# What `imgxlate video` walks folders for (an image walk tells the user where such files go instead).
VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v", ".mpg", ".mpeg", ".ts", ".wmv", ".flv", ".gif",
                  ".mts", ".m2ts", ".3gp", ".3g2", ".vob", ".ogv")  # camcorders (AVCHD), old phones, DVDs

_MAGIC = set("*?[")
# Folders that NAS systems and operating systems keep inside photo folders: thumbnails in several sizes
# per photo (Synology's @eaDir), recycle bins, snapshots, macOS zip leftovers. Never the user's photos;
# walked only when given as an input themselves.
SYSTEM_FOLDERS = frozenset({"@eadir", "#recycle", "#snapshot", "@recycle", "@recently-snapshot", "$recycle.bin",
                            "system volume information", "__macosx"})
# The kinds of Found.kind for what a walk leaves out, and how a summary counts them: (one, many, advice).
LEFT_OUT = {"video": ("video", "videos", " (`imgxlate video` converts videos)"),
            "hidden": ("hidden file or folder", "hidden files or folders", ""),
            "system": ("NAS or system folder", "NAS or system folders", " (give one as an input to convert it)"),
            "excluded": ("file left out by --include/--exclude", "files left out by --include/--exclude", ""),
            "suffix": ("file without an image suffix", "files without an image suffix", ""),
            "twin": ("MPO beside its JPEG twin", "MPOs beside their JPEG twins", " (the JPEGs are converted)"),
            "": ("other entry", "other entries", "")}
# Limits of the common local file systems (ext4, XFS, btrfs, APFS, NTFS): bytes per name and per path.
_NAME_MAX = 255
_PATH_MAX = 4096


@dataclass(frozen=True)
class InputFile:
    src: Path  # the file as found
    rel: Path  # its path below the output folder, before the output suffix is applied
    explicit: bool = False  # named on the command line (converted even with an unusual suffix)
    key: str = field(default="", compare=False)  # path_key(src), as the walk found it ("": not known)


@dataclass(frozen=True)
class Found:
    """Something the walk found and does not convert, and why.

    ``status``: "ignored" (not an image input; shown by --dry-run only), "skipped" (reported) or
    "failed" (reported; the command exits 1). ``before``: the number of inputs found before it (keeps
    reports in walk order). ``kind``: which rule left an ignored entry out (:data:`LEFT_OUT`; "" for
    the others), for callers that group them."""

    path: Path
    status: str
    reason: str
    before: int = 0
    kind: str = ""

    @property
    def video(self) -> bool:
        """A video left out of an image walk (the CLI points to `imgxlate video`)."""
        return self.kind == "video"


class Inputs(list[InputFile]):
    """The inputs to convert, in order (a list), plus :attr:`found`: what was left out and why."""

    def __init__(self, files: Iterable[InputFile] = (), found: Iterable[Found] = ()) -> None:
        super().__init__(files)
        self.found: list[Found] = list(found)


@dataclass(frozen=True)
class PlannedFile:
    src: Path
    dst: Path
    status: str = "pending"  # "pending" | "skipped" | "failed"
    reason: str = ""
    # Write over a file found at dst when the output is made (--overwrite); else one that appeared
    # since planning (another run) is kept and this file reported skipped.
    replace: bool = False


# ------------------------------------------------------------------------------------------- patterns


class Patterns:
    """gitignore-style patterns, matched case-insensitively against paths relative to an input root."""

    def __init__(self, patterns: Sequence[str]) -> None:
        import pathspec

        self.patterns = [p for p in patterns if p.strip()]
        self._spec = pathspec.GitIgnoreSpec.from_lines([_gitignore_line(p) for p in self.patterns])

    def __bool__(self) -> bool:
        return bool(self.patterns)

    def match(self, rel: Path, is_dir: bool = False) -> bool:
        text = _fold(rel.as_posix())
        return bool(self._spec.match_file(text + "/" if is_dir else text))


def _fold(text: str) -> str:
    """A name as patterns compare it: case-folded, in Unicode NFC (macOS and many NAS boxes store
    names decomposed, NFD, while a typed pattern is composed: 'Café' is two strings otherwise)."""
    return unicodedata.normalize("NFC", text).casefold()


def _gitignore_line(pattern: str) -> str:
    """A command-line pattern as a gitignore line: a leading '#' is a name, not a comment, and a
    leading './' anchors at the input folder as '/' does."""
    text = _fold(pattern.strip())
    if text.startswith("#"):
        text = "\\" + text
    while text.startswith("./"):
        text = "/" + text[2:].lstrip("/")
    return text


def _matches(rel: Path, patterns: Sequence[str]) -> bool:
    """Does ``rel`` match any of the gitignore-style ``patterns`` (case-insensitive)? For callers that
    filter paths themselves (URL listings in imgxlate.distributed)."""
    return Patterns(patterns).match(rel)


def _has_magic(text: str) -> bool:
    return any(c in _MAGIC for c in text)


def _glob_split(pattern: str) -> tuple[Path, list[str]]:
    """``a/b/*/c*.jpg`` -> (``a/b``, ["*", "c*.jpg"]): the fixed folder prefix and the pattern below it."""
    parts = Path(pattern).parts
    fixed: list[str] = []
    for i, part in enumerate(parts[:-1]):
        literal = "*" not in part and "?" not in part and Path(*fixed, part).is_dir()
        if _has_magic(part) and not literal:  # "2023 [Paris]" that exists is a folder name, not a class
            return (Path(*fixed) if fixed else Path(".")), list(parts[i:])
        fixed.append(part)
    return (Path(*fixed) if fixed else Path(".")), [parts[-1]]


def _glob_line(text: str, pattern: list[str]) -> str:
    """A glob input's part below its fixed folder as a pattern anchored there; a trailing '/' (which
    ``Path`` drops) keeps meaning folders only, as in the shell: ``'shots/*/'`` takes what is in the
    folders of shots, not the files beside them."""
    return "/" + "/".join(pattern) + ("/" if text.endswith(("/", os.sep)) else "")


def _could_hold(pattern: list[str], rel_dir: tuple[str, ...]) -> bool:
    """Can a folder at ``rel_dir`` (below the glob's root) hold matches of ``pattern``? (prunes the walk)"""
    for i, part in enumerate(rel_dir):
        if i >= len(pattern):
            return True  # the folder itself matched the whole pattern: its contents are included
        if pattern[i] == "**":
            return True
        if not fnmatch.fnmatchcase(_fold(part), _fold(pattern[i])):
            return False
    return True


# -------------------------------------------------------------------------------------------- walking


def _same(a: Path, b: str | None) -> bool:
    """Is ``a`` the path whose :func:`path_key` is ``b``?"""
    return b is not None and path_key(a) == b


def same_folder(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """Do ``a`` and ``b`` name one existing folder (through links, other spellings, or another case
    on a disk that ignores case)?"""
    return Path(a).is_dir() and path_key(a) == path_key(b)


def _kind(mode: int) -> str:
    from imgxlate.imaging.decode import file_kind

    return file_kind(mode)


@dataclass
class _Walk:
    wanted: set[str]
    include: Patterns
    exclude: Patterns
    out_key: str | None  # path_key of --out
    recursive: bool
    found: list[Found] = field(default_factory=list)
    count: int = 0  # inputs yielded so far

    def note(self, path: Path, status: str, reason: str, *, kind: str = "") -> None:
        self.found.append(Found(path, status, reason, self.count, kind))

    def files(self, root: Path, base: Path, descend: Callable[[tuple[str, ...]], bool] | None = None,
              keep: Callable[[Path], bool] | None = None) -> Iterator[tuple[Path, Path]]:
        """(path, rel to ``base``) of every regular image file below ``root``, in a stable order:
        a folder's files (sorted by name), then its sub-folders (sorted)."""
        stack = [root]
        while stack:
            folder = stack.pop()
            try:
                with os.scandir(folder) as it:
                    entries = sorted(it, key=lambda e: e.name)
                names = {e.name.casefold(): e.name for e in entries}  # for an MPO's JPEG twin, any case
            except OSError as exc:
                why = "permission denied" if isinstance(exc, PermissionError) else (exc.strerror or str(exc))
                self.note(folder, "failed",
                          f"cannot read folder {str(folder)!r}: {why}; its images were not converted "
                          "(check its permissions)")
                continue
            subdirs: list[Path] = []
            for entry in entries:
                path = Path(entry.path)
                rel = path.relative_to(base)
                if entry.name.startswith("."):
                    self.note(path, "ignored", "hidden (name starts with '.')", kind="hidden")
                    continue
                link = entry.is_symlink()
                try:
                    st = os.stat(path)  # follows symlinks
                except OSError as exc:
                    if not link:
                        self.note(path, "failed", f"cannot read {str(path)!r}: {exc.strerror or exc}")
                    elif (keep is not None and not keep(rel)) or not self._wanted_name(path, rel, keep, names):
                        pass
                    elif exc.errno == errno.ELOOP:
                        self.note(path, "skipped", "symlink loop (the link points back to itself)")
                    else:
                        self.note(path, "skipped", f"broken symlink (it points to the missing {os.readlink(path)!r})")
                    continue
                if stat.S_ISDIR(st.st_mode):
                    if _same(path, self.out_key):
                        self.note(path, "ignored", "the output folder")
                    elif entry.name.casefold() in SYSTEM_FOLDERS:
                        self.note(path, "ignored", "a NAS or system folder (thumbnails, recycle bin); give it as an input "
                                                   "to convert it", kind="system")
                    elif self.exclude and self.exclude.match(rel, is_dir=True):
                        self.note(path, "ignored", "folder excluded by --exclude", kind="excluded")
                    elif link:
                        self.note(path, "skipped",
                                  "symlink to a folder (not followed); give the folder itself as an input to convert it")
                    elif not self.recursive:
                        self.note(path, "ignored", "sub-folder (--no-recursive)")
                    elif descend is None or descend(rel.parts):
                        subdirs.append(path)
                    continue
                if (keep is not None and not keep(rel)) or not self._wanted_name(path, rel, keep, names):
                    continue
                kind = _kind(st.st_mode)
                if kind:
                    self.note(path, "skipped", f"{kind}, not a regular file; only regular files are read")
                    continue
                yield path, rel
            stack.extend(reversed(subdirs))

    def _wanted_name(self, path: Path, rel: Path, keep: Callable[[Path], bool] | None = None,
                     names: dict[str, str] | None = None) -> bool:
        """Suffix and --include / --exclude; notes why not (ignored). ``keep``: the pattern's rule, and
        ``names``: the folder's entries by case-folded name (for an MPO's twin)."""
        if path.suffix.lower() == ".mpo" and ".jpg" in self.wanted:
            # 3D and Fujifilm cameras write an MPO beside a JPEG of the same picture and stem: walking
            # both gave two results (or a collision). A lone MPO (a 3DS's, or its JPEG deleted or left
            # out by the patterns) is walked.
            twin = next((names[k] for k in (path.stem.casefold() + s for s in (".jpg", ".jpeg"))
                         if names is not None and k in names), None)
            twin_rel = rel.with_name(twin) if twin is not None else None
            if twin_rel is not None and (keep is None or keep(twin_rel)) and self._takes(twin_rel):
                self.note(path, "ignored", f"an MPO beside its JPEG twin {twin!r} (the same picture), which is "
                                           "converted instead", kind="twin")
                return False
            return self.matches(path, rel)
        if path.suffix.lower() not in self.wanted:
            if path.suffix.lower() in VIDEO_SUFFIXES:
                self.note(path, "ignored", "a video: convert it with `imgxlate video`", kind="video")
            else:
                self.note(path, "ignored", "not an image suffix", kind="suffix")
            return False
        return self.matches(path, rel)

    def _takes(self, rel: Path) -> bool:
        """Would --include / --exclude take ``rel`` (without a note)?"""
        return (not self.include or self.include.match(rel)) and not (self.exclude and self.exclude.match(rel))

    def matches(self, path: Path, rel: Path) -> bool:
        if self.include and not self.include.match(rel):
            self.note(path, "ignored", "not matched by --include", kind="excluded")
            return False
        if self.exclude and self.exclude.match(rel):
            self.note(path, "ignored", "excluded by --exclude", kind="excluded")
            return False
        return True


def collect_inputs(
    inputs: Sequence[str | os.PathLike[str]],
    *,
    out_dir: str | os.PathLike[str] | None = None,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    recursive: bool = True,
    suffixes: Iterable[str] | None = None,
) -> Inputs:
    """Expand files, folders and globs into a de-duplicated, ordered list of regular image files.

    The result is a list of :class:`InputFile`; its ``found`` attribute lists what was left out and why
    (:class:`Found`). A missing input or a pattern that matches nothing is a UsageError."""
    if suffixes is None:
        from imgxlate.imaging import READ_SUFFIXES

        suffixes = READ_SUFFIXES
    wanted = {s.lower() if s.startswith(".") else "." + s.lower() for s in suffixes}
    out_key = path_key(out_dir) if out_dir is not None else None
    if not inputs:
        raise UsageError("no inputs given; pass image files, folders or glob patterns")
    walk = _Walk(wanted, Patterns(include), Patterns(exclude), out_key, recursive)

    found: list[InputFile] = []
    seen: dict[str, int] = {}  # path_key -> its index in found

    def add(src: Path, rel: Path, explicit: bool) -> None:
        key = path_key(src)
        at = seen.get(key)
        if at is not None:
            first = found[at]
            if first.src != src and (os.path.islink(first.src) or os.path.islink(src)):
                # a link to a file already found, or the file after a link to it: one file, two names.
                # The file's own name wins, whichever the walk met first (link_to_x.bmp sorts before x.bmp).
                if os.path.islink(first.src) and not os.path.islink(src) and not first.explicit:  # a link named keeps its name
                    found[at] = InputFile(src=src, rel=rel, explicit=first.explicit or explicit, key=key)
                    first, src = found[at], first.src
                walk.note(src, "skipped", f"the same file as {str(first.src)!r}, which is taken once, under that name")
            elif len(rel.parts) > len(first.rel.parts):
                # One file through two inputs (named and in a folder given too, or in a folder and in its
                # sub-folder, spelled alike or not: ./P, /abs/P, ~/P): its place in the outer folder's
                # layout, whichever came first on the line (the layout depended on the argument order).
                found[at] = InputFile(src=src, rel=rel, explicit=first.explicit or explicit, key=key)
            elif explicit and not first.explicit:
                found[at] = InputFile(src=first.src, rel=first.rel, explicit=True, key=key)
            return
        seen[key] = len(found)
        found.append(InputFile(src=src, rel=rel, explicit=explicit, key=key))
        walk.count = len(found)

    for item in inputs:
        text = os.fspath(item)
        if not text.strip():  # Path("") is ".": an unset shell variable would convert the current folder
            raise UsageError("an input is empty (an unset shell variable?); an empty path would mean the "
                             "current folder, so give the path itself")
        path = Path(text).expanduser()
        st: os.stat_result | None = None
        err: OSError | None = None
        try:
            st = os.stat(path)
        except OSError as exc:
            err = exc
        if st is not None and stat.S_ISDIR(st.st_mode):
            for f, rel in walk.files(path, path):
                add(f, rel, False)
        elif st is not None:
            kind = _kind(st.st_mode)
            if not walk.matches(path, Path(path.name)):
                pass
            elif kind:
                walk.note(path, "failed", f"{kind}, not a regular file; only regular files are read")
            else:
                add(path, Path(path.name), True)
        elif _has_magic(text):
            root, pattern = _glob_split(str(path))
            spec = Patterns([_glob_line(text, pattern)])
            deep = "**" in pattern
            before = len(found)

            def keep(rel: Path, spec: Patterns = spec, pattern: list[str] = pattern, deep: bool = deep) -> bool:
                if not spec.match(rel):
                    return False
                return recursive or deep or len(rel.parts) <= len(pattern) + 1

            in_out = 0  # matches inside --out: earlier results, never inputs
            if root.is_dir():
                for f, rel in walk.files(root, root, descend=lambda parts, p=pattern: _could_hold(p, parts),
                                         keep=keep):
                    if out_key and inside_key(path_key(f), out_key):
                        in_out += 1
                    else:
                        add(f, rel, False)
            if len(found) == before and not any(n.before >= before and n.status != "ignored" for n in walk.found):
                if in_out:
                    raise UsageError(
                        f"every file {text!r} matches ({in_out}) is inside the output folder {out_dir}, whose "
                        "files are results, not inputs; choose another --out, or a pattern outside it"
                    )
                system = [n.path for n in walk.found
                          if n.before >= before and n.kind == "system"]
                if system:
                    raise UsageError(
                        f"no file matches {text!r} outside NAS and system folders ({', '.join(map(str, system[:3]))}"
                        f"{', ...' if len(system) > 3 else ''}), which are left out; give such a folder as the input, "
                        "or in the pattern's fixed part, to convert what is in it")
                raise UsageError(f"no file matches {text!r}; check the pattern (quote it to stop the shell)")
        elif path.is_symlink():
            loop = err is not None and err.errno == errno.ELOOP
            walk.note(path, "failed", "symlink loop (the link points back to itself)" if loop
                      else f"broken symlink (it points to the missing {os.readlink(path)!r})")
        elif isinstance(err, FileNotFoundError):
            raise UsageError(f"input {text!r} does not exist; give image files, folders or glob patterns")
        else:
            why = "permission denied" if isinstance(err, PermissionError) else (err.strerror if err else "")
            walk.note(path, "failed", f"cannot read {text!r}: {why}")
    return Inputs(found, walk.found)


# Why an existing output is not converted again. It is only a name: a file of the same name from another
# input folder (camera names repeat: 100CANON/IMG_0001.JPG, 101CANON/IMG_0001.JPG) finds it too.
SKIP_EXISTING = ("output exists (pass --overwrite to replace it; if it came from another file of the same name, "
                 "convert that folder into its own --out)")


# An existing output that --overwrite would not replace either: the output folder lies inside an input
# folder, where an earlier result and a picture of the user's look alike.
SKIP_KEPT = ("output exists (it is inside an input folder, so --overwrite does not replace it: delete it to "
             "convert again)")


def _empty_file(path: Path) -> bool:
    try:
        st = path.stat()
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and st.st_size == 0


def left_out_summary(found: Sequence[Found]) -> str:
    """What a walk that found no image did find, in a few words ("" when nothing): ``2 videos (convert
    them with `imgxlate video`), 1 hidden file, 3 files without an image suffix``."""
    groups: dict[str, int] = {}
    for f in found:
        if f.status == "ignored":
            groups[f.kind] = groups.get(f.kind, 0) + 1
    return ", ".join(f"{n} {LEFT_OUT[k][n != 1]}{LEFT_OUT[k][2]}" for k, n in groups.items())


@dataclass(frozen=True)
class WalkedFolder:
    """A folder an input reads (resolved), and for a glob the pattern below it its inputs match. For
    the folder of an input given as a file (``top_only``), its own image files: the user's pictures
    beside the one converted."""

    root: Path
    pattern: Patterns | None = None
    top_only: bool = False
    root_key: str = field(default="", compare=False)  # path_key(root), once

    def __post_init__(self) -> None:
        if not self.root_key:
            object.__setattr__(self, "root_key", path_key(self.root))

    def would_read(self, path: Path) -> bool:
        """Would this input take ``path`` as an input, were it not in the output folder?"""
        return self.reads_key(path_key(path))

    def reads_key(self, key: str) -> bool:
        """:meth:`would_read` for a path whose :func:`path_key` is ``key``."""
        root = self.root_key
        if not inside_key(key, root) or key == root:
            return False
        rel = Path(key[len(root.rstrip(os.sep)) + 1:])
        if self.top_only:
            from imgxlate.imaging import READ_SUFFIXES

            return len(rel.parts) == 1 and rel.suffix.lower() in READ_SUFFIXES
        return self.pattern is None or self.pattern.match(rel)


def walked_folders(inputs: Sequence[str | os.PathLike[str]]) -> list[WalkedFolder]:
    """The folders an input list reads, each once: folders, the fixed part of glob patterns with the
    pattern, and the folders of files given by name (their image files only, not below; a shell's
    ``*.jpg`` names thousands of files in one folder: one entry)."""
    walked: dict[tuple[Path, tuple[str, ...] | None, bool], WalkedFolder] = {}
    for item in inputs:
        text = os.fspath(item)
        path = Path(text).expanduser()
        with contextlib.suppress(OSError, RuntimeError):
            if path.is_dir():
                folder = WalkedFolder(path.resolve())
            elif path.is_file():  # the folder it was named in (a link's own folder, not its target's)
                folder = WalkedFolder(Path(os.path.abspath(path)).parent.resolve(), top_only=True)
            elif _has_magic(text) and not path.exists():
                root, pattern = _glob_split(str(path))
                folder = WalkedFolder(root.resolve(), Patterns([_glob_line(text, pattern)]))
            else:
                continue
            spec = tuple(folder.pattern.patterns) if folder.pattern is not None else None
            walked.setdefault((folder.root, spec, folder.top_only), folder)
    return list(walked.values())


# ------------------------------------------------------------------------------------------- planning


def domain_tag(target: str) -> str:
    """The target domain as it goes into result names that carry it (``clip.vangogh.mp4`` from video,
    ``photo.vangogh.jpg`` from the web page, where results land beside the originals in a downloads
    folder): letters, digits, '.', '-' and '_' kept, anything else one '_'."""
    return re.sub(r"[^\w.-]+", "_", target).strip("._") or "translated"


def collision_reason(
    first: str | os.PathLike[str], second: str | os.PathLike[str], dst: str | os.PathLike[str], fmt: str = "same"
) -> str:
    """Why the second of two inputs mapping to one output fails, with advice that works for the case:
    names from two input folders (paths or URLs); a.jpg + a.png into one ``fmt``; under
    ``--format same`` two files both written in one format (a.bmp + a.png, or a JPEG named .png
    beside a.jpg), where only a new name helps."""
    a, b = PurePosixPath(os.fspath(first)), PurePosixPath(os.fspath(second))
    if a.parent != b.parent:  # from two input folders
        advice = " or convert each input folder into its own --out"
    elif fmt != "same":
        advice = " or keep each file's own format with --format same"
    else:
        advice = " (both are written in that format: it is the one imgxlate writes for each)"
    return f"{first} and {second} would both be written to {dst}; rename one of them{advice}"


def image_file_name(out: str | os.PathLike[str]) -> bool:
    """Does ``out`` name an image file (a suffix imgxlate writes) rather than a folder?"""
    from imgxlate.imaging.formats import _SUFFIX_TO_PIL

    p = Path(out)
    return p.suffix.lower() in _SUFFIX_TO_PIL and not p.is_dir()


def _too_long(dst: Path) -> str:
    """Why ``dst`` cannot be created on common file systems ("" when it can)."""
    for part in dst.parts:
        n = len(os.fsencode(part))
        if n > _NAME_MAX:
            return (
                f"the output name {part[:40]!r}... is {n} bytes, longer than the {_NAME_MAX} bytes file systems "
                "allow (name too long); rename the input or choose a --format with a shorter suffix"
            )
    n = len(os.fsencode(os.path.abspath(dst)))
    if n >= _PATH_MAX:
        return (
            f"the output path is {n} bytes, longer than the {_PATH_MAX} bytes the system allows (path too long); "
            "use a shorter --out or a flatter input tree"
        )
    return ""


def _refused_out(out: Path) -> None:
    """Refuse an ``--out`` whose folders still to be made hold characters its disk refuses (a UsageError
    before any work: every file would fail)."""
    from imgxlate._atomic import WINDOWS_FORBIDDEN, forbidden_names_advice, refused_characters

    made = []  # the parts of out that do not exist yet
    p = Path(os.path.abspath(out))
    while not os.path.lexists(p) and p.parent != p:
        made.append(p.name)
        p = p.parent
    chars = WINDOWS_FORBIDDEN & set("".join(made))
    refused = chars and refused_characters(out) & chars
    if refused:
        raise UsageError(f"--out {out}: {forbidden_names_advice(refused, 'choose another --out')}")


def _refused_name(dst: Path, out: Path, single: bool) -> str:
    """Why the disk of ``out`` cannot hold the names below it that ``dst`` needs ("" when it can):
    colons and the like, on FAT, exFAT and NTFS disks. Probed only for names that hold such a
    character, so that a folder of photos named "17:41:55.jpg" fails here, not one by one after each
    was translated."""
    from imgxlate._atomic import WINDOWS_FORBIDDEN, forbidden_names_advice, refused_characters

    chars = WINDOWS_FORBIDDEN & set(dst.name if single else "".join(dst.relative_to(out).parts))
    refused = chars and refused_characters(dst.parent) & chars
    return f"cannot write {str(dst)!r}: {forbidden_names_advice(refused)}" if refused else ""


def plan_outputs(
    files: Sequence[InputFile],
    out_dir: str | os.PathLike[str],
    suffix_for: Callable[[Path], str],
    *,
    overwrite: bool = False,
    refuse: Callable[[Path], str] | None = None,
    fmt: str = "same",
    protected: Sequence[WalkedFolder] = (),
) -> list[PlannedFile]:
    """Map each input to its output path and decide up front what cannot or need not be written.

    ``suffix_for(src)`` gives the output suffix (e.g. ``.png``). One explicit input file and an
    ``out_dir`` named like an image file (``x.png``; not an existing folder) writes that file;
    ``out_dir`` named like an image with other inputs is a UsageError. Refuses an output that is an
    input file, refuses the second of two inputs mapping to one output, fails an output name longer
    than the file system allows, skips existing outputs unless ``overwrite``. ``refuse(src)``: why an
    input cannot be written in the output format ("" when it can); such an input fails here, before it
    claims its output name (which another input may then use). ``fmt``: the --format asked for (for
    the advice on two inputs mapping to one output). ``protected``: the walked input folders
    (:func:`walked_folders`); ``--overwrite`` never replaces a file they would read (with ``--out`` inside an input folder, a user's
    picture in the output folder looks just like an earlier result). An empty file at the output path
    is replaced without ``--overwrite``: imgxlate never leaves one, so it is no one's result.
    """
    out = Path(out_dir)
    single = image_file_name(out)
    if single and not (len(files) == 1 and files[0].explicit):
        what = f"{len(files)} images" if len(files) != 1 else "a folder or pattern"
        raise UsageError(
            f"--out {out} names one image file, but the inputs are {what}; give a folder as --out "
            "(it is created if missing)"
        )
    if not single and out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file; give a folder (it is created if missing)")
    if not single and not out.exists():
        from imgxlate.imaging.formats import _SUFFIX_TO_PIL, READ_SUFFIXES

        if out.suffix.lower() in READ_SUFFIXES:  # named as an image imgxlate reads but does not write
            raise UsageError(
                f"--out {out}: imgxlate writes {', '.join(sorted(_SUFFIX_TO_PIL))} images, not {out.suffix.lower()}; "
                "give a name ending in one of those, or a folder"
            )
    from imgxlate.imaging.formats import NAMED_SUFFIXES

    _refused_out(out.parent if single else out)
    inputs = {f.key or path_key(f.src) for f in files}
    claimed: dict[str, tuple[Path, Path]] = {}  # path_key of an output -> (its input, its output)
    plans: list[PlannedFile] = []
    for f in files:
        if single:
            dst = out
        elif f.rel.suffix.lower() in NAMED_SUFFIXES:  # photo.heic -> photo.png; scan.2024.01 -> scan.2024.01.jpg
            dst = out / f.rel.with_name(f.rel.stem + suffix_for(f.src))
        else:
            dst = out / f.rel.with_name(f.rel.name + suffix_for(f.src))
        long = _too_long(dst) or _refused_name(dst, out, single) or (refuse(f.src) if refuse is not None else "")
        if long:
            plans.append(PlannedFile(f.src, dst, "failed", long))
            continue
        try:
            key = path_key(dst)
            exists = dst.exists()
        except (OSError, RuntimeError) as exc:
            from imgxlate._atomic import explain_write_error

            why = explain_write_error(exc) if isinstance(exc, OSError) else str(exc)
            plans.append(PlannedFile(f.src, dst, "failed", f"cannot write {str(dst)!r}: {why}"))
            continue
        if key in inputs:
            plans.append(PlannedFile(f.src, dst, "failed", f"output {dst} is an input file; choose another --out"))
            continue
        if key in claimed:
            first, first_dst = claimed[key]
            if first_dst != dst:  # one file to a disk that ignores case, two names to the user (any format)
                why = (f"{first} and {f.src} would both be written to {dst}: {first_dst.name} and {dst.name} are "
                       f"one name on the disk of {out}, which ignores case; rename one of them")
            else:
                why = collision_reason(first, f.src, dst, fmt)
            plans.append(PlannedFile(f.src, dst, "failed", why))
            continue
        claimed[key] = (f.src, dst)
        if exists and dst.is_dir():
            plans.append(PlannedFile(f.src, dst, "failed", f"a folder stands where the output {dst} goes; move "
                                                           "it away or choose another --out"))
            continue
        empty = exists and _empty_file(dst)  # never a result (results are verified before their rename)
        # The one file named as --out is the user's choice of output, not a picture beside the input.
        walked = next((w.root for w in protected if w.reads_key(key)), None) \
            if exists and not empty and not single else None
        if exists and not empty and not overwrite:
            plans.append(PlannedFile(f.src, dst, "skipped", SKIP_EXISTING if walked is None else SKIP_KEPT))
            continue
        if walked is not None:
            plans.append(PlannedFile(f.src, dst, "failed", (
                f"{dst} is inside the input folder {walked}, where an earlier result cannot be told from one "
                "of your own pictures, so --overwrite does not replace it; delete the old results first, or "
                f"convert into an --out outside {walked}")))
            continue
        plans.append(PlannedFile(f.src, dst, replace=overwrite or empty))
    return plans
