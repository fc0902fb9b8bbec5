"""A method's own settings (`method_args` in the run config): a dataclass each method declares, checked like the
config before stage 0 trains.

    @dataclass(frozen=True)
    class EWCSettings:
        strength: float = setting(5000.0, "λ, the pull towards earlier stages' parameters", at_least=0)

    register(EWC("ewc", settings_type=EWCSettings, ...))

Each value is converted to its declared type (`3e-3` read by YAML as a string is a float), its range checked, and
an unknown key is a one-line error naming the key and the method's settings. `llava-cit methods NAME` prints them
with their defaults. The hooks read them typed: `ctx.settings.strength`.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from llava_cit.config import typed_value
from llava_cit.util.errors import UserError


@dataclass(frozen=True)
class NoSettings:
    """A method without settings of its own: any `method_args` key is an error."""


def setting(default: Any, help: str, at_least: float | None = None, above: float | None = None,
            at_most: float | None = None, choices: tuple | None = None) -> Any:
    """A settings field with its default, a one-line description and its range (bounds inclusive except `above`) or
    its `choices`."""
    return dataclasses.field(default=default, metadata={"help": help, "at_least": at_least, "above": above,
                                                        "at_most": at_most, "choices": choices})


def _range_error(value: Any, meta: Mapping) -> str | None:
    if meta.get("choices") is not None and value not in meta["choices"]:
        return "one of " + ", ".join(map(str, meta["choices"]))
    if value is None or isinstance(value, (bool, str, list, dict)):
        return None
    if meta.get("at_least") is not None and value < meta["at_least"]:
        return f">= {meta['at_least']}"
    if meta.get("above") is not None and value <= meta["above"]:
        return f"> {meta['above']}"
    if meta.get("at_most") is not None and value > meta["at_most"]:
        return f"<= {meta['at_most']}"
    return None


def parse_settings(settings_type: type, method_args: Mapping, method: str) -> Any:
    """`method_args` as an instance of `settings_type`, or a one-line UserError naming the key."""
    if not isinstance(method_args, Mapping):
        raise UserError(f"method_args must be a mapping of settings, got {type(method_args).__name__}")
    known = {f.name: f for f in fields(settings_type)}
    hints = typing.get_type_hints(settings_type)
    values = {}
    for key, value in method_args.items():
        if key not in known:
            offered = ", ".join(known) if known else "none"
            raise UserError(f"method_args.{key}: method '{method}' has no such setting (its settings: {offered}; "
                            f"llava-cit methods {method})")
        values[key] = typed_value(value, hints[key], f"method_args.{key}")
        bound = _range_error(values[key], known[key].metadata)
        if bound is not None:
            raise UserError(f"method_args.{key} = {value!r}: must be {bound}")
    return settings_type(**values)


def own_settings(settings_type: type, method_args: Mapping) -> dict:
    """Of `method_args` meant for several methods (a demo preset's), the keys `settings_type` has."""
    names = {f.name for f in fields(settings_type)}
    return {k: v for k, v in method_args.items() if k in names}


def describe_settings(settings_type: type) -> list[tuple[str, str, Any, str]]:
    """(name, type, default, help) of each setting, for `llava-cit methods NAME`."""
    hints = typing.get_type_hints(settings_type)
    rows = []
    for f in fields(settings_type):
        kind = hints[f.name]
        name = " or ".join(getattr(o, "__name__", str(o)) for o in typing.get_args(kind)) if typing.get_args(kind) \
            else getattr(kind, "__name__", str(kind))
        default = ("null" if f.default is None else str(f.default).lower() if isinstance(f.default, bool)
                   else format(f.default, "g") if isinstance(f.default, float) else f.default)  # 1e+08, not 100000000.0
        rows.append((f.name, name.replace("NoneType", "null"), default, f.metadata.get("help", "")))
    return rows
