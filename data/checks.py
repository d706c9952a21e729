"""What the datamodules share beyond their declared keys (data/keys.py): worker counts and the list of unreadable
images a failed run keeps."""

from __future__ import annotations

from collections.abc import Sequence

from models.errors import ConfigError
from models.utils.system import cpu_count


def resolve_workers(value: int | str, auto: int) -> int:
    return auto if value == "auto" else int(value)


__all__ = ["cpu_count", "resolve_workers"]


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
