"""The ``imgxlate-train`` options, generated from the :class:`TrainConfig` fields.

Each config field is declared once (``train/config.py``: default, help, panel, choices, spellings);
this module turns the declarations into Typer options, so the command line and the config cannot
drift apart. Fields with choices become Enums: ``--help`` lists the values and a typo fails while
parsing (exit 2), before anything is loaded.
"""

from __future__ import annotations

import enum
import inspect
from dataclasses import fields
from typing import Any, Optional

import typer

from imgxlate.train.config import TrainConfig

_TYPES: dict[str, Any] = {
    "str": str,
    "int": int,
    "float": float,
    "bool": bool,
    "int | None": Optional[int],  # noqa: UP045 - Typer needs a runtime type here
    "float | None": Optional[float],  # noqa: UP045
    "bool | None": Optional[bool],  # noqa: UP045
}


def _choice_enum(name: str, choices: tuple[str, ...]) -> type[enum.Enum]:
    return enum.Enum(name, {c: c for c in choices}, type=str)  # type: ignore[return-value]


def config_parameters() -> list[inspect.Parameter]:
    """One keyword-only parameter per TrainConfig field, its default a ``typer.Option``."""
    params = []
    for f in fields(TrainConfig):
        meta = f.metadata
        annotation = _TYPES[str(f.type)]
        default = f.default
        if meta.get("choices"):
            annotation = _choice_enum("".join(w.title() for w in f.name.split("_")), meta["choices"])
            default = annotation(default) if default is not None else None
        flags = meta.get("flags") or (f"--{f.name.replace('_', '-')}",)
        option = typer.Option(
            default,
            *flags,
            help=meta["help"],
            rich_help_panel=meta["panel"],
            show_default=f.default is not None and f.default != "",
            metavar=meta.get("metavar"),
            case_sensitive=False,
        )
        params.append(
            inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=annotation)
        )
    return params


def config_values(values: dict[str, Any]) -> dict[str, Any]:
    """The parsed option values of the config fields as plain values (Enum members -> their string)."""
    names = {f.name for f in fields(TrainConfig)}
    return {k: (v.value if isinstance(v, enum.Enum) else v) for k, v in values.items() if k in names}


def with_config_options(func: Any, leading: list[inspect.Parameter]) -> Any:
    """Give ``func(**values)`` the signature ``leading + config options`` for Typer to read."""
    params = leading + config_parameters()
    func.__signature__ = inspect.Signature(params)
    func.__annotations__ = {p.name: p.annotation for p in params}
    return func
