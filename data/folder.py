"""Image-folder datasets: generic ImageFolder trees, Tiny-ImageNet and Imagenette/Imagewoof.

Splits (select on val, report on a held-out test): a tree with ``test/`` uses train/, val/ and test/ as they are.
A tree without one (Imagenette, most ImageNet subsets, Tiny-ImageNet whose test/ is unlabelled) keeps its ``val/``
folder as the held-out test and carves a stratified, seeded validation split out of ``train/`` (``val_size``: "auto" =
10%, a fraction, or a count; recorded like CIFAR's 45k/5k). ``val_size=0`` is the opt-out: ``val/`` both selects the
checkpoint and is reported as test, labelled ``val_is_test`` in every record and caveated in every summary.

One preprocessing for both input paths (`data.images.base_image`): resize the shorter side to S*256/224, centre-crop
that square; then per batch, on the training device, a random S crop + flip (train) or the centre S crop (eval) and
ImageNet normalisation (`data.device.DeviceLoader`). ``cache=false`` decodes in DataLoader workers; ``cache=true``
decodes every image once into a uint8 memmap keyed by content (`data.cache`) and serves batches from it (from the
accelerator when it fits there: ``device_resident``). The two paths give identical tensors for the same image.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torchvision.datasets import Imagenette

from data import cache as image_cache
from data.base import SPLITS, BaseImageDataModule
from data.checks import UnreadableImages, cpu_count
from data.device import DeviceLoader, FileSource
from data.folder_tree import FolderTree, Samples
from data.images import BaseImageDataset, base_image, base_side, scan_image
from data.keys import Folder as FolderKeys
from data.keys import check_args
from data.splits import stratified_split
from models.errors import ConfigError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
AUTO_VAL_FRACTION = 0.1


class ImageFolderDataModule(BaseImageDataModule):
    """Folder datasets (``layout``) at ``root``; optional class subset (``classes`` wnids, or the first
    ``num_classes_subset`` sorted classes). ``batch_size`` is per device. ``num_workers="auto"`` = min(8, CPUs)
    decoding workers without the cache. ``verify=True`` scans every image up front unless the cache is used, whose
    build decodes (and names) every unreadable image anyway."""

    def __init__(self, root: str | None = None, layout: str = "imagefolder", classes: list[str] | None = None,
                 num_classes_subset: int | None = None, image_size: int = 224, batch_size: int = 64,
                 num_workers: int | str = "auto", seed: int = 0, val_size: int | float | str = "auto",
                 download: bool = False, verify: bool = True, cache: bool = False, cache_dir: str | None = None,
                 device_resident: bool | str = "auto", imagenette_size: str = "160px", name: str | None = None,
                 pad_eval: bool = False) -> None:
        check_args(FolderKeys, locals())
        super().__init__(image_size=image_size, batch_size=batch_size, num_workers=num_workers, seed=seed,
                         device_resident=device_resident, pad_eval=pad_eval)
        self.save_hyperparameters()
        self.layout = layout
        self.name = name or layout
        if root is None:
            raise ConfigError("data.root is not set: set data.root=<dir with train/ and val/>")
        self.download = bool(download)
        if self.download and layout != "imagenette":
            raise ConfigError(f"data.download=true is not available for layout {layout}: put the files under "
                              "data.root and set data.download=false")
        self.imagenette_size = imagenette_size
        self.verify, self.cache = bool(verify), bool(cache)
        self.cache_dir_setting = cache_dir
        if self.device_resident_setting is True and not self.cache:
            raise ConfigError("data.device_resident=true needs data.cache=true for folder datasets: set "
                              "data.cache=true")
        self.tree = FolderTree(Path(root).expanduser(), layout, *self._class_selection(classes, num_classes_subset),
                               self.imagenette_size, bool(self.download))
        self.val_size_setting = val_size
        self.base_size = base_side(self.image_size)  # 224 -> 256: what is cached / decoded before the crop
        self.files: dict[str, Samples] = {}  # folder -> (path, label)
        self.splits: dict[str, tuple[str, Tensor | None]] = {}  # split -> (folder, positions in it or all)
        self.cached: dict[str, tuple[Tensor, Tensor]] = {}  # folder -> uint8 images, labels
        self.cache_events: dict[str, str] = {}  # folder -> "built" | "reused" (what this process did first)
        self._scanned = False

    @staticmethod
    def _class_selection(classes: Any, num_classes_subset: Any) -> tuple[list[str] | None, int | None]:
        if classes is not None and num_classes_subset is not None:
            raise ConfigError("data.classes and data.num_classes_subset are both set: set only one of them")
        if classes is not None and not classes:
            raise ConfigError("data.classes=[] selects no class: set data.classes to a non-empty list of class "
                              "folder names, or drop it")
        return (list(classes) if classes is not None else None), num_classes_subset

    @property
    def root(self) -> Path:
        return self.tree.root

    @property
    def classes(self) -> list[str]:
        return self.tree.classes

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    # -- splits --
    def _index(self) -> dict[str, Samples]:
        if not self.files:
            self.files = self.tree.folders()
            self.splits = self._plan_splits()
        return self.files

    def _plan_splits(self) -> dict[str, tuple[str, Tensor | None]]:
        """split -> (folder, positions): test/ when the tree has one, else val/ held out and val carved from train/."""
        setting, n_train = self.val_size_setting, len(self.files["train"])
        if "test" in self.files:
            if setting != "auto":
                raise ConfigError(f"data.val_size={setting} applies to trees without test/: {self.root} has test/, so "
                                  "val/ selects models and test/ is held out; drop data.val_size")
            return {"train": ("train", None), "val": ("val", None), "test": ("test", None)}
        if setting == 0:  # the opt-out: select on val/ and report it as test (labelled val_is_test)
            return {"train": ("train", None), "val": ("val", None), "test": ("val", None)}
        count = round(n_train * (AUTO_VAL_FRACTION if setting == "auto" else setting)) \
            if isinstance(setting, (str, float)) else setting
        if not 1 <= count < n_train:
            raise ConfigError(f"data.val_size={setting} gives {count} of {n_train} training images for validation: "
                              "choose a size between 1 and the number of training images")
        labels = np.array([y for _, y in self.files["train"]])
        train, val = stratified_split(labels, [n_train - count, count], self.seed)
        return {"train": ("train", torch.from_numpy(train)), "val": ("train", torch.from_numpy(val)),
                "test": ("val", None)}

    @property
    def val_is_test(self) -> bool:
        self._index()
        return self.splits["val"] == self.splits["test"]

    def split_size(self, split: str) -> int:
        self._index()
        folder, positions = self.splits[split]
        return len(self.files[folder]) if positions is None else len(positions)

    def class_counts(self, split: str) -> list[int]:
        self._index()
        folder, positions = self.splits[split]
        labels = np.array([y for _, y in self.files[folder]], dtype=np.int64)
        return np.bincount(labels if positions is None else labels[positions.numpy()],
                           minlength=self.num_classes).tolist()

    # -- Lightning hooks --
    def prepare_data(self) -> None:
        """Download (imagenette), scan images (verify) and build caches: runs on one process per node."""
        if self.layout == "imagenette" and self.download and not self.tree.exists():
            url = Imagenette._ARCHIVES[self.imagenette_size][0]
            try:
                Imagenette(str(self.tree.root_setting), split="train", size=self.imagenette_size, download=True)
            except (OSError, RuntimeError) as e:
                raise ConfigError(
                    f"downloading {url} into data.root={self.tree.root_setting} failed ({type(e).__name__}: {e}): "
                    "extract it under data.root yourself and set data.download=false"
                ) from None
        files = self._index()
        unreadable: list[str] = []
        try:  # every problem of the tree in one pass: the class folders found empty, then every unreadable file
            if self.cache:
                self._load_caches()
            elif self.verify and not self._scanned:
                self.scan(p for samples in files.values() for p, _ in samples)
        except UnreadableImages as e:
            if not self.tree.problems:
                raise
            unreadable = e.files
        self._raise_problems(unreadable)

    def _raise_problems(self, unreadable: Sequence[str] = ()) -> None:
        if not self.tree.problems:
            return
        fix = "fill or drop those classes (data.classes)" + (" and delete or replace the unreadable files"
                                                              if unreadable else "")
        raise UnreadableImages([*self.tree.problems, *unreadable], fix, f" in {self.root}", what="data problem(s)")

    def scan(self, paths: Any) -> None:
        """Check every image cheaply (threads); one ConfigError listing the bad files."""
        paths = list(paths)
        with ThreadPoolExecutor(min(8, cpu_count() * 2)) as pool:
            bad = [(p, why) for p, why in zip(paths, pool.map(scan_image, paths), strict=True) if why]
        if bad:
            raise UnreadableImages([f"{p} ({why})" for p, why in bad],
                                   "delete or replace them (data.verify=false skips this scan)")
        self._scanned = True

    def setup(self, stage: str | None = None) -> None:
        self._index()
        self._raise_problems()  # (prepare_data, which runs first, also names the unreadable files)
        if self.cache and not self.cached:
            self._load_caches()

    # -- cache --
    def cache_dir(self) -> Path:
        return Path(self.cache_dir_setting).expanduser() if self.cache_dir_setting else image_cache.default_cache_dir()

    def _decode(self, path: Path) -> np.ndarray:
        return base_image(path, self.base_size).numpy()

    def _load_caches(self) -> None:
        """Load or build the cache of every folder; unreadable images of all folders are named in one error."""
        unreadable: list[str] = []
        for folder, samples in self._index().items():
            if folder in self.cached:
                continue
            try:
                arr, _, built = image_cache.load_or_build([p for p, _ in samples], self.root / folder,
                                                          self.cache_dir(), self.base_size, self._decode,
                                                          threads=min(8, cpu_count() * 2))
            except UnreadableImages as e:
                unreadable += e.files
                continue
            self.cache_events.setdefault(folder, "built" if built else "reused")
            self.cached[folder] = (torch.from_numpy(arr), torch.tensor([y for _, y in samples], dtype=torch.int64))
        if unreadable:
            raise image_cache.unreadable(unreadable)
        self._on_device.clear()

    # -- loaders --
    def _split_tensors(self) -> dict[str, tuple[Tensor, Tensor]]:
        return self.cached if self.cache else {}

    def _from_tensors(self) -> bool:
        return self.cache  # batches gathered from the cache; without it, workers decode the files

    def _loader(self, split: str) -> DeviceLoader:
        self.setup()
        (folder, positions), train = self.splits[split], split == "train"
        augment = dict(mean=IMAGENET_MEAN, std=IMAGENET_STD, flip=True, crop=self.image_size)
        if self.cache:
            device = self._device() if self.device_resident() else torch.device("cpu")
            return self._device_loader(folder, train, device, lambda: self.cached[folder], positions, **augment)
        samples = self.files[folder]
        dataset = BaseImageDataset([p for p, _ in samples], [y for _, y in samples], self.base_size)
        source = FileSource(dataset, torch.tensor([y for _, y in samples]), (3, self.base_size, self.base_size),
                            self.num_workers(), positions)
        return self._loader_over(source, train, self._device(), **augment)

    def _describe(self) -> dict[str, Any]:
        self._index()
        sources = {"train": "train/", "val": "val/", "test": "test/"}
        val_folder, val_positions = self.splits["val"]
        carved = None if val_positions is None else \
            f"train/ (stratified {len(val_positions)} of {len(self.files['train'])}, seed {self.seed})"
        return {
            "layout": self.layout, "root": str(self.root),
            "classes": ",".join(self.classes) if (self.tree.class_subset or self.tree.num_classes_subset) else "all",
            **{f"{s}_size": self.split_size(s) for s in SPLITS},
            "val_source": carved or sources[val_folder],
            "test_source": sources[self.splits["test"][0]] + (" (also selected the checkpoint)" if self.val_is_test
                                                              else " (held out)"),
            "val_is_test": self.val_is_test, "cache": self.cache, "preprocess_size": self.base_size,
            "cache_dir": str(self.cache_dir()) if self.cache else None,
            "cache_status": ",".join(f"{k}={v}" for k, v in self.cache_events.items()) if self.cache else None,
            "loader": "batched from cache" if self.cache else "DataLoader workers decode, batched augmentation",
        }
