"""The one way a dataclass becomes command-line flags, and flags become its fields.

``add_dataclass_flags(parser, Recipe)`` adds ``--field-name`` for every field
(``default=None``, so only what the user typed is an override), with the
field's ``# comment`` in the class source as its help and its default shown;
``dataclass_overrides(args, Recipe)`` returns those overrides, parsed to the
field's type.  Booleans have one style everywhere (:func:`add_bool_flag`):
``--flag``, ``--flag true|false`` and ``--no-flag``.  Tuples take
comma-separated values; ``auto`` for an optional number means "not set" (the
field's automatic rule decides).  Used by ``train``, ``search run``,
``rank-study`` and ``detect train``.
"""
from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import io
import textwrap
import tokenize
import typing
from typing import Any, Iterable

__all__ = ["add_dataclass_flags", "dataclass_overrides", "parse_bool", "parse_value", "add_bool_flag",
           "field_comments"]

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


def _bool_arg(text: str) -> bool:
    """argparse ``type`` for a boolean's optional value: a clean usage error when it is not one."""
    try:
        return parse_bool(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_bool_flag(parser: argparse.ArgumentParser | Any, flag: str, *, dest: str | None = None,
                  default: bool | None = False, help: str | None = None) -> None:  # noqa: A002
    """``--flag`` (true), ``--flag true|false`` and ``--no-flag`` (false), all to ``dest``.

    The parsed value is a bool, or ``default`` when the flag is absent (None: "not
    given", for overrides).  ``--no-flag`` is left out where the parser already has it.
    """
    name = flag.lstrip("-")
    dest = dest or name.replace("-", "_")
    parser.add_argument(flag, dest=dest, nargs="?", const=True, default=default, type=_bool_arg,
                        metavar="BOOL", help=help)
    neg = f"--no-{name}"
    if neg not in getattr(parser, "_option_string_actions", {}):
        parser.add_argument(neg, dest=dest, action="store_const", const=False, help=argparse.SUPPRESS)


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
    low = text.strip().lower()
    if optional and (low in ("none", "null", "") or (low == "auto" and base in (int, float))):
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


def field_comments(cls: type) -> dict[str, str]:
    """``field -> comment`` from the ``name: type = value  # comment`` lines of a dataclass's
    source (and its dataclass bases'; the subclass wins).  Empty where no source is found."""
    out: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            source = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):
            continue
        out.update(_comments_in(source))
    return out


def _comments_in(source: str) -> dict[str, str]:
    """The trailing comment of each annotated assignment at the top of the first class in ``source``."""
    comments: dict[int, str] = {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            comments[tok.start[0]] = tok.string.lstrip("#").strip()
    found: dict[str, str] = {}
    klass = next((n for n in ast.parse(source).body if isinstance(n, ast.ClassDef)), None)
    for node in klass.body if klass else []:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            text = comments.get(node.end_lineno or node.lineno)
            if text:
                found[node.target.id] = text
    return found


def _show_default(value: Any) -> str | None:
    """A field default as typed on the command line (None: nothing worth showing)."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (tuple, list)):
        return ",".join(map(str, value)) or None
    return str(value)


def add_dataclass_flags(parser: argparse.ArgumentParser | Any, cls: type, skip: Iterable[str] = (),
                        helps: dict[str, str] | None = None, title: str | None = None) -> None:
    """Add ``--name`` for each field of dataclass ``cls`` not in ``skip`` (default None: not given).

    A flag's help is ``helps[name]``, else the field's comment in the class source,
    followed by the field's default."""
    hints = typing.get_type_hints(cls)
    helps = {**field_comments(cls), **(helps or {})}
    group = parser.add_argument_group(title) if title else parser
    for f in dataclasses.fields(cls):
        if f.name in skip or not f.init:
            continue
        base, _ = _base(hints[f.name])
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        shown = _show_default(default)
        hlp = helps.get(f.name, "")
        if shown is not None:
            hlp = f"{hlp} (default: {shown})" if hlp else f"default: {shown}"
        hlp = hlp.replace("%", "%%") or None  # argparse formats help with %
        if base is bool:
            add_bool_flag(group, flag, dest=f.name, default=None, help=hlp)
        else:
            group.add_argument(flag, dest=f.name, default=None, metavar=f.name.upper(), help=hlp)


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
