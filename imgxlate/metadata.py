"""Model metadata: the JSON an imgxlate ONNX generator carries about itself.

Stored in the ONNX ``metadata_props`` under the key ``imgxlate``. ``schema_version`` lets readers
refuse (or upgrade) files written by a future version.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
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
        if self.direction not in DIRECTIONS:
            raise InvalidModelError(
                f"model metadata has direction {self.direction!r}; expected one of {', '.join(DIRECTIONS)}"
            )

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, text: str) -> ModelMetadata:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidModelError(f"the model's imgxlate metadata is not valid JSON ({exc})") from exc
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelMetadata:
        if not isinstance(data, dict):
            raise InvalidModelError("the model's imgxlate metadata is not a JSON object")
        version = int(data.get("schema_version", 0))
        if version > SCHEMA_VERSION:
            raise InvalidModelError(
                f"the model was written with metadata schema {version}, this imgxlate reads up to "
                f"{SCHEMA_VERSION}; upgrade imgxlate (pip install -U imgxlate)"
            )
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in known}
        for key in ("input_range", "output_range"):
            if key in kwargs:
                kwargs[key] = tuple(float(v) for v in kwargs[key])
        missing = [k for k in ("pair", "direction", "source", "target", "domain_a", "domain_b") if k not in kwargs]
        if missing:
            raise InvalidModelError(f"the model's imgxlate metadata lacks {', '.join(missing)}")
        return cls(**kwargs)

    @classmethod
    def assumed(cls, name: str) -> ModelMetadata:
        """Metadata assumed for a bare ONNX file without imgxlate metadata: [-1, 1] RGB NCHW."""
        return cls(pair=name, direction="a2b", source="input", target=name, domain_a="input", domain_b=name)


def read_onnx_metadata(path: str) -> ModelMetadata | None:
    """Read the imgxlate metadata of an ONNX file without loading its weights; None if it has none."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError and friends
        raise InvalidModelError(f"{path} is not a readable ONNX file ({exc})") from exc
    for prop in model.metadata_props:
        if prop.key == METADATA_KEY:
            return ModelMetadata.from_json(prop.value)
    return None
