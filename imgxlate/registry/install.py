"""Installing models (a file, a folder, a zip, a URL or a Hugging Face Hub repository) into the user
model folder, and removing them: downloads bounded in time and size, checked, swapped into place
atomically."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from imgxlate._atomic import TEMP_PREFIX, disk_full_error, is_disk_full
from imgxlate.errors import (
    ImgxlateError,
    InvalidModelError,
    ModelNotFoundError,
    UsageError,
    brief,
)
from imgxlate.extras import pip_install
from imgxlate.metadata import DIRECTIONS, external_data_files
from imgxlate.registry import pairs
from imgxlate.registry.pairs import (
    PYTORCH_SUFFIXES,
    ModelPair,
    _dym,
    _head,
    _pairs_in,
    load_pair,
    pytorch_file_error,
    user_models_dir,
)
from imgxlate.registry.probe import validate_model_file

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,99}$")
_CHUNK = 1 << 20

ProgressFn = Callable[[int, int | None], None]  # (bytes done, total bytes or None)


DOWNLOAD_DEADLINE_ENV = "IMGXLATE_DOWNLOAD_TIMEOUT"
DEFAULT_DOWNLOAD_DEADLINE = 1800.0  # seconds for a whole download (every file of it), not per read
_READ_TIMEOUT = 30.0
_KEEP_SUFFIXES = (".onnx", ".md", ".json", ".txt")
_ZIP_MAX_BYTES = 8 << 30  # refuse archives that unpack to more than this (zip bombs)
SOURCE_FILE = "source.json"  # where an installed model came from (URL, Hub revision, sha256)


def _is_url(source: str) -> bool:
    return bool(re.match(r"^(https?|file)://", source, re.IGNORECASE))


def _is_hub(source: str) -> bool:
    return source.lower().startswith("hf://")


def parse_hub(source: str) -> tuple[str, str | None]:
    """``hf://ORG/REPO[@REV]`` -> ``("ORG/REPO", REV or None)``."""
    rest = source[len("hf://"):]
    repo, _, rev = rest.partition("@")
    repo = repo.strip("/")
    if not re.fullmatch(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*", repo) or (_ and not rev):
        raise UsageError(f"{source!r} is not a Hugging Face model address; use hf://ORG/REPO or hf://ORG/REPO@REV")
    return repo, rev or None


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file, as 64 lowercase hex digits (read in chunks)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def normalize_sha256(expected: str | None) -> str | None:
    """A ``--sha256`` value as 64 lowercase hex digits; a malformed one is a usage error (raised before
    anything is downloaded)."""
    if expected is None:
        return None
    want = expected.strip().lower()
    want = want.removeprefix("sha256:")
    if not re.fullmatch(r"[0-9a-f]{64}", want):
        raise UsageError(f"--sha256 must be 64 hexadecimal digits; got {expected!r}")
    return want


def _check_sha(actual: str, expected: str | None, what: str) -> None:
    want = normalize_sha256(expected)
    if want is not None and actual != want:
        raise InvalidModelError(
            f"sha256 mismatch for {what}: expected {want}, got {actual}; the file is corrupt or not the one "
            "you meant; nothing was installed"
        )


def download_deadline() -> float:
    text = os.environ.get(DOWNLOAD_DEADLINE_ENV, "").strip()
    if not text:
        return DEFAULT_DOWNLOAD_DEADLINE
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"${DOWNLOAD_DEADLINE_ENV} must be a number of seconds; got {text!r}") from None
    if value <= 0:
        raise UsageError(f"${DOWNLOAD_DEADLINE_ENV} must be more than 0 seconds; got {text!r}")
    return value


class _Deadline:
    def __init__(self, seconds: float | None) -> None:
        import time

        self._time = time.monotonic
        self.seconds = seconds
        self.end = None if seconds is None else self._time() + seconds

    def left(self) -> float | None:
        return None if self.end is None else self.end - self._time()

    def read_timeout(self) -> float:
        left = self.left()
        return _READ_TIMEOUT if left is None else max(0.05, min(_READ_TIMEOUT, left))


