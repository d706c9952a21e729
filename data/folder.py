"""Image-folder datasets: generic ImageFolder trees, Tiny-ImageNet and Imagenette/Imagewoof.

Splits: ``train/`` trains, ``val/`` selects models, and ``val/`` is also reported as test unless the tree has a
``test/`` split with labelled class folders (describe() says which). Tiny-ImageNet's unlabelled ``test/`` is unused.

Two input paths: the conventional one (PIL decode per image in DataLoader workers, RandomResizedCrop+flip for
train, Resize(S*256/224)+CenterCrop(S) for eval) and ``cache=true``: every image is decoded once into a square
uint8 memmap of side ``int(S*1.143)``; batches are then random-cropped (S) and flipped (train) or center-cropped
(eval) as tensor ops by a DeviceLoader, on the accelerator when the cache fits there (``device_resident``).
"""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader
from torchvision.datasets import Imagenette
from torchvision.transforms import v2

from data import cache as image_cache
from data.base import SPLITS, BaseImageDataModule
from data.checks import check_choice, check_flag, check_int, cpu_count
from data.device import DeviceLoader
from data.images import ImageFileDataset, list_images, load_rgb, scan_image
from models.errors import ConfigError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
LAYOUTS = ("imagefolder", "tinyimagenet", "imagenette")
_IMAGENETTE_DIRS = (
    "imagenette2-160",
    "imagenette2-320",
    "imagenette2",
    "imagewoof2-160",
    "imagewoof2-320",
    "imagewoof2",
)


