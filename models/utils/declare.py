"""Declared settings: a setting is a dataclass field whose type hint says what it takes, checked by pydantic.

A hint is plain typing plus annotated-types constraints (what pydantic validates): `Annotated[int, Ge(1)]`,
`Annotated[float, Interval(ge=0, lt=1)]`, `Literal["sgd", "adamw"]`, unions, `list[...]`, and `Says("...")` to name
a string's form in words. `check(path, value, hint)` validates one value (pydantic, strict: no 1 for true, no
"5" for 5) and raises a one-line ConfigError naming the key and what it takes, worded from the hint itself
(`describe`): `optim.momentum=1.5 is not valid: use a number in [0, 1)`. `check_fields(obj, prefix)` does it for
every field of a dataclass instance, which is how the classes holding settings (NetSpec, OptimConfig, ...) check
themselves; models/train/keys.py walks a whole config with the same `check`. Cross-field rules stay with the code
they protect.
"""

from __future__ import annotations

import functools
import math
import types
import typing
from dataclasses import dataclass, fields
from typing import Annotated, Any, Literal, Union

import annotated_types as at
from pydantic import AllowInfNan, BeforeValidator, TypeAdapter, ValidationError

from models.errors import ConfigError


@dataclass(frozen=True)
class Says:
    """What a constrained string is, in words ("a time DD:HH:MM:SS (e.g. 00:12:00:00)")."""

    words: str


def _numbers_to_str(value: Any) -> Any:
    return str(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value


# A name or path: `experiment=2024` reaches us as an int, a name all the same.
Text = Annotated[str, BeforeValidator(_numbers_to_str)]
Number = Annotated[float, AllowInfNan(False)]  # finite; an integer is a number too
Count = Annotated[int, at.Ge(0)]
Positive = Annotated[int, at.Ge(1)]


def interval(ge: float | None = None, gt: float | None = None, le: float | None = None, lt: float | None = None
             ) -> Any:
    """A finite number in the given bounds."""
    return Annotated[float, AllowInfNan(False), at.Interval(ge=ge, gt=gt, le=le, lt=lt)]


# ------------------------------------------------------------------ checking
@functools.cache
def _adapter(hint: Any) -> TypeAdapter:
    return TypeAdapter(hint)


def accepts(hint: Any, value: Any) -> bool:
    """Whether a setting typed `hint` takes `value` (as YAML or the command line give it)."""
    if hint is Any:
        return True
    # code passes tuples where YAML and the command line give lists: either one is the same list of values
    for candidate in (value, list(value)) if isinstance(value, (tuple, list)) else (value,):
        for form in (candidate, tuple(candidate)) if isinstance(candidate, list) else (candidate,):
            try:
                _adapter(hint).validate_python(form, strict=True)
                return True
            except ValidationError:
                continue
    return False


def check(path: str, value: Any, hint: Any) -> None:
    """Raise the one-line ConfigError for `path=value` when its hint does not take it."""
    if not accepts(hint, value):
        shown = list(value) if isinstance(value, tuple) else value  # as YAML and the command line write it
        raise ConfigError(f"{path}={shown!r} is not valid: {advice(hint)}")


def check_fields(obj: Any, prefix: str) -> None:
    """Check every field of the dataclass instance `obj` against its own type hint (`prefix`.<field> in messages)."""
    hints = typing.get_type_hints(type(obj), include_extras=True)
    for f in fields(obj):
        check(f"{prefix}.{f.name}", getattr(obj, f.name), hints[f.name])


# ------------------------------------------------------------------ in words
def arms(hint: Any) -> tuple[Any, ...]:
    """The alternatives of a union, nested unions flattened (a non-union: itself)."""
    if typing.get_origin(hint) in (Union, types.UnionType):
        return tuple(a for arm in typing.get_args(hint) for a in arms(arm))
    return (hint,)


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def _bounds(marks: list[Any]) -> str:
    low = high = None
    for mark in marks:
        for kind in ("ge", "gt", "le", "lt"):
            value = getattr(mark, kind, None)
            if value is None or (isinstance(value, float) and math.isinf(value)):
                continue
            if kind in ("ge", "gt"):
                low = (kind, value)
            else:
                high = (kind, value)
    if low and high:
        left, right = "(" if low[0] == "gt" else "[", ")" if high[0] == "lt" else "]"
        return f"in {left}{_num(low[1])}, {_num(high[1])}{right}"
    if low:
        return f"{'>' if low[0] == 'gt' else '>='} {_num(low[1])}"
    if high:
        return f"{'<' if high[0] == 'lt' else '<='} {_num(high[1])}"
    return ""


def describe(hint: Any) -> str:
    """What a setting typed `hint` takes, in words: 'an integer >= 1', 'true or false', 'one of sgd, adamw'."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is type(None):
        return "null"
    if origin is Annotated:
        base, *marks = args
        said = next((m.words for m in marks if isinstance(m, Says)), None)
        if said:
            return said
        if typing.get_origin(base) is list and any(isinstance(m, at.Len) for m in marks):
            size = next(m.min_length for m in marks if isinstance(m, at.Len))
            return f"a list of {size} {_plural(describe(typing.get_args(base)[0]))}"
        bounds = _bounds(marks)
        return f"{describe(base)} {bounds}" if bounds else describe(base)
    if origin in (Union, types.UnionType):
        words = [w for arm in args if arm is not type(None) for w in _words(arm)]
        words = list(dict.fromkeys(words)) + (["null"] if type(None) in args else [])
        return ", ".join(words[:-1]) + f" or {words[-1]}" if len(words) > 1 else words[0]
    if origin is Literal:
        return "one of " + ", ".join(_literal(a) for a in args)
    if origin is list:
        return f"a list of {_plural(describe(args[0]))}"
    if origin is tuple:
        return f"a list of {_plural(describe(args[0]))}"
    if origin is dict:
        return "a group of keys"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string", Any: "any value"}[hint]


def advice(hint: Any) -> str:
    """The fix half of the message: 'choose one of ...' for choices, 'use <what it takes>' otherwise."""
    if all(a is bool or a is type(None) or typing.get_origin(a) is Literal for a in arms(hint)):
        return "choose one of " + ", ".join(dict.fromkeys(w for a in arms(hint) for w in _words(a)))
    return f"use {describe(hint)}"


def choices(hint: Any) -> tuple[Any, ...]:
    """The values a `Literal` hint (possibly Annotated) allows."""
    if typing.get_origin(hint) is Annotated:
        hint = typing.get_args(hint)[0]
    return typing.get_args(hint) if typing.get_origin(hint) is Literal else ()


def _words(hint: Any) -> list[str]:
    """The alternatives a type offers, one word each where it is a choice (true, false, auto, null)."""
    if hint is bool:
        return ["true", "false"]
    if hint is type(None):
        return ["null"]
    if typing.get_origin(hint) is Literal:
        return [_literal(a) for a in typing.get_args(hint)]
    return [describe(hint)]


def _literal(value: Any) -> str:
    return {True: "true", False: "false"}.get(value, str(value)) if isinstance(value, bool) else str(value)


def _plural(words: str) -> str:
    for one, many in (("an integer", "integers"), ("a number", "numbers"), ("a string", "strings")):
        if words.startswith(one):
            return many + words[len(one):]
    return words
