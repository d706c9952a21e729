"""Input checks shared by the datamodules: each bad `data.<key>` value is a one-line ConfigError naming the key."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from models.errors import ConfigError
from models.utils.system import cpu_count


def check_int(key: str, value: Any, minimum: int) -> int:
    """``value`` as an int >= minimum, else a ConfigError naming ``data.<key>``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ConfigError(f"data.{key}={value!r} is invalid: set data.{key} to an integer >= {minimum}")
    return int(value)


def check_choice(key: str, value: Any, choices: Sequence[Any]) -> Any:
    if value not in choices:
        raise ConfigError(f"data.{key}={value!r} is invalid: set data.{key} to one of {', '.join(map(str, choices))}")
    return value


def check_flag(key: str, value: Any, allow_auto: bool = False) -> bool | str:
    if isinstance(value, bool) or (allow_auto and value == "auto"):
        return value
    options = "true, false or auto" if allow_auto else "true or false"
    raise ConfigError(f"data.{key}={value!r} is invalid: set data.{key} to {options}")


def resolve_workers(value: int | str, auto: int) -> int:
    if value == "auto":
        return auto
    return check_int("num_workers", value, 0)


__all__ = ["check_choice", "check_flag", "check_int", "cpu_count", "resolve_workers"]


SHOWN = 3  # unreadable files named in the one-line message; the rest are counted there and listed in full elsewhere


class UnreadableImages(ConfigError):
    """Unreadable image files: the message names the first few and counts the rest; `files` holds every one
    ("<path> (<why>)"), which a run writes to <run dir>/unreadable_images.txt and results.json."""

    LIST = "unreadable_images.txt"

    def __init__(self, files: Sequence[str], fix: str, where: str = "", what: str = "unreadable image(s)") -> None:
        self.files = list(files)
        shown = "; ".join(self.files[:SHOWN])
        more = f" and {len(self.files) - SHOWN} more (all {len(self.files)} listed in the run directory's " \
               f"{self.LIST})" if len(self.files) > SHOWN else ""
        super().__init__(f"{len(self.files)} {what}{where}: {shown}{more}: {fix}")
