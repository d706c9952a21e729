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
