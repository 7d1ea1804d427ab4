"""Where generators are found and how a name, a target domain or a direction picks one.

A model file is one ONNX generator (ideally with imgxlate metadata). A pair is a folder holding
``a2b.onnx`` and/or ``b2a.onnx`` (+ a README.md model card). Locations, searched in order:

1. a path given by the user (file or pair folder);
2. the user model folder: ``$IMGXLATE_HOME/models``, else ``platformdirs.user_data_dir("imgxlate")/models``;
3. the bundled models: ``imgxlate/models/<pair>/`` inside the package.

A user model shadows a bundled one of the same name.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

from imgxlate.errors import (
    AmbiguousModelError,
    ImgxlateError,
    InvalidModelError,
    ModelNotFoundError,
    UsageError,
    did_you_mean,
)
from imgxlate.metadata import DIRECTIONS, ModelMetadata, read_onnx_metadata
from imgxlate.notes import Note

DEFAULT_MODEL = "vangogh2photo"
DEFAULT_MODEL_ENV = "IMGXLATE_DEFAULT_MODEL"
HOME_ENV = "IMGXLATE_HOME"
# Domains a photographer's input most likely belongs to: with neither --to nor --direction, a pair
# translates *from* one of these when it has one (photo -> vangogh, not vangogh -> photo).
PHOTO_DOMAINS = ("photo", "photos", "real", "picture")



def _dym(word: str, choices: list[str]) -> str:
    """``"; did you mean 'x'?"`` or just ``";"`` so the sentence goes on either way."""
    return did_you_mean(word, choices) or ";"


def user_models_dir() -> Path:
    home = os.environ.get(HOME_ENV)
    if home:
        return Path(home).expanduser() / "models"
    import platformdirs

    return Path(platformdirs.user_data_dir("imgxlate")) / "models"


def bundled_models_dir() -> Path:
    import imgxlate.models

    return Path(imgxlate.models.__file__).resolve().parent


def default_model_name() -> str:
    return os.environ.get(DEFAULT_MODEL_ENV, "").strip() or DEFAULT_MODEL


@dataclass(frozen=True)
class ModelFile:
    """One generator file and what it translates."""

    path: Path
    metadata: ModelMetadata
    assumed: bool = False  # True: the file has no imgxlate metadata; [-1, 1] RGB NCHW is assumed

    @property
    def direction(self) -> str:
        return self.metadata.direction

    @property
    def label(self) -> str:
        return f"{self.metadata.source} -> {self.metadata.target}"


@dataclass(frozen=True)
class ModelPair:
    """A named model: one or two generator files of the same pair."""

    name: str
    path: Path  # the pair folder, or the .onnx file when the model is a single file
    location: str  # "path" | "user" | "bundled"
    files: tuple[ModelFile, ...]

    @property
    def domains(self) -> tuple[str, str]:
        meta = self.files[0].metadata
        return meta.domain_a, meta.domain_b

    @property
    def directions(self) -> tuple[str, ...]:
        return tuple(f.direction for f in self.files)

    @property
    def targets(self) -> tuple[str, ...]:
        return tuple(f.metadata.target for f in self.files)

    @property
    def size_bytes(self) -> int:
        return sum(f.path.stat().st_size for f in self.files)

    def by_target(self, domain: str) -> ModelFile | None:
        for f in self.files:
            if f.metadata.target == domain:
                return f
        lowered = [f for f in self.files if f.metadata.target.lower() == domain.lower()]
        return lowered[0] if len(lowered) == 1 else None

    def by_direction(self, direction: str) -> ModelFile | None:
        return next((f for f in self.files if f.direction == direction), None)

    def default_file(self) -> ModelFile:
        """The generator used when neither --to nor --direction is given."""
        if len(self.files) == 1:
            return self.files[0]
        for f in self.files:
            if f.metadata.source.lower() in PHOTO_DOMAINS:
                return f
        return self.by_direction("a2b") or self.files[0]


@dataclass(frozen=True)
class Resolved:
    """What ``resolve_model`` picked, plus notes the caller should show the user."""

    pair: ModelPair
    file: ModelFile
    notes: tuple[Note, ...] = ()


# ---------------------------------------------------------------------------------------------- loading


def load_model_file(path: Path, direction_hint: str | None = None, name: str | None = None) -> ModelFile:
    if not path.is_file():
        raise ModelNotFoundError(f"model file {path} does not exist")
    meta = read_onnx_metadata(str(path))
    if meta is not None:
        return ModelFile(path=path, metadata=meta)
    label = name or path.stem
    assumed = ModelMetadata.assumed(label)
    if direction_hint in DIRECTIONS:
        # A metadata-less file inside a pair folder: domains are only known as "a" and "b".
        src, dst = ("a", "b") if direction_hint == "a2b" else ("b", "a")
        assumed = dataclasses.replace(
            assumed, direction=direction_hint, source=src, target=dst, domain_a="a", domain_b="b"
        )
    return ModelFile(path=path, metadata=assumed, assumed=True)


def load_pair(path: str | os.PathLike[str], location: str = "path", name: str | None = None) -> ModelPair:
    """A pair folder (a2b.onnx / b2a.onnx) or a single .onnx file."""
    path = Path(path).expanduser()
    if not path.exists():
        raise ModelNotFoundError(
            f"model path {path} does not exist; give a .onnx file or a folder with a2b.onnx / b2a.onnx"
        )
    if path.is_dir():
        found = [path / f"{d}.onnx" for d in DIRECTIONS if (path / f"{d}.onnx").is_file()]
        if not found:
            if any((path / "model" / f"{d}.onnx").is_file() for d in DIRECTIONS):
                raise UsageError(f"{path} is a training run; its model is {path / 'model'}: pass --model "
                                 f"{path / 'model'}")
            if (path / "checkpoints" / "last.pt").is_file():
                raise UsageError(f"{path} is a training run without an exported model; export it first: "
                                 f"imgxlate-train export {path} --out {path / 'model'} (then --model {path / 'model'})")
            others = sorted(p.name for p in path.glob("*.onnx"))
            hint = (f" (it has {', '.join(others)}: pass one of them as --model)" if others else
                    "; give the folder `imgxlate-train` exported, or a .onnx file")
            raise InvalidModelError(f"model folder {path} has neither a2b.onnx nor b2a.onnx{hint}")
        # A lone a2b.onnx without metadata (a bare file installed by `models add`) reads as that file
        # would on its own ("input -> NAME"), so installing it does not rename what it translates.
        lone = len(found) == 1 and found[0].stem == "a2b"
        files = tuple(load_model_file(p, None if lone else p.stem, name or path.name) for p in found)
        _check_pair_files(path, files)
        known = [f for f in files if not f.assumed]
        # every training run exports into RUN/model: its pair's name (horse2zebra) tells them apart. An
        # installed folder is called by its folder's name whatever it is: that name is what --model takes.
        by_pair = location == "path" and path.name == "model" and known
        pair_name = name or (known[0].metadata.pair if by_pair else path.name)
        return ModelPair(name=pair_name, path=path, location=location, files=files)
    if path.suffix.lower() in PYTORCH_SUFFIXES:
        raise pytorch_file_error(str(path))
    if path.suffix.lower() != ".onnx":
        _check_onnx_magic(path)
    mf = load_model_file(path, None, name)
    pair_name = name or (mf.metadata.pair if not mf.assumed else path.stem)
    return ModelPair(name=pair_name, path=path, location=location, files=(mf,))


def _check_pair_files(folder: Path, files: tuple[ModelFile, ...]) -> None:
    """A pair folder's files must be what their names say: a2b.onnx translates A -> B and b2a.onnx
    B -> A of the same two domains (by their metadata; files without it are taken on trust)."""
    for mf in files:
        if not mf.assumed and mf.metadata.direction != mf.path.stem:
            raise InvalidModelError(
                f"{mf.path} translates {mf.label}, which its metadata calls {mf.metadata.direction}, but it is "
                f"named {mf.path.name}: in a pair folder a2b.onnx translates A -> B and b2a.onnx B -> A; rename "
                "or re-export it"
            )
    known = [mf for mf in files if not mf.assumed]
    domains = {(mf.metadata.domain_a, mf.metadata.domain_b) for mf in known}
    if len(domains) > 1:
        told = "; ".join(f"{mf.path.name} translates {mf.label}" for mf in known)
        raise InvalidModelError(
            f"model folder {folder} does not hold one pair ({told}); keep the two directions of one model "
            "together, or install each file as a model of its own"
        )


PYTORCH_SUFFIXES = (".pth", ".pt")


def pytorch_file_error(text: str) -> UsageError:
    """PyTorch weights are not a model imgxlate runs: which command makes one of them."""
    return UsageError(
        f"{text} is a PyTorch file, not an ONNX model: turn a generator of the original CycleGAN code into "
        "one with `imgxlate-train import --a2b FILE --out DIR` (a checkpoint of imgxlate-train with "
        "`imgxlate-train export RUN --out DIR`), then pass DIR as --model or install it with "
        "`imgxlate models add DIR`"
    )


def _check_onnx_magic(path: Path) -> None:
    """Reject obviously non-ONNX files (images, archives, text) with a clear message before parsing."""
    head = _head(path, 16)
    # An ONNX file is a protobuf ModelProto; its first field is ir_version (tag 0x08).
    if not head.startswith(b"\x08"):
        raise InvalidModelError(f"{path} is not an ONNX model file; give a .onnx generator or a pair folder")


@dataclass(frozen=True)
class BrokenModel:
    """A folder in a model location that looks like a model but cannot be used, and why."""

    name: str
    path: Path
    location: str
    reason: str


def _scan(folder: Path, location: str) -> tuple[list[ModelPair], list[BrokenModel]]:
    pairs: list[ModelPair] = []
    broken: list[BrokenModel] = []
    if not folder.is_dir():
        return pairs, broken
    try:
        entries = sorted(folder.iterdir())
    except OSError as exc:
        return pairs, [BrokenModel(folder.name, folder, location, f"cannot list {folder}: {exc.strerror}")]
    for entry in entries:
        if entry.name.startswith(".") or not entry.is_dir():
            continue
        if not any((entry / f"{d}.onnx").is_file() for d in DIRECTIONS):
            continue
        try:
            pairs.append(load_pair(entry, location))
        except ImgxlateError as exc:
            broken.append(BrokenModel(entry.name, entry, location, str(exc)))
        except OSError as exc:
            broken.append(BrokenModel(entry.name, entry, location, f"cannot read {entry}: {exc}"))
    return pairs, broken


def _head(path: Path, n: int) -> bytes:
    with open(path, "rb") as fh:
        return fh.read(n)


def _pairs_in(folder: Path, location: str) -> list[ModelPair]:
    return _scan(folder, location)[0]


def scan_models() -> tuple[list[ModelPair], list[BrokenModel]]:
    """Every installed model and every broken one. A user model (broken or not) hides a bundled model of
    the same name; one broken model never stops the others from being listed."""
    user, user_broken = _scan(user_models_dir(), "user")
    names = {p.name for p in user} | {b.name for b in user_broken}
    bundled, bundled_broken = _scan(bundled_models_dir(), "bundled")
    return (user + [p for p in bundled if p.name not in names],
            user_broken + [b for b in bundled_broken if b.name not in names])


def list_models() -> list[ModelPair]:
    """Every usable installed model: user models first, then bundled ones not hidden by a user model."""
    return scan_models()[0]


def _find_named(name: str) -> ModelPair | None:
    """An installed model by exact name, loading only that one (a user model shadows a bundled one)."""
    if not name or name.startswith(".") or "/" in name or os.sep in name:
        return None
    for root, location in ((user_models_dir(), "user"), (bundled_models_dir(), "bundled")):
        folder = root / name
        if folder.is_dir() and any((folder / f"{d}.onnx").is_file() for d in DIRECTIONS):
            return load_pair(folder, location)
    return None


def find_pair(name: str) -> ModelPair:
    """An installed model by name."""
    found = _find_named(name)
    if found is not None:
        return found
    models = list_models()
    names = [p.name for p in models]
    if not names:
        raise ModelNotFoundError(
            f"no model named {name!r}: no models are installed; pass --model PATH (a .onnx file or a pair "
            "folder) or install one with `imgxlate models add PATH|URL`"
        )
    owners = [p.name for p in models if name.casefold() in (d.casefold() for d in p.domains)]
    if owners:  # `--model vangogh`: a domain, where a model was asked for
        raise ModelNotFoundError(
            f"{name!r} is a domain of {', '.join(owners)}, not a model: give the model, {owners[0]}, as --model "
            f"and the domain to translate into as --to (from Python: load_model({owners[0]!r}, to=...))"
        )
    raise ModelNotFoundError(
        f"no model named {name!r}{_dym(name, names)} installed models: {', '.join(names)}; "
        "see `imgxlate models`"
    )


def _looks_like_path(model: str) -> bool:
    return os.sep in model or "/" in model or model.lower().endswith(".onnx") or model.startswith(".")


def resolve_model(
    model: str | os.PathLike[str] | None = None, *, to: str | None = None, direction: str | None = None
) -> Resolved:
    """Pick one generator file from ``model`` (name or path; None = the default pair) and ``to``
    (target domain) or ``direction`` (a2b / b2a)."""
    if to is not None and direction is not None:
        raise UsageError("give either --to DOMAIN or --direction a2b|b2a, not both")
    if direction is not None and direction not in DIRECTIONS:
        raise UsageError(f"unknown direction {direction!r}; use a2b or b2a")
    notes: list[Note] = []
    if model is not None:
        text = os.fspath(model)
        if isinstance(model, Path) or Path(text).expanduser().exists() or _looks_like_path(text):
            pair = load_pair(text, "path")
        else:
            pair = find_pair(text)
        return _pick(pair, to, direction, notes)

    name = default_model_name()
    from_env = bool(os.environ.get(DEFAULT_MODEL_ENV, "").strip())
    if from_env and _find_named(name) is None and (_looks_like_path(name) or Path(name).expanduser().exists()):
        raise UsageError(
            f"${DEFAULT_MODEL_ENV} is {name!r}, a path; it takes the name of an installed model: install it "
            f"with `imgxlate models add {name} --name NAME` and set {DEFAULT_MODEL_ENV}=NAME, or pass "
            f"--model {name}"
        )
    pair = _find_named(name)
    if pair is not None and (to is None or pair.by_target(to) is not None):
        return _pick(pair, to, direction, notes)
    models = list_models()
    if pair is None and from_env:
        listing = f"installed models: {', '.join(p.name for p in models)}" if models else "no models are installed"
        raise ModelNotFoundError(
            f"${DEFAULT_MODEL_ENV} names the model {name!r}, which is not installed ({listing}); set it to an "
            "installed model's name or unset it, or install that model with `imgxlate models add PATH|URL`"
        )
    if to is None:
        listing = f" installed models: {', '.join(p.name for p in models)};" if models else ""
        raise ModelNotFoundError(
            f"the default model {name!r} is not installed;{listing} pass --model NAME|PATH, or install one "
            "with `imgxlate models add PATH|URL`"
        )
    # --to without --model: search every pair for a generator that produces ``to``.
    hits = [(p, p.by_target(to)) for p in models]
    hits = [(p, f) for p, f in hits if f is not None]
    if len(hits) > 1:
        raise AmbiguousModelError(
            f"several models translate to {to!r}: {', '.join(p.name for p, _ in hits)}; pick one with --model"
        )
    if not hits:
        targets = sorted({t for p in models for t in p.targets})
        raise ModelNotFoundError(_no_target_message(to, targets))
    return _pick(hits[0][0], to, direction, notes)


def _no_target_message(to: str, targets: list[str]) -> str:
    if not targets:
        return (
            f"no model translates to {to!r}: no models are installed; pass --model PATH or install one with "
            "`imgxlate models add PATH|URL`"
        )
    return (
        f"no model translates to {to!r}{_dym(to, targets)} see `imgxlate models` "
        f"(targets available: {', '.join(targets)})"
    )


def _pick(pair: ModelPair, to: str | None, direction: str | None, notes: list[Note]) -> Resolved:
    only_assumed = len(pair.files) == 1 and pair.files[0].assumed
    if pair.files[0].assumed:
        notes.append(Note(
            "no-metadata",
            f"{pair.files[0].path} has no imgxlate metadata; assuming RGB NCHW input and output in [-1, 1] "
            "(a model made elsewhere: add the metadata as the README's 'Model format' shows)",
        ))
    if to is not None:
        found = pair.by_target(to)
        if found is None and only_assumed:
            notes.append(Note("ignored", f"--to {to} ignored: {pair.path} is a single generator without metadata"))
            found = pair.files[0]
        if found is None:
            raise ModelNotFoundError(
                f"no model translates to {to!r}{_dym(to, list(pair.targets))} model {pair.name} translates "
                f"to {', '.join(pair.targets)}; see `imgxlate models`"
            )
        return Resolved(pair, found, tuple(notes))
    if direction is not None:
        found = pair.by_direction(direction)
        if found is None and only_assumed:
            notes.append(Note(
                "ignored", f"--direction {direction} ignored: {pair.path} is a single generator without metadata"
            ))
            found = pair.files[0]
        if found is None:
            raise ModelNotFoundError(
                f"model {pair.name} has no {direction} generator (it has {', '.join(pair.directions)})"
            )
        return Resolved(pair, found, tuple(notes))
    chosen = pair.default_file()
    if len(pair.files) > 1:
        other = next(f for f in pair.files if f is not chosen)
        notes.append(Note(
            "direction",
            f"translating {chosen.label} with {pair.name}; use --to {other.metadata.target} for the other way",
        ))
    return Resolved(pair, chosen, tuple(notes))
