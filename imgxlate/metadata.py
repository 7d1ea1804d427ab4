"""Model metadata: the JSON an imgxlate ONNX generator carries about itself.

Stored in the ONNX ``metadata_props`` under the key ``imgxlate``. ``schema_version`` lets readers
refuse (or upgrade) files written by a future version.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from imgxlate.errors import InvalidModelError

METADATA_KEY = "imgxlate"
SCHEMA_VERSION = 1
DIRECTIONS = ("a2b", "b2a")


@dataclass(frozen=True)
class ModelMetadata:
    """What one generator file says about itself.

    ``source``/``target`` are the domain names of the input and output images; ``pair`` names the
    two-direction model the file belongs to (e.g. ``vangogh2photo``).
    """

    pair: str
    direction: str
    source: str
    target: str
    domain_a: str
    domain_b: str
    # Value range of input and output tensors; images are mapped linearly into and out of it.
    input_range: tuple[float, float] = (-1.0, 1.0)
    output_range: tuple[float, float] = (-1.0, 1.0)
    layout: str = "NCHW"
    color: str = "RGB"
    # Spatial sizes must be a multiple of this (two stride-2 downsamplings -> 4); callers pad and crop.
    size_multiple: int = 4
    image_size: int = 256
    architecture: dict[str, Any] = field(default_factory=dict)
    steps: int = 0
    epochs: float = 0.0
    created: str = ""
    imgxlate_version: str = ""
    dtype: str = "float32"
    training: dict[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        problems = _check_fields(self)
        if problems:
            field_name, why = problems[0]
            raise InvalidModelError(f"model metadata field {field_name!r} {why}")

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, text: str, where: str = "the model") -> ModelMetadata:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidModelError(f"{where}: its imgxlate metadata is not valid JSON ({exc})") from exc
        return cls.from_dict(data, where)

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "the model") -> ModelMetadata:
        """Build and validate metadata read from a file; every error names ``where`` and the field."""
        if not isinstance(data, dict):
            raise InvalidModelError(f"{where}: its imgxlate metadata is not a JSON object")
        if "schema_version" in data:
            version = data["schema_version"]
            if isinstance(version, bool) or not isinstance(version, int) or version < 1:
                raise InvalidModelError(
                    f"{where}: metadata field 'schema_version' is {version!r}; expected a whole number >= 1"
                )
            if version > SCHEMA_VERSION:
                raise InvalidModelError(
                    f"{where} was written with metadata schema {version}, this imgxlate reads up to "
                    f"{SCHEMA_VERSION}; upgrade imgxlate (a newer checkout: git pull, then pip install it again)"
                )
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in known}  # unknown keys: written by a newer minor
        missing = [k for k in REQUIRED if k not in kwargs]
        if missing:
            raise InvalidModelError(f"{where}: its imgxlate metadata lacks {', '.join(missing)}")
        for key in ("input_range", "output_range"):
            value = kwargs.get(key)
            if isinstance(value, list) and len(value) == 2 and all(_is_number(v) for v in value):
                kwargs[key] = (float(value[0]), float(value[1]))
        for key in ("architecture", "training"):
            if key in kwargs and kwargs[key] is None:
                kwargs[key] = {}
        try:
            return cls(**kwargs)
        except InvalidModelError as exc:
            raise InvalidModelError(f"{where}: {exc}") from None

    @classmethod
    def assumed(cls, name: str) -> ModelMetadata:
        """Metadata assumed for a bare ONNX file without imgxlate metadata: [-1, 1] RGB NCHW."""
        return cls(pair=name, direction="a2b", source="input", target=name, domain_a="input", domain_b=name)


REQUIRED = ("pair", "direction", "source", "target", "domain_a", "domain_b")
# What this imgxlate can feed and read back: the engine builds float32 NCHW RGB tensors.
LAYOUTS = ("NCHW",)
COLORS = ("RGB",)
DTYPES = ("float32",)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _is_count(v: Any, minimum: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= minimum


def _check_fields(m: ModelMetadata) -> list[tuple[str, str]]:
    """Every (field, what is wrong) of ``m``; empty when the metadata is usable."""
    bad: list[tuple[str, str]] = []
    for key in REQUIRED:
        value = getattr(m, key)
        if not isinstance(value, str) or not value.strip():
            bad.append((key, f"is {value!r}; expected a non-empty text"))
    if not bad:
        if m.direction not in DIRECTIONS:
            bad.append(("direction", f"is {m.direction!r}; expected one of {', '.join(DIRECTIONS)}"))
        else:
            want = (m.domain_a, m.domain_b) if m.direction == "a2b" else (m.domain_b, m.domain_a)
            if (m.source, m.target) != want:
                why = (f"and 'target' ({m.source!r} -> {m.target!r}) do not match direction {m.direction} of "
                       f"domains {m.domain_a!r} / {m.domain_b!r}")
                bad.append(("source", why))
    for key in ("input_range", "output_range"):
        value = getattr(m, key)
        if not (isinstance(value, (tuple, list)) and len(value) == 2 and all(_is_number(v) for v in value)
                and value[0] < value[1]):
            bad.append((key, f"is {value!r}; expected [low, high], two finite numbers with low < high"))
    for key, allowed in (("layout", LAYOUTS), ("color", COLORS), ("dtype", DTYPES)):
        value = getattr(m, key)
        if value not in allowed:
            bad.append((key, f"is {value!r}; this imgxlate supports {', '.join(allowed)} only"))
    if not _is_count(m.size_multiple, 1) or m.size_multiple > 1024:
        bad.append(("size_multiple", f"is {m.size_multiple!r}; expected a whole number from 1 to 1024"))
    if not _is_count(m.image_size, 1):
        bad.append(("image_size", f"is {m.image_size!r}; expected a whole number >= 1"))
    if not _is_count(m.steps, 0):
        bad.append(("steps", f"is {m.steps!r}; expected a whole number >= 0"))
    if not _is_number(m.epochs) or m.epochs < 0:
        bad.append(("epochs", f"is {m.epochs!r}; expected a number >= 0"))
    for key in ("architecture", "training"):
        if not isinstance(getattr(m, key), dict):
            bad.append((key, f"is {getattr(m, key)!r}; expected a JSON object"))
    for key in ("created", "imgxlate_version"):
        if not isinstance(getattr(m, key), str):
            bad.append((key, f"is {getattr(m, key)!r}; expected a text"))
    if not _is_count(m.schema_version, 1):
        bad.append(("schema_version", f"is {m.schema_version!r}; expected a whole number >= 1"))
    return bad


_ONNX_DTYPES = {1: "float32", 2: "uint8", 3: "int8", 6: "int32", 7: "int64", 10: "float16", 11: "float64",
                16: "bfloat16"}


def check_graph(model: Any, meta: ModelMetadata | None, where: str) -> None:
    """The ONNX graph's image input agrees with what the metadata (or the assumed defaults) says:
    one 4-D input of ``dtype`` with 3 channels in ``layout``."""
    inputs = [i for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}]
    if not model.graph.node:  # an empty file parses as an empty model
        raise InvalidModelError(f"{where} holds no model (an empty or cut-off file); copy or download it again")
    if len(inputs) != 1:
        raise InvalidModelError(
            f"{where} has {len(inputs)} graph inputs; an imgxlate generator has one image input"
        )
    ttype = inputs[0].type.tensor_type
    dtype = meta.dtype if meta is not None else "float32"
    got = _ONNX_DTYPES.get(ttype.elem_type, f"ONNX type {ttype.elem_type}")
    if got != dtype:
        field_note = "metadata field 'dtype' says" if meta is not None else "imgxlate needs"
        raise InvalidModelError(f"{where}: its input is {got} but {field_note} {dtype}; export the model with "
                                "a float32 input and output (weights may stay float16: cast at the input)")
    dims = ttype.shape.dim if ttype.HasField("shape") else None
    if dims is not None:
        if len(dims) != 4:
            raise InvalidModelError(f"{where}: its input has {len(dims)} dimensions; expected 4 (N, C, H, W)")
        channels = dims[1]
        if channels.HasField("dim_value") and channels.dim_value != 3:
            layout = meta.layout if meta is not None else "NCHW"
            raise InvalidModelError(
                f"{where}: its input has {channels.dim_value} channels at position 1; "
                f"{'metadata field ' + repr('layout') + ' says ' if meta is not None else 'imgxlate needs '}"
                f"{layout} with 3 (RGB) channels"
            )



def external_data_files(model: Any) -> list[str]:
    """The files (relative to the .onnx file's folder) that hold weights of ``model``, loaded without
    them (``onnx.save(..., save_as_external_data=True)``, the layout of models over 2 GB), in order."""
    import onnx

    found: dict[str, None] = {}
    for tensor in model.graph.initializer:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            found.update({e.value: None for e in tensor.external_data if e.key == "location"})
    return list(found)


def missing_external_data(model: Any, folder: Path) -> list[str]:
    """Those of :func:`external_data_files` that are not regular files in ``folder``."""
    return [name for name in external_data_files(model) if not (folder / name).is_file()]


def read_onnx_metadata(path: str, check_input: bool = True) -> ModelMetadata | None:
    """Read and validate the imgxlate metadata of an ONNX file without loading its weights (None if it
    has none); with ``check_input``, also check that the graph's input matches it."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError and friends
        raise InvalidModelError(
            f"{path} is not a readable ONNX file ({exc}); copy or download it again, or export it again with "
            "`imgxlate-train export`"
        ) from exc
    missing = missing_external_data(model, Path(path).parent)
    if missing:
        names = ", ".join(missing)
        raise InvalidModelError(
            f"{path} keeps its weights in {names} beside it, and {'that file is' if len(missing) == 1 else 'those files are'} "
            f"not there: put {names} in the folder of {Path(path).name} (or save the model with its weights inside)"
        )
    meta = None
    for prop in model.metadata_props:
        if prop.key == METADATA_KEY:
            meta = ModelMetadata.from_json(prop.value, str(path))
            break
    if check_input:
        check_graph(model, meta, str(path))
    return meta
