"""Models and their names: where generators are found, how a name or a domain picks one (``pairs``),
the check every model passes (``probe``), installing and removing them (``install``).

The public names are re-exported here; tests that replace a location patch it where it is used
(``imgxlate.registry.pairs.bundled_models_dir``).
"""

from __future__ import annotations

from imgxlate.registry.install import (
    DEFAULT_DOWNLOAD_DEADLINE,
    DOWNLOAD_DEADLINE_ENV,
    SOURCE_FILE,
    download,
    install_model,
    parse_hub,
    remove_model,
)
from imgxlate.registry.pairs import (
    DEFAULT_MODEL,
    DEFAULT_MODEL_ENV,
    HOME_ENV,
    PHOTO_DOMAINS,
    BrokenModel,
    ModelFile,
    ModelPair,
    Resolved,
    bundled_models_dir,
    default_model_name,
    find_pair,
    list_models,
    load_model_file,
    load_pair,
    resolve_model,
    scan_models,
    user_models_dir,
)
from imgxlate.registry.probe import probe_generator, probe_side, validate_model_file

__all__ = [
    "DEFAULT_DOWNLOAD_DEADLINE",
    "DEFAULT_MODEL",
    "DEFAULT_MODEL_ENV",
    "DOWNLOAD_DEADLINE_ENV",
    "HOME_ENV",
    "PHOTO_DOMAINS",
    "SOURCE_FILE",
    "BrokenModel",
    "ModelFile",
    "ModelPair",
    "Resolved",
    "bundled_models_dir",
    "default_model_name",
    "download",
    "find_pair",
    "install_model",
    "list_models",
    "load_model_file",
    "load_pair",
    "parse_hub",
    "probe_generator",
    "probe_side",
    "remove_model",
    "resolve_model",
    "scan_models",
    "user_models_dir",
    "validate_model_file",
]