def _set_read_timeout(resp: Any, seconds: float) -> None:
    """Shorten the socket timeout of an open response so that no read outlives the deadline."""
    sock = getattr(getattr(getattr(resp, "fp", None), "raw", None), "_sock", None)
    if sock is not None:
        try:
            sock.settimeout(seconds)
        except OSError:
            pass


def download(url: str, dest: Path, progress: ProgressFn | None = None, timeout: float = _READ_TIMEOUT,
             deadline: float | None | _Deadline = None, *, model: bool = True) -> str:
    """Stream ``url`` into ``dest``; return the sha256 of what was written.

    ``timeout`` bounds each read; ``deadline`` (seconds, or a shared :class:`_Deadline`) bounds the whole
    download, so a server that trickles bytes cannot keep it going forever. ``model``: a model file or
    archive is expected, so a web page (``text/html``) is refused; a model card may be one."""
    clock = deadline if isinstance(deadline, _Deadline) else _Deadline(deadline)
    h = hashlib.sha256()
    done = 0

    def too_slow() -> ImgxlateError:
        return ImgxlateError(
            f"download of {url} did not finish within {clock.seconds:g} s ({done} bytes received); try again "
            f"on a faster connection or raise the limit (--timeout or ${DOWNLOAD_DEADLINE_ENV})"
        )

    try:
        with urllib.request.urlopen(url, timeout=min(timeout, clock.read_timeout())) as resp, \
                open(dest, "wb") as out:
            if model and resp.headers.get_content_type() == "text/html":
                raise InvalidModelError(
                    f"{url} answers with a web page (text/html), not a model file; check the address (a pair "
                    "folder's URL ends with '/')"
                )
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            if progress:
                progress(0, total)
            reader = getattr(resp, "read1", resp.read)
            while True:
                left = clock.left()
                if left is not None and left <= 0:
                    raise too_slow()
                _set_read_timeout(resp, min(timeout, clock.read_timeout()))
                chunk = reader(_CHUNK)
                if not chunk:
                    break
                out.write(chunk)
                h.update(chunk)
                done += len(chunk)
                if progress:
                    progress(done, total)
            if total is not None and done != total:
                raise ImgxlateError(f"download of {url} stopped after {done} of {total} bytes; try again")
    except urllib.error.HTTPError as exc:
        raise ImgxlateError(f"cannot download {url}: HTTP {exc.code} {exc.reason}; check the address") from exc
    except (TimeoutError, OSError, urllib.error.URLError) as exc:
        left = clock.left()
        if left is not None and left <= 0.1:
            raise too_slow() from exc
        reason = getattr(exc, "reason", exc)
        raise ImgxlateError(
            f"cannot download {url}: {reason}; check the address and your connection"
        ) from exc
    return h.hexdigest()


def _check_name(name: str) -> str:
    if not _NAME_RE.match(name) or name in (".", ".."):
        raise UsageError(
            f"model name {name!r} is not usable as a folder name; use letters, digits, '.', '_', '+', '-' "
            "(pass --name)"
        )
    return name


def _unzip(archive: Path, into: Path) -> Path:
    """Unpack the model files of a zip archive into ``into``; return the folder holding the model
    (the archive's root or its one sub-folder with a2b.onnx / b2a.onnx), or the one .onnx file."""
    import zipfile

    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        raise InvalidModelError(f"{archive.name} is not a readable zip archive ({exc})") from exc
    with zf:
        members = [m for m in zf.infolist() if not m.is_dir()]
        if sum(m.file_size for m in members) > _ZIP_MAX_BYTES:
            raise InvalidModelError(f"{archive.name} unpacks to more than {_ZIP_MAX_BYTES >> 30} GB; not a model")
        into.mkdir(parents=True, exist_ok=True)
        for m in members:
            parts = Path(m.filename.replace("\\", "/")).parts
            if m.filename.startswith(("/", "\\")) or ".." in parts or any(p.startswith(".") for p in parts) \
                    or (parts and ":" in parts[0]):
                continue  # absolute, escaping or hidden paths are never unpacked
            if Path(m.filename).suffix.lower() not in _KEEP_SUFFIXES or len(parts) > 3:
                continue
            target = into.joinpath(*parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(m) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst, _CHUNK)
    return _model_in(into, archive.name)


