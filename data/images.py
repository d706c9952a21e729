"""Image files: decoding with one-line errors naming the file, a cheap integrity scan, listing a class folder, and
the one preprocessing definition (`base_image`) that the cached and the uncached folder paths share."""

from __future__ import annotations

from pathlib import Path

from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset
from torchvision.datasets.folder import IMG_EXTENSIONS
from torchvision.transforms.v2 import functional as TF

from models.errors import ConfigError

_FIX_CORRUPT = "delete or replace the file"


class CorruptImageError(ConfigError):
    """A ConfigError that stays one clean line when a DataLoader worker re-raises it with its traceback."""

    def __init__(self, message: str) -> None:
        marker = f"{type(self).__name__}: "
        if message.startswith("Caught ") and marker in message:  # torch's ExceptionWrapper.reraise format
            message = message.rsplit(marker, 1)[1]
        super().__init__(message)


def is_image(path: Path) -> bool:
    return path.suffix.lower() in IMG_EXTENSIONS and not path.name.startswith(".")


# What a file that only looks like an image often is (a download that saved an error page, a renamed archive).
_SIGNATURES = ((b"%PDF", "a PDF document"), (b"PK\x03\x04", "a zip archive"), (b"\x1f\x8b", "a gzip archive"),
               (b"GIF8", None), (b"\x89PNG", None), (b"\xff\xd8", None))


def what_it_is(path: Path) -> str | None:
    """What a file PIL cannot identify really holds ("an HTML page, not an image"), from its first bytes; None when
    it starts like an image (then it is a damaged one)."""
    try:
        with open(path, "rb") as f:
            head = f.read(512)
    except OSError:
        return None
    if not head:
        return "an empty file"
    text = head.lstrip().lower()
    if text.startswith((b"<!doctype html", b"<html")) or b"<html" in text or b"<head" in text:
        return "an HTML page, not an image"
    if text.startswith(b"<?xml") or text.startswith(b"<svg"):
        return "an XML/SVG document, not a bitmap image"
    for magic, kind in _SIGNATURES:
        if head.startswith(magic):
            return f"{kind}, not an image" if kind else None
    if all(32 <= b < 127 or b in (9, 10, 13) for b in head):
        return "a text file, not an image"
    return None


def why_unreadable(path: Path, error: BaseException) -> str:
    """The reason a file cannot be used, for people: what it really is, else the decoder's error."""
    return what_it_is(path) or f"{type(error).__name__}: {error}"


def load_rgb(path: Path) -> Image.Image:
    """Decode fully now, so truncated/corrupt files fail here with their name, not deep inside a transform."""
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise CorruptImageError(f"cannot read image {path} ({why_unreadable(path, e)}): {_FIX_CORRUPT}") from None


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
        return why_unreadable(path, e)


def list_images(folder: Path, problems: list[str] | None = None) -> list[Path]:
    """All images under ``folder`` (recursive, sorted). A missing or image-less class folder is a ConfigError, or,
    given ``problems``, one entry there (and no images): the caller reports every problem of the tree at once."""
    if not folder.is_dir():
        problem = f"{folder}/ (class folder not found: create it with images or drop the class via data.classes)"
    elif not (files := sorted(p for p in folder.rglob("*") if p.is_file() and is_image(p))):
        problem = (f"{folder}/ (a class folder with no images {' '.join(IMG_EXTENSIONS)}: add images or drop the "
                   "class via data.classes)")
    else:
        return files
    if problems is None:
        raise ConfigError(problem)
    problems.append(problem)
    return []


def base_side(image_size: int) -> int:
    """Side of the stored base image for crops of ``image_size``: 224 -> 256, ImageNet's resize-then-crop ratio."""
    return int(image_size * 256 / 224)


def base_image(path: Path, side: int) -> Tensor:
    """THE preprocessing of an image file, for the cached and the uncached path alike: decode to RGB, resize the
    shorter side to ``side`` (bilinear, antialiased), centre-crop ``side`` x ``side``; uint8 (3, side, side).
    Training then random-crops and flips, evaluation centre-crops (`data.device.DeviceLoader`)."""
    img = load_rgb(path)
    img = TF.center_crop(TF.resize(img, side, interpolation=TF.InterpolationMode.BILINEAR, antialias=True), side)
    return TF.pil_to_tensor(img)


class BaseImageDataset(Dataset):
    """``base_image`` of every file (decoded in DataLoader workers) with its label."""

    def __init__(self, files: list[Path], labels: list[int], side: int) -> None:
        self.files, self.labels, self.side = files, labels, side

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        return base_image(self.files[i], self.side), self.labels[i]
