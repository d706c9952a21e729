"""Image files: decoding with one-line errors naming the file, a cheap integrity scan, listing a class folder, and
the per-image Dataset of the uncached folder path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset
from torchvision.datasets.folder import IMG_EXTENSIONS

from models.errors import ConfigError

_FIX_CORRUPT = "delete or replace the file (data.verify=true scans every image before training)"


class CorruptImageError(ConfigError):
    """A ConfigError that stays one clean line when a DataLoader worker re-raises it with its traceback."""

    def __init__(self, message: str) -> None:
        marker = f"{type(self).__name__}: "
        if message.startswith("Caught ") and marker in message:  # torch's ExceptionWrapper.reraise format
            message = message.rsplit(marker, 1)[1]
        super().__init__(message)


def is_image(path: Path) -> bool:
    return path.suffix.lower() in IMG_EXTENSIONS and not path.name.startswith(".")


def load_rgb(path: Path) -> Image.Image:
    """Decode fully now, so truncated/corrupt files fail here with their name, not deep inside a transform."""
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise CorruptImageError(f"cannot read image {path} ({type(e).__name__}: {e}): {_FIX_CORRUPT}") from None


def scan_image(path: Path) -> str | None:
    """Cheap integrity check: header parse + end-of-image marker; full decode only for suspicious files."""
    try:
        size = path.stat().st_size
        if size == 0:
            return "empty file"
        with Image.open(path) as im:
            fmt = im.format
        with open(path, "rb") as f:
            f.seek(max(0, size - 64))
            tail = f.read()
        if (fmt == "JPEG" and b"\xff\xd9" not in tail) or (fmt == "PNG" and b"IEND" not in tail):
            with Image.open(path) as im:
                im.load()  # raises on real truncation; some valid files carry trailing bytes
        return None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        return f"{type(e).__name__}: {e}"


def list_images(folder: Path) -> list[Path]:
    """All images under ``folder`` (recursive, sorted); a missing or image-less class folder is a ConfigError."""
    if not folder.is_dir():
        raise ConfigError(f"class folder {folder} not found: create it with images or drop the class via data.classes")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and is_image(p))
    if not files:
        raise ConfigError(
            f"class folder {folder} has no images ({' '.join(IMG_EXTENSIONS)}):"
            " add images or drop the class via data.classes"
        )
    return files


class ImageFileDataset(Dataset):
    def __init__(self, samples: list[tuple[Path, int]], transform: Any) -> None:
        self.samples, self.transform = samples, transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        path, label = self.samples[i]
        return self.transform(load_rgb(path)), label