def _refuse_pytorch_file(text: str) -> None:
    """PyTorch weights are not a model imgxlate runs: say which command makes one of them."""
    local = Path(text).expanduser()
    if Path(text.split("?", 1)[0]).suffix.lower() in PYTORCH_SUFFIXES and (_is_url(text) or local.is_file()):
        raise pytorch_file_error(text)


def _model_in(folder: Path, what: str) -> Path:
    """The pair folder (``folder`` itself or its one sub-folder with a2b/b2a.onnx) or the one .onnx file."""
    def is_pair(d: Path) -> bool:
        return any((d / f"{x}.onnx").is_file() for x in DIRECTIONS)

    if is_pair(folder):
        return folder
    subs = [d for d in sorted(folder.iterdir()) if d.is_dir() and is_pair(d)]
    if len(subs) == 1:
        return subs[0]
    if len(subs) > 1:
        raise UsageError(f"{what} holds several models ({', '.join(d.name for d in subs)}); install one at a time")
    onnx_files = sorted(folder.rglob("*.onnx"))
    if len(onnx_files) == 1:
        return onnx_files[0]
    listed = f" (it has {', '.join(p.name for p in onnx_files)})" if onnx_files else ""
    raise InvalidModelError(f"{what} has no a2b.onnx / b2a.onnx and no single .onnx model{listed}")


def _fetch_folder_url(url: str, into: Path, progress: ProgressFn | None, clock: _Deadline) -> Path:
    """A folder URL (ending in /): fetch its a2b.onnx, b2a.onnx and README.md model card, where present."""
    into.mkdir(parents=True, exist_ok=True)
    got = []
    for fname in ("a2b.onnx", "b2a.onnx", "README.md"):
        try:
            download(url + fname, into / fname, progress if fname.endswith(".onnx") else None, deadline=clock,
                     model=fname.endswith(".onnx"))
            got.append(fname)
        except ImgxlateError as exc:
            (into / fname).unlink(missing_ok=True)
            if "HTTP 404" not in str(exc):
                raise
    if not any(f.endswith(".onnx") for f in got):
        raise ModelNotFoundError(f"{url} has neither a2b.onnx nor b2a.onnx (HTTP 404 for both); check the address")
    return into


def _fetch_hub(source: str, progress: ProgressFn | None) -> tuple[Path, dict[str, Any]]:
    """Download (or find in the Hugging Face cache) the model files of ``hf://ORG/REPO[@REV]``."""
    repo, rev = parse_hub(source)
    try:
        import huggingface_hub
        from huggingface_hub import errors as hf_errors
    except ImportError:
        raise UsageError(
            f"{source} needs the huggingface_hub package: {pip_install('hub')}"
        ) from None
    patterns = ["*.onnx", "README.md", "*.json"]
    if progress is None:  # quiet: no tqdm bars from the Hub client either
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
    try:
        # HF_ENDPOINT (a mirror) and the Hub's own cache (HF_HOME / HF_HUB_CACHE) are honoured; with no
        # connection, a revision already in that cache is used as is.
        folder = Path(huggingface_hub.snapshot_download(
            repo, revision=rev, allow_patterns=patterns, endpoint=os.environ.get("HF_ENDPOINT") or None,
        ))
    except hf_errors.RevisionNotFoundError as exc:
        raise ModelNotFoundError(f"{source}: the Hub has no revision {rev!r} of {repo}") from exc
    except hf_errors.RepositoryNotFoundError as exc:
        raise ModelNotFoundError(
            f"{source}: no model repository {repo} on the Hub (or it is private: log in with `hf auth login`)"
        ) from exc
    except hf_errors.LocalEntryNotFoundError as exc:
        raise ImgxlateError(
            f"{source}: the Hub cannot be reached and {repo}@{rev or 'main'} is not in the Hugging Face cache; "
            "connect once to download it (later installs work offline)"
        ) from exc
    except (hf_errors.HfHubHTTPError, OSError, ValueError) as exc:
        raise ImgxlateError(f"{source}: {brief(exc)}") from exc
    return folder, {"source": f"hf://{repo}", "revision": folder.name, "requested": rev or "main"}


