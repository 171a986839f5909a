"""The one way a dataclass becomes command-line flags, and flags become its fields.

``add_dataclass_flags(parser, Recipe)`` adds ``--field-name`` for every field
(``default=None``, so only what the user typed is an override);
``dataclass_overrides(args, Recipe)`` returns those overrides, parsed to the
field's type.  Booleans take ``true``/``false`` (a bare ``--flag`` means true),
tuples take comma-separated values.  Used by ``train``, ``search run`` and
``rank-study``.
"""
from __future__ import annotations

import argparse
import dataclasses
import typing
from typing import Any, Iterable

__all__ = ["add_dataclass_flags", "dataclass_overrides", "parse_bool", "parse_value"]

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def parse_bool(text: str | bool) -> bool:
    if isinstance(text, bool):
        return text
    low = str(text).strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise ValueError(f"expected true or false, got {text!r}")


def _base(tp: Any) -> tuple[Any, bool]:
    """(the non-None type, whether None is allowed) of a field annotation."""
    args = typing.get_args(tp)
    if type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return (rest[0] if len(rest) == 1 else str), True
    return tp, False


def parse_value(tp: Any, text: Any, name: str = "value") -> Any:
    """``text`` (a string from the command line, or already a value) as type ``tp``."""
    if not isinstance(text, str):
        return text
    base, optional = _base(tp)
    if optional and text.strip().lower() in ("none", "null", ""):
        return None
    origin = typing.get_origin(base)
    try:
        if base is bool:
            return parse_bool(text)
        if base in (int, float):
            return base(text)
        if origin in (tuple, list):
            inner = (typing.get_args(base) or (str,))[0]
            items = [inner(t.strip()) if inner in (int, float) else t.strip()
                     for t in text.split(",") if t.strip()]
            return tuple(items) if origin is tuple else items
    except ValueError as e:
        raise ValueError(f"--{name.replace('_', '-')}: {e}") from None
    return text


def add_dataclass_flags(parser: argparse.ArgumentParser | Any, cls: type, skip: Iterable[str] = (),
                        helps: dict[str, str] | None = None, title: str | None = None) -> None:
    """Add ``--name`` for each field of dataclass ``cls`` not in ``skip`` (default None: not given)."""
    hints = typing.get_type_hints(cls)
    helps = helps or {}
    group = parser.add_argument_group(title) if title else parser
    for f in dataclasses.fields(cls):
        if f.name in skip or not f.init:
            continue
        base, _ = _base(hints[f.name])
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else None
        hlp = helps.get(f.name, "") + (f" (default {default})" if default not in (None, "") else "")
        if base is bool:
            group.add_argument(flag, dest=f.name, nargs="?", const="true", default=None,
                               metavar="BOOL", help=hlp or None)
        else:
            group.add_argument(flag, dest=f.name, default=None, metavar=f.name.upper(), help=hlp or None)


def dataclass_overrides(args: argparse.Namespace, cls: type, skip: Iterable[str] = ()) -> dict[str, Any]:
    """The fields of ``cls`` the user gave on the command line, parsed to their types."""
    hints = typing.get_type_hints(cls)
    out = {}
    for f in dataclasses.fields(cls):
        if f.name in skip or not f.init:
            continue
        value = getattr(args, f.name, None)
        if value is not None:
            out[f.name] = parse_value(hints[f.name], value, f.name)
    return out
