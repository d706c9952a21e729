"""CIFAR-10 / CIFAR-100 from torchvision's on-disk pickles, with a fixed-seed validation split carved from train."""

from __future__ import annotations

import pickle
import socket
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchvision.datasets import CIFAR10, CIFAR100
from torchvision.datasets.utils import check_integrity

from data.in_memory import InMemoryImageDataModule
from data.keys import CIFAR as CIFARKeys
from data.keys import check_args
from data.splits import stratified_split
from models.errors import ConfigError

DOWNLOAD_TIMEOUT_S = 30  # per connect/read: an unreachable host fails in seconds, not after the OS's minutes
_TV = {"cifar10": CIFAR10, "cifar100": CIFAR100}
# Standard per-channel statistics of the CIFAR training sets (0..1 units).
_STATS = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}


def find_cifar_dir(root: str | Path, name: str) -> Path:
    """``root`` may be the folder holding ``cifar-10-batches-py`` / ``cifar-100-python`` or that folder itself."""
    base = _TV[name].base_folder
    root = Path(root).expanduser()
    for candidate in (root / base, root):
        if candidate.name == base and candidate.is_dir():
            return candidate
    raise ConfigError(f"data.root={root / base} not found: set data.root=<dir containing {base}> or data.download=true")


# What a CIFAR pickle may reference: numpy arrays, and bytes as Python 3 writes them at protocol 2. Nothing else is
# ever looked up, so a planted file cannot run code (data.verify=false skips the md5 check, not this one).
_CIFAR_GLOBALS = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                  ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}


class _DataOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _CIFAR_GLOBALS:
            raise pickle.UnpicklingError(f"refused to load {module}.{name} (a CIFAR file holds only arrays and lists)")
        return super().find_class(module, name)


def load_pickle(f: Any) -> Any:
    """pickle.load for CIFAR's files (latin1 for the Python 2 originals), restricted to plain data."""
    return _DataOnlyUnpickler(f, encoding="latin1").load()


def read_batch(path: Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    """One pickled batch -> uint8 (N,3,32,32) and int64 labels; any damage becomes a ConfigError naming the file."""
    label_key = "labels" if name == "cifar10" else "fine_labels"
    fix = f"replace it (delete {path.parent} and set data.download=true) or point data.root at a good copy"
    if not path.is_file():
        raise ConfigError(f"{path} is missing: {fix}")
    try:
        with open(path, "rb") as f:
            entry = load_pickle(f)
        data = np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)  # R, G, B planes
        labels = np.asarray(entry[label_key], dtype=np.int64)
    except (pickle.UnpicklingError, EOFError, ValueError, KeyError, TypeError, AttributeError, IndexError) as e:
        raise ConfigError(f"{path} is corrupt or truncated ({type(e).__name__}: {e}): {fix}") from None
    num_classes = 10 if name == "cifar10" else 100
    if len(labels) != len(data) or (len(labels) and not 0 <= labels.min() <= labels.max() < num_classes):
        raise ConfigError(f"{path} has {len(data)} images but {len(labels)} labels in 0..{num_classes - 1}: {fix}")
    return data, labels


