"""Types of configuration values, checked and described in words: `accepts(hint, value)` says whether a value (as
YAML or the command line give it) fits a type hint, `describe(hint)` what the hint takes ('an integer >= 1', 'one of
sgd, adamw'), `advice(hint)` the fix half of an error message. Hints are plain Python typing: bool, int, float, str,
None, Literal, unions, list/tuple/dict, and `Annotated` with a `Range` (bounds) or a `Pattern` (a string's form).
models/train/keys.py types every key of the training config with them."""

from __future__ import annotations

import math
import re
import types
import typing
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union


@dataclass(frozen=True)
class Range:
    """Bounds of a number; `open_max`: the maximum itself is excluded."""

    min: float | None = None
    max: float | None = None
    open_min: bool = False
    open_max: bool = False

    def holds(self, value: float) -> bool:
        low = self.min is None or (value > self.min if self.open_min else value >= self.min)
        high = self.max is None or (value < self.max if self.open_max else value <= self.max)
        return low and high and math.isfinite(value)

    def describe(self) -> str:
        low = None if self.min is None else f"{'>' if self.open_min else '>='} {_num(self.min)}"
        high = None if self.max is None else f"{'<' if self.open_max else '<='} {_num(self.max)}"
        if low and high:
            left, right = "(" if self.open_min else "[", ")" if self.open_max else "]"
            return f"in {left}{_num(self.min)}, {_num(self.max)}{right}"
        return low or high or ""


@dataclass(frozen=True)
class Pattern:
    """A string (never a number) matching `regex`; `words` say what it is."""

    regex: str
    words: str


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def arms(hint: Any) -> tuple[Any, ...]:
    """The alternatives of a union, nested unions flattened (a non-union: itself)."""
    if typing.get_origin(hint) in (Union, types.UnionType):
        return tuple(a for arm in typing.get_args(hint) for a in arms(arm))
    return (hint,)


def accepts(hint: Any, value: Any) -> bool:
    """Whether a key typed `hint` accepts `value` (as YAML / the command line give it)."""
    if hint is Any:
        return True
    if hint is type(None) or hint is None:
        return value is None
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Annotated:
        base, *marks = args
        if not accepts(base, value):
            return False
        for mark in marks:
            if isinstance(mark, Range) and not mark.holds(float(value)):
                return False
            if isinstance(mark, Pattern) and not (isinstance(value, str) and re.fullmatch(mark.regex, value)):
                return False
        return True
    if origin in (Union, types.UnionType):
        return any(accepts(arm, value) for arm in args)
    if origin is Literal:
        return any(value == a and type(value) is type(a) for a in args)
    if origin is list:
        return isinstance(value, (list, tuple)) and all(accepts(args[0], v) for v in value)
    if origin is tuple:
        return isinstance(value, (list, tuple)) and len(value) == len(args) and all(map(accepts, args, value))
    if origin is dict:
        return isinstance(value, dict) and all(isinstance(k, str) and accepts(args[1], v) for k, v in value.items())
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:  # `experiment=2024` reaches us as an int: a name all the same
        return isinstance(value, (str, int, float)) and not isinstance(value, bool)
    raise TypeError(f"models.utils.typed cannot check the type {hint!r}")


def describe(hint: Any) -> str:
    """What a key typed `hint` takes, in words: 'an integer >= 1', 'true or false', 'one of sgd, adamw'."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is type(None):
        return "null"
    if origin is Annotated:
        base, *marks = args
        words = describe(base)
        for mark in marks:
            if isinstance(mark, Range):
                words = f"{words} {mark.describe()}"
            if isinstance(mark, Pattern):
                words = mark.words
        return words
    if origin in (Union, types.UnionType):
        words = [w for arm in args if arm is not type(None) for w in _words(arm)]
        words = list(dict.fromkeys(words)) + (["null"] if type(None) in args else [])
        return ", ".join(words[:-1]) + f" or {words[-1]}" if len(words) > 1 else words[0]
    if origin is Literal:
        return "one of " + ", ".join(_literal(a) for a in args)
    if origin is list:
        return f"a list of {_plural(describe(args[0]))}"
    if origin is tuple:
        return f"a list of {len(args)} {_plural(describe(args[0]))}"
    if origin is dict:
        return "a group of keys"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string", Any: "any value"}[hint]


def advice(hint: Any) -> str:
    """The fix half of the message: 'choose one of ...' for choices, 'use <what it takes>' otherwise."""
    if all(a is bool or a is type(None) or typing.get_origin(a) is Literal for a in arms(hint)):
        return "choose one of " + ", ".join(dict.fromkeys(w for a in arms(hint) for w in _words(a)))
    return f"use {describe(hint)}"


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