def _describe(pair: ModelPair) -> str:
    return ", ".join(f"{f.direction}: {f.label}" for f in pair.files)


def _same_domains(a: ModelPair, b: ModelPair) -> bool:
    return bool(a.files and b.files) and not a.files[0].assumed and not b.files[0].assumed and \
        a.domains == b.domains


def _warn_default(message: str) -> None:
    import warnings

    warnings.warn(message, stacklevel=3)


def install_model(
    source: str | os.PathLike[str],
    *,
    name: str | None = None,
    sha256: str | None = None,
    force: bool = False,
    progress: ProgressFn | None = None,
    deadline: float | None = None,
    warn: Callable[[str], None] | None = None,
    installed: Callable[[Path], None] | None = None,
) -> ModelPair:
    """Validate a model and install it under the user folder; return the installed pair.

    ``source``: a pair folder, a .onnx file, a .zip of either, an http(s) URL of any of those, a folder URL
    (ending in ``/``: its a2b.onnx, b2a.onnx and README.md are fetched), or ``hf://ORG/REPO[@REV]``.

    A name already taken is refused unless the new files add a missing direction to the same pair
    (same domains): then they are added into it. ``force`` replaces a user model or hides a bundled one,
    and ``warn`` is told what is replaced or hidden. The model is assembled in a temp folder beside its
    destination and renamed into place: an interrupted install leaves nothing under the model's name.
    ``installed(path)`` is called the moment it is in place (what follows only tidies up), so that a
    caller stopped after it can say the model was installed.
    """
    warn = warn or _warn_default
    text = os.fspath(source)
    _refuse_pytorch_file(text)
    want_sha = normalize_sha256(sha256)  # before any download
    if name is not None:
        _check_name(name)
    if want_sha is not None and (_is_hub(text) or (_is_url(text) and text.endswith("/"))):
        raise UsageError("--sha256 checks one file (a .onnx or a .zip), not a folder or a Hub repository")
    clock = _Deadline(deadline if deadline is not None else download_deadline())
    root = user_models_dir()
    try:
        root.mkdir(parents=True, exist_ok=True)
        remove_stale_staging(root)
        staging = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX, dir=root))
    except OSError as exc:
        if is_disk_full(exc):
            raise disk_full_error(root, exc.strerror or "") from exc
        raise ImgxlateError(
            f"cannot write into the models folder {root} ({exc.strerror or exc}); set {pairs.HOME_ENV} to a folder "
            "you can write to (models go into its models/ subfolder)"
        ) from exc
    provenance: dict[str, Any] = {}
    try:
        fname = ""
        if _is_hub(text):
            src, provenance = _fetch_hub(text, progress)
            src = _model_in(src, text)
        elif _is_url(text) and text.endswith("/"):
            src = _fetch_folder_url(text, staging / ".download", progress, clock)
            provenance = {"source": text}
        elif _is_url(text):
            fname = Path(urllib.request.url2pathname(text.split("?", 1)[0].rsplit("/", 1)[-1])).name
            if not fname.lower().endswith((".onnx", ".zip")):
                fname = "model.onnx"
            src = staging / ".download" / fname
            src.parent.mkdir()
            digest = download(text, src, progress, deadline=clock)
            _check_sha(digest, want_sha, text)
            provenance = {"source": text, "sha256": digest}
        else:
            src = Path(text).expanduser()
            if not src.exists():
                raise ModelNotFoundError(
                    f"{src} does not exist; give a .onnx file, a pair folder, a .zip, a URL or hf://ORG/REPO"
                )
            if want_sha is not None:
                if src.is_dir():
                    raise UsageError("--sha256 checks a single file or a download, not a folder")
                _check_sha(file_sha256(src), want_sha, str(src))
        if src.is_file() and _head(src, 4) == b"PK\x03\x04":
            src = _unzip(src, staging / ".unzipped")

        try:
            pair = load_pair(src, "path")
            for f in pair.files:
                validate_model_file(f.path, f.metadata)
        except InvalidModelError as exc:
            if src.is_relative_to(staging):  # a download: name what the user gave, not our temp copy
                raise InvalidModelError(str(exc).replace(os.fspath(src), text.rstrip("/"))) from exc
            raise
        if name is None:
            name = _default_name(text, src, pair, fname, staging)
        _check_name(name)

        dest = root / name
        target = staging / "model"
        target.mkdir()
        new_files = {f.direction: f.path for f in pair.files}
        existing = _existing(dest, name)
        if existing is not None:
            old = existing
            clash = sorted(set(new_files) & set(old.directions))
            if not clash and _same_domains(old, pair):
                # Add the missing direction(s) into the existing pair, keep its files and card.
                for item in _model_files(old.path):
                    if old.location == "user" or item.suffix == ".onnx" or item.name == "README.md":
                        shutil.copy2(item, target / item.name)
                if old.location == "bundled":
                    warn(f"{name} now hides the bundled model {name} ({_describe(old)}); its "
                         f"{', '.join(old.directions)} generator was copied into the user model")
            elif not force:
                what = "bundled with imgxlate" if old.location == "bundled" else f"already installed at {old.path}"
                if not old.files:
                    what = f"installed at {old.path} but cannot be loaded"
                had = f" ({_describe(old)})" if old.files else ""
                raise UsageError(
                    f"a model named {name!r} is {what}{had}; installing "
                    f"{_describe(pair)} under that name would hide "
                    f"{'it' if set(clash) >= set(old.directions) else 'its ' + ', '.join(clash) + ' generator'}"
                    "; pick another --name, "
                    f"or pass --force to {'hide' if old.location == 'bundled' else 'replace'} it"
                )
            else:
                if old.location == "bundled":
                    kept = [d for d in old.directions if d not in new_files]
                    if kept and _same_domains(old, pair):
                        for d in kept:
                            shutil.copy2(old.path / f"{d}.onnx", target / f"{d}.onnx")
                    warn(f"{name} now hides the bundled model {name} ({_describe(old)})"
                         + (f"; its {', '.join(kept)} generator was kept" if kept and _same_domains(old, pair)
                            else "")
                         + f"; `imgxlate models remove {name}` brings the bundled one back")
                else:
                    warn(f"replacing the user model {name} ({_describe(old)}) at {old.path}")
        if src.is_dir():
            for item in _model_files(src):
                if item.suffix == ".onnx" and item.stem not in DIRECTIONS:
                    continue
                _copy_model_file(item, target / item.name)
        else:
            _copy_model_file(src, target / f"{pair.files[0].direction}.onnx")
        if provenance:
            import json

            (target / SOURCE_FILE).write_text(json.dumps(provenance, indent=2, sort_keys=True) + "\n")
        _swap_into_place(target, dest, staging)
        if installed is not None:
            installed(dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return load_pair(dest, "user", name)


# A staging folder whose newest entry is older than this is a killed install's (a download in
# progress keeps writing its file; a Hugging Face download fills its own cache first and leaves the
# staging folder empty meanwhile, so the margin is a day, not the length of a download).
_STALE_STAGING_S = 24 * 3600


def remove_stale_staging(root: Path) -> list[Path]:
    """Remove the staging folders (``.imgxlate-tmp-*``) that killed installs and removals left in the
    models folder ``root``: those in which nothing (the folder or anything in it) changed for a day.
    Returns the folders removed; one that cannot be removed is left alone."""
    import time

    now, removed = time.time(), []
    for entry in root.iterdir() if root.is_dir() else ():
        if not entry.name.startswith(TEMP_PREFIX) or entry.is_symlink() or not entry.is_dir():
            continue
        try:
            newest = max([entry.stat().st_mtime, *(p.lstat().st_mtime for p in entry.rglob("*"))])
        except OSError:
            continue
        if now - newest >= _STALE_STAGING_S:
            shutil.rmtree(entry, ignore_errors=True)
            if not entry.exists():
                removed.append(entry)
    return removed


def _default_name(text: str, src: Path, pair: ModelPair, fname: str, staging: Path) -> str:
    """The install name when --name is not given: a local folder's name (for a folder named ``model``,
    as training runs write them, the pair name in its metadata), a file's pair name (its stem without
    metadata), else the pair name in the metadata, the Hub repository or the URL's last part."""
    meta = None if pair.files[0].assumed else pair.files[0].metadata
    downloaded = staging in src.parents
    if src.is_file():
        if meta is not None:
            return meta.pair
        if _is_hub(text):  # a repository's one model.onnx: the repository names it, not the file
            return parse_hub(text)[0].split("/")[1]
        return Path(fname).stem if fname else src.stem
    if not downloaded and not _is_hub(text):
        return pair.name if _NAME_RE.match(pair.name) else src.name  # RUN/model: its pair's name
    if downloaded and src.parent.name == ".unzipped":
        return src.name  # the archive's one sub-folder
    if meta is not None:
        return meta.pair
    if _is_hub(text):
        return parse_hub(text)[0].split("/")[1]
    stem = text.rstrip("/").rsplit("/", 1)[-1]
    return Path(stem).stem or "model"


def _copy_model_file(src: Path, dst: Path) -> None:
    """Copy one file of a model; an ONNX file whose weights lie beside it (external data, which a copy
    of the .onnx alone would leave behind, breaking every later run) is written with them embedded."""
    if src.suffix.lower() != ".onnx" or not _has_external_data(src):
        shutil.copy2(src, dst)
        return
    import onnx

    model = onnx.load(str(src), load_external_data=True)
    if model.ByteSize() >= 2**31 - 1024:  # protobuf's limit for one file
        raise InvalidModelError(f"{src} keeps its weights in external data files and is over 2 GB: too large "
                                "to embed; imgxlate installs single-file models")
    onnx.save(model, str(dst))


def _has_external_data(path: Path) -> bool:
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # noqa: BLE001 - not loadable: the copy is as good as anything, the check says why
        return False
    return bool(external_data_files(model))


def _model_files(folder: Path) -> list[Path]:
    return [item for item in sorted(folder.iterdir())
            if item.is_file() and item.suffix.lower() in _KEEP_SUFFIXES and not item.name.startswith(".")]


def _existing(dest: Path, name: str) -> ModelPair | None:
    """The model a new install under ``name`` would replace or hide: the user one, else the bundled one."""
    if dest.exists():
        try:
            return load_pair(dest, "user", name)
        except ImgxlateError:
            return ModelPair(name=name, path=dest, location="user", files=())
    bundled = pairs.bundled_models_dir() / name
    if bundled.is_dir() and any((bundled / f"{d}.onnx").is_file() for d in DIRECTIONS):
        try:
            return load_pair(bundled, "bundled", name)
        except ImgxlateError:
            return None
    return None


def _swap_into_place(target: Path, dest: Path, staging: Path) -> None:
    """Rename the assembled model to ``dest``; an existing folder is moved aside first and removed after."""
    if dest.exists():
        aside = staging / "previous"
        os.replace(dest, aside)
        try:
            os.replace(target, dest)
        except OSError:
            os.replace(aside, dest)
            raise
    else:
        os.replace(target, dest)


def remove_model(name: str) -> Path:
    """Delete a user-installed model; bundled models cannot be removed."""
    root = user_models_dir()
    dest = root / name
    if not name or "/" in name or os.sep in name or name.startswith(".") or not dest.is_dir():
        bundled = pairs.bundled_models_dir() / name
        if name and bundled.is_dir() and not name.startswith("."):
            raise UsageError(
                f"{name!r} is bundled with imgxlate and cannot be removed; to use another model by default, "
                "set IMGXLATE_DEFAULT_MODEL (see `imgxlate models`)"
            )
        users = [p.name for p in _pairs_in(root, "user")]
        raise ModelNotFoundError(
            f"no user model named {name!r}{_dym(name, users)} "
            f"user models: {', '.join(users) or 'none'}; see `imgxlate models`"
        )
    # Rename first so a half-deleted folder never looks like a model.
    trash = root / f"{TEMP_PREFIX}remove-{name}-{os.getpid()}"
    os.replace(dest, trash)
    shutil.rmtree(trash, ignore_errors=True)
    return dest