class ImageFolderDataModule(BaseImageDataModule):
    """Folder datasets (``layout``) at ``root``; optional class subset (``classes`` wnids, or the first
    ``num_classes_subset`` sorted classes).

    ``batch_size`` is per device. ``num_workers="auto"`` = min(8, CPUs). Labels follow the order of ``classes``
    (or the sorted class folders). ``verify=True`` scans every image up front (in prepare_data) unless the cache
    is used, whose build decodes everything anyway.
    """

    def __init__(
        self,
        root: str | None = None,
        layout: str = "imagefolder",
        classes: list[str] | None = None,
        num_classes_subset: int | None = None,
        image_size: int = 224,
        batch_size: int = 64,
        num_workers: int | str = "auto",
        seed: int = 0,
        download: bool = False,
        verify: bool = True,
        cache: bool = False,
        cache_dir: str | None = None,
        device_resident: bool | str = "auto",
        imagenette_size: str = "160px",
        name: str | None = None,
    ) -> None:
        super().__init__(image_size=image_size, batch_size=batch_size, num_workers=num_workers, seed=seed,
                         device_resident=device_resident)
        self.save_hyperparameters()
        self.layout = check_choice("layout", layout, LAYOUTS)
        self.name = name or layout
        if root is None:
            raise ConfigError("data.root is not set: set data.root=<dir with train/ and val/>")
        self.root_setting = Path(root).expanduser()
        self.download = check_flag("download", download)
        if self.download and layout != "imagenette":
            raise ConfigError(
                f"data.download=true is not available for layout {layout}: put the files under data.root and set"
                " data.download=false"
            )
        self.imagenette_size = check_choice("imagenette_size", imagenette_size, list(Imagenette._ARCHIVES))
        self.verify = check_flag("verify", verify)
        self.cache = check_flag("cache", cache)
        self.cache_dir_setting = cache_dir
        if self.device_resident_setting is True and not self.cache:
            raise ConfigError(
                "data.device_resident=true needs data.cache=true for folder datasets: set data.cache=true"
            )
        if classes is not None and num_classes_subset is not None:
            raise ConfigError("data.classes and data.num_classes_subset are both set: set only one of them")
        if classes is not None and (isinstance(classes, str) or not classes):
            raise ConfigError(
                f"data.classes={classes!r} is invalid: set data.classes to a non-empty list of class folder names"
            )
        self.class_subset = list(classes) if classes is not None else None
        self.num_classes_subset = (
            None if num_classes_subset is None else check_int("num_classes_subset", num_classes_subset, 1)
        )
        self.cache_size = int(self.image_size * 1.143)  # 224 -> 256, the usual resize-then-crop ratio
        self.eval_resize = int(self.image_size * 256 / 224)
        self._classes: list[str] | None = None
        self.samples: dict[str, list[tuple[Path, int]]] = {}
        self.cached: dict[str, tuple[Tensor, Tensor]] = {}
        self.cache_events: dict[str, str] = {}  # split -> "built" | "reused"
        self._scanned = False

    # -- locating the tree and its classes --
    @property
    def root(self) -> Path:
        root = self.root_setting
        if self.layout == "imagenette" and not (root / "train").is_dir():
            preferred = Path(Imagenette._ARCHIVES[self.imagenette_size][0]).name.removesuffix(".tgz")
            for sub in (preferred, *_IMAGENETTE_DIRS):
                if (root / sub / "train").is_dir():
                    return root / sub
        if self.layout == "tinyimagenet" and (root / "tiny-imagenet-200" / "train").is_dir():
            return root / "tiny-imagenet-200"
        if not (root / "train").is_dir():
            hint = " or data.download=true" if self.layout == "imagenette" else ""
            raise ConfigError(
                f"data.root={root}/train not found: set data.root=<dir with train/<class>/ and val/>{hint}"
            )
        return root

    @property
    def classes(self) -> list[str]:
        """Selected class folder names (wnids); label i is classes[i]."""
        if self._classes is None:
            if self.layout == "imagenette" and self.download and not self._exists():
                available = sorted(Imagenette._WNID_TO_CLASS)  # known before the download
            else:
                available = self._available_classes()
            if self.class_subset is not None:
                missing = [c for c in self.class_subset if c not in available]
                if missing:
                    raise ConfigError(
                        f"data.classes names {', '.join(missing)} not present in {self.root_setting}/train"
                        f" ({len(available)} classes there, e.g. {', '.join(available[:3])}): fix data.classes"
                    )
                self._classes = list(dict.fromkeys(self.class_subset))
            elif self.num_classes_subset is not None:
                if self.num_classes_subset > len(available):
                    raise ConfigError(
                        f"data.num_classes_subset={self.num_classes_subset} but only {len(available)} classes exist:"
                        " lower data.num_classes_subset"
                    )
                self._classes = available[: self.num_classes_subset]
            else:
                self._classes = available
        return self._classes

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def _exists(self) -> bool:
        try:
            return self.root.is_dir()
        except ConfigError:
            return False

    def _available_classes(self) -> list[str]:
        root = self.root
        wnids = root / "wnids.txt"
        if self.layout == "tinyimagenet" and wnids.is_file():
            return sorted(w.strip() for w in wnids.read_text().split() if w.strip())
        found = sorted(p.name for p in (root / "train").iterdir() if p.is_dir() and not p.name.startswith("."))
        if not found:
            raise ConfigError(f"{root}/train has no class folders: put images in train/<class>/ under data.root")
        return found

    def _index(self) -> dict[str, list[tuple[Path, int]]]:
        """(path, label) lists per split, in a fixed order."""
        if self.samples:
            return self.samples
        root, classes = self.root, self.classes
        samples = {"train": self._folder_split(root / "train", classes)}
        if self.layout == "tinyimagenet":
            samples["val"] = self._tiny_val(root, classes)
        else:
            for split in ("val", "test"):
                if (root / split).is_dir():
                    samples[split] = self._folder_split(root / split, classes)
            if "val" not in samples:
                raise ConfigError(f"{root}/val not found: add val/<class>/ images under data.root (model selection)")
        self.samples = samples
        return samples

    def _folder_split(self, folder: Path, classes: list[str]) -> list[tuple[Path, int]]:
        if self.class_subset is None and self.num_classes_subset is None and folder.name != "train":
            extra = sorted(p.name for p in folder.iterdir() if p.is_dir() and p.name not in classes)
            if extra:  # labels would silently disagree with train's
                raise ConfigError(
                    f"{folder} has class folders {', '.join(extra[:5])} absent from train/: remove them or select"
                    " classes via data.classes"
                )
        return [(p, i) for i, c in enumerate(classes) for p in list_images(folder / c)]

    def _tiny_val(self, root: Path, classes: list[str]) -> list[tuple[Path, int]]:
        ann = root / "val" / "val_annotations.txt"
        if not ann.is_file():
            raise ConfigError(
                f"{ann} not found: set data.root to an extracted tiny-imagenet-200"
                " (with val/images and val/val_annotations.txt)"
            )
        label = {c: i for i, c in enumerate(classes)}
        out, counts = [], dict.fromkeys(classes, 0)
        for line in ann.read_text().splitlines():
            parts = line.split("\t")
            if len(parts) >= 2 and parts[1] in label:
                out.append((root / "val" / "images" / parts[0], label[parts[1]]))
                counts[parts[1]] += 1
        empty = [c for c, n in counts.items() if n == 0]
        if empty:
            raise ConfigError(
                f"{ann} lists no validation images for {', '.join(empty[:5])}: fix the file or drop those classes"
                " via data.classes"
            )
        missing = [p for p, _ in out if not p.is_file()]
        if missing:
            raise ConfigError(
                f"{missing[0]} (listed in {ann}) not found, {len(missing)} missing in all: restore val/images"
            )
        return sorted(out)

    # -- Lightning hooks --
    def prepare_data(self) -> None:
        """Download (imagenette), scan images (verify) and build caches: runs on one process per node."""
        if self.layout == "imagenette" and self.download and not self._exists():
            url = Imagenette._ARCHIVES[self.imagenette_size][0]
            try:
                Imagenette(str(self.root_setting), split="train", size=self.imagenette_size, download=True)
            except (OSError, RuntimeError) as e:
                raise ConfigError(
                    f"downloading {url} into data.root={self.root_setting} failed ({type(e).__name__}: {e}): extract"
                    f" it under data.root yourself and set data.download=false"
                ) from None
        samples = self._index()
        if self.cache:
            self._load_caches()
        elif self.verify and not self._scanned:
            self.scan(p for split in samples.values() for p, _ in split)

    def scan(self, paths: Any) -> None:
        """Check every image cheaply (threads); one ConfigError listing the bad files."""
        paths = list(paths)
        with ThreadPoolExecutor(min(8, cpu_count() * 2)) as pool:
            bad = [(p, why) for p, why in zip(paths, pool.map(scan_image, paths), strict=True) if why]
        if bad:
            first = "; ".join(f"{p} ({why})" for p, why in bad[:3])
            raise ConfigError(
                f"{len(bad)} unreadable image(s): {first}: delete or replace them (data.verify=false skips this scan)"
            )
        self._scanned = True

    def setup(self, stage: str | None = None) -> None:
        self._index()
        if self.cache and not self.cached:
            self._load_caches()

    # -- cache --
    def cache_dir(self) -> Path:
        return Path(self.cache_dir_setting).expanduser() if self.cache_dir_setting else self.root / ".cache"

    def _decode_square(self, path: Path) -> np.ndarray:
        img = load_rgb(path).resize((self.cache_size, self.cache_size), Image.BILINEAR)
        return np.asarray(img).transpose(2, 0, 1)

    def _load_caches(self) -> None:
        selection = hashlib.sha256(",".join(self.classes).encode()).hexdigest()[:8]
        for split, samples in self._index().items():
            files = [p for p, _ in samples]
            arr, _path, built = image_cache.load_or_build(
                files,
                self.root,
                self.cache_dir(),
                f"{self.layout}-{split}-{selection}",
                self.cache_size,
                self._decode_square,
                threads=min(8, cpu_count() * 2),
            )
            self.cache_events[split] = "built" if built else "reused"
            self.cached[split] = (torch.from_numpy(arr), torch.tensor([y for _, y in samples], dtype=torch.int64))
        self._on_device.clear()

    # -- loaders --
    def _split_tensors(self) -> dict[str, tuple[Tensor, Tensor]]:
        return self.cached if self.cache else {}

    def _uses_device_loader(self) -> bool:
        return self.cache  # the cache is served by a DeviceLoader, on the accelerator or from host memory

    def transform(self, train: bool) -> v2.Compose:
        size = self.image_size
        head = (
            [v2.RandomResizedCrop(size, antialias=True), v2.RandomHorizontalFlip()]
            if train
            else [v2.Resize(self.eval_resize, antialias=True), v2.CenterCrop(size)]
        )
        return v2.Compose(
            [*head, v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
        )

    def _split_for(self, split: str) -> str:
        return split if split in self._index() else "val"  # no test/: test = val

    def _loader(self, split: str) -> DeviceLoader | DataLoader:
        self.setup()
        split, train = self._split_for(split), split == "train"
        if not self.cache:
            return self._dataloader(
                ImageFileDataset(self.samples[split], self.transform(train)), train, self.num_workers()
            )
        device = self._device() if self.device_resident() else torch.device("cpu")
        return self._device_loader(split, train, device, lambda: self.cached[split], mean=IMAGENET_MEAN,
                                   std=IMAGENET_STD, flip=True, crop=self.image_size)

    def _describe(self) -> dict[str, Any]:
        samples = self._index()
        return {
            "layout": self.layout,
            "root": str(self.root),
            "classes": ",".join(self.classes) if (self.class_subset or self.num_classes_subset) else "all",
            **{f"{s}_size": len(samples[self._split_for(s)]) for s in SPLITS},
            "test_source": "test" if "test" in samples else "val (no test/ split)",
            "val_is_test": "test" not in samples,
            "cache": self.cache,
            "cache_size": self.cache_size if self.cache else None,
            "cache_dir": str(self.cache_dir()) if self.cache else None,
            "cache_status": ",".join(f"{k}={v}" for k, v in self.cache_events.items()) if self.cache else None,
            "loader": "batched from cache" if self.cache else "DataLoader (PIL per image)",
        }