class CIFARDataModule(InMemoryImageDataModule):
    """CIFAR-10/100 (``name``) from ``root``; 45k/5k train/val split by ``seed`` (``val_size=0``: val = test).

    ``verify=True`` checks torchvision's md5 sums (re-encoded copies fail: set ``verify=false``). Train
    augmentation: RandomCrop(32, padding=4) + RandomHorizontalFlip; standard CIFAR mean/std normalisation.
    ``image_size`` != 32 bilinearly resizes batches after augmentation. ``batch_size`` is per device.
    """

    def __init__(
        self,
        name: str = "cifar10",
        root: str | None = None,
        download: bool = False,
        verify: bool = True,
        val_size: int = 5000,
        augment: bool = True,
        image_size: int = 32,
        batch_size: int = 128,
        num_workers: int | str = "auto",
        seed: int = 0,
        device_resident: bool | str = "auto",
        pad_eval: bool = False,
    ) -> None:
        check_args(CIFARKeys, locals())
        super().__init__(
            image_size=image_size,
            batch_size=batch_size,
            num_workers=num_workers,
            seed=seed,
            device_resident=device_resident,
            augment=augment,
            pad_eval=pad_eval,
        )
        self.save_hyperparameters()
        self.name = name
        if root is None:
            raise ConfigError(f"data.root is not set: set data.root=<dir containing {_TV[name].base_folder}>")
        self.root = Path(root).expanduser()
        self.download = bool(download)
        self.verify = bool(verify)
        self.val_size = int(val_size)
        if self.val_size >= 50000:
            raise ConfigError(f"data.val_size={val_size} leaves no training images: set data.val_size below 50000")
        self.num_classes = 10 if name == "cifar10" else 100
        self.mean, self.std = (list(s) for s in _STATS[name])
        self.pad, self.flip = 4, True
        self.val_is_test = self.val_size == 0
        self.classes: list[str] = []

    def prepare_data(self) -> None:
        """Download through torchvision when asked and the folder is not there yet (rank 0 only under DDP)."""
        tv = _TV[self.name]
        if not self.download or (self.root / tv.base_folder).is_dir() or self.root.name == tv.base_folder:
            return
        previous = socket.getdefaulttimeout()
        socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)  # torchvision's urlopen has none: a blackholed network would hang
        try:
            tv(str(self.root), train=True, download=True)
        except (OSError, RuntimeError) as e:  # URLError/HTTPError/timeouts are OSErrors
            raise ConfigError(
                f"downloading {tv.url} into data.root={self.root} failed ({type(e).__name__}: {e}): put"
                f" {tv.base_folder} under data.root yourself and set data.download=false"
            ) from None
        finally:
            socket.setdefaulttimeout(previous)

    def _load(self) -> None:
        tv = _TV[self.name]
        folder = find_cifar_dir(self.root, self.name)
        if self.verify:
            for fname, md5 in tv.train_list + tv.test_list:
                path = folder / fname
                if not path.is_file():
                    raise ConfigError(
                        f"{path} is missing: put the full {tv.base_folder} under data.root or set data.download=true"
                    )
                if not check_integrity(str(path), md5):
                    raise ConfigError(
                        f"checksum mismatch in {path}: if this is a known re-encoded copy set data.verify=false,"
                        f" else delete {folder} and set data.download=true"
                    )
        train = [read_batch(folder / f, self.name) for f, _ in tv.train_list]
        x_train = torch.from_numpy(np.concatenate([x for x, _ in train]))
        y_train = torch.from_numpy(np.concatenate([y for _, y in train]))
        x_test, y_test = (torch.from_numpy(a) for a in read_batch(folder / tv.test_list[0][0], self.name))
        self.classes = self._read_classes(folder / tv.meta["filename"], tv.meta["key"])
        if self.val_size >= len(y_train):
            raise ConfigError(f"data.val_size={self.val_size} >= {len(y_train)} training images: lower data.val_size")
        if self.val_size:
            tr, va = stratified_split(y_train.numpy(), [len(y_train) - self.val_size, self.val_size], self.seed)
            splits = {"train": (x_train[tr], y_train[tr]), "val": (x_train[va], y_train[va])}
        else:  # no held-out split: model selection on test (recorded as val_is_test in describe())
            splits = {"train": (x_train, y_train), "val": (x_test, y_test)}
        self._set_splits({**splits, "test": (x_test, y_test)})

    def _read_classes(self, path: Path, key: str) -> list[str]:
        try:
            with open(path, "rb") as f:
                return list(load_pickle(f)[key])
        except (OSError, pickle.UnpicklingError, EOFError, KeyError, TypeError):
            return [str(i) for i in range(self.num_classes)]  # names are cosmetic; the labels are what count

    def _describe(self) -> dict[str, Any]:
        n = len(self.splits["train"][1]) + (self.val_size if self.val_size else 0)
        val = f"train (stratified {self.val_size} of {n}, seed {self.seed})" if self.val_size else "test_batch"
        test = "test_batch (also selected the checkpoint)" if self.val_is_test else "test_batch (held out)"
        return {**super()._describe(), "root": str(find_cifar_dir(self.root, self.name)), "verify": self.verify,
                "val_source": val, "test_source": test}
