"""Shared pieces of the datamodules: input checks, worker sizing, splits, and the in-memory base class.

``batch_size`` is always per device (per DDP rank): the global batch is batch_size x world_size.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from data.device import DeviceLoader
from models.errors import ConfigError

SPLITS = ("train", "val", "test")


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


def cpu_count() -> int:
    """CPUs this process may use (respects affinity / cgroup pinning where the OS exposes it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def resolve_workers(value: int | str, auto: int) -> int:
    if value == "auto":
        return auto
    return check_int("num_workers", value, 0)


def stratified_split(labels: np.ndarray, sizes: Sequence[int], seed: int) -> list[np.ndarray]:
    """Split indices into len(sizes) parts of exactly those sizes, each class spread proportionally (+-1).

    Samples are ordered by (class, seeded shuffle) and each part is carved out by systematic sampling, which
    gives exact part sizes and per-class proportions without any class needing a minimum count.
    """
    labels = np.asarray(labels)
    if sum(sizes) != len(labels):
        raise ValueError(f"split sizes {list(sizes)} do not add up to {len(labels)}")
    rng = np.random.default_rng(seed)
    rest = np.lexsort((rng.random(len(labels)), labels))  # grouped by class, shuffled within
    parts: list[np.ndarray] = []
    for size in sizes[:-1]:
        n = len(rest)
        pick = np.zeros(n, dtype=bool)
        if size:
            pick[(np.arange(size) * n) // size + (n // size) // 2] = True  # evenly spaced positions
        parts.append(np.sort(rest[pick]))
        rest = rest[~pick]
    parts.append(np.sort(rest))
    return parts


def channel_stats(images: Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean/std in 0..1 units of a uint8 (N,C,H,W) tensor."""
    x = images.to(torch.float64).div_(255).transpose(0, 1).reshape(images.shape[1], -1)
    return x.mean(1).tolist(), x.std(1).tolist()


class TensorImageDataset(Dataset):
    """The conventional per-image path: uint8 (N,C,H,W) + labels through a torchvision transform."""

    def __init__(self, images: Tensor, labels: Tensor, transform: Any) -> None:
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        return self.transform(self.images[i]), int(self.labels[i])


class BaseImageDataModule(pl.LightningDataModule):
    """Common attributes (name, num_classes, in_channels, image_size, batch_size per device) and trainer helpers."""

    in_channels = 3

    def __init__(self, *, image_size: int, batch_size: int, num_workers: int | str, seed: int) -> None:
        super().__init__()
        self.image_size = check_int("image_size", image_size, 8)
        self.batch_size = check_int("batch_size", batch_size, 1)
        if num_workers != "auto":
            check_int("num_workers", num_workers, 0)
        self.num_workers_setting = num_workers
        self.seed = check_int("seed", seed, 0)

    # -- trainer context (cpu / rank 0 of 1 when used standalone) --
    def _device(self) -> torch.device:
        return self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")

    def _rank_world(self) -> tuple[int, int]:
        return (self.trainer.global_rank, self.trainer.world_size) if self.trainer is not None else (0, 1)

    def _epoch_fn(self):
        trainer = self.trainer
        return (lambda: trainer.current_epoch) if trainer is not None else None

    # -- mid-epoch resume: the train DeviceLoader's position goes into every checkpoint through the datamodule's
    # state (Lightning's own stateful-loader restore runs before the checkpoint's loops are loaded whenever
    # configure_optimizers asks for trainer.estimated_stepping_batches, as ours does, so it never fires) --
    def _track_train(self, loader: DeviceLoader | DataLoader) -> DeviceLoader | DataLoader:
        self._train_loader = loader
        pending = getattr(self, "_train_resume", None)
        if pending and isinstance(loader, DeviceLoader):
            loader.load_state_dict(pending)
            self._train_resume = None
        return loader

    def state_dict(self) -> dict[str, Any]:
        loader = getattr(self, "_train_loader", None)
        return {"train_loader": loader.state_dict()} if isinstance(loader, DeviceLoader) else {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._train_resume = state_dict.get("train_loader")
        loader = getattr(self, "_train_loader", None)
        if self._train_resume and isinstance(loader, DeviceLoader):  # already built: its pass has not started yet
            loader.load_state_dict(self._train_resume)
            self._train_resume = None

    def _progress_fn(self, train: bool):
        """Batches of the current epoch already trained on (a DeviceLoader's checkpointed resume position)."""
        trainer = self.trainer
        if trainer is None or not train:
            return None
        return lambda: trainer.fit_loop.epoch_loop.batch_progress.current.processed

    def _shuffle(self, train: bool) -> bool:
        # Lightning's overfit_batches wants a fixed train order; it can only switch that off for DataLoaders itself
        return train and not (self.trainer is not None and self.trainer.overfit_batches > 0)

    def _dataloader(self, dataset: Dataset, train: bool, workers: int) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=train,
            drop_last=train,
            num_workers=workers,
            pin_memory=self._device().type == "cuda",
            persistent_workers=workers > 0,
            generator=torch.Generator().manual_seed(self.seed),  # seeded order + worker seeds
        )


    # -- the loaders: subclasses provide `_loader(split)` and keep device copies in `_on_device` --
    def _loader(self, split: str) -> DeviceLoader | DataLoader:
        raise NotImplementedError

    def _device_loader(self, split: str, train: bool, device: torch.device,
                       host_split: Callable[[], tuple[Tensor, Tensor]], **augment: Any) -> DeviceLoader:
        """A DeviceLoader over `split`, copied to `device` once and shared by every loader built from it."""
        key = (split, str(device))
        if key not in self._on_device:
            images, labels = host_split()
            self._on_device[key] = (images.to(device), labels.to(device))
        rank, world = self._rank_world()
        return DeviceLoader(*self._on_device[key], self.batch_size, train=train, seed=self.seed, device=device,
                            rank=rank, world_size=world, epoch_fn=self._epoch_fn(), shuffle=self._shuffle(train),
                            progress_fn=self._progress_fn(train), **augment)

    def train_dataloader(self) -> DeviceLoader | DataLoader:
        return self._track_train(self._loader("train"))

    def val_dataloader(self) -> DeviceLoader | DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DeviceLoader | DataLoader:
        return self._loader("test")

    def teardown(self, stage: str | None = None) -> None:
        self._on_device.clear()  # frees the accelerator copies; host splits stay for a later fit/test


class InMemoryImageDataModule(BaseImageDataModule):
    """Splits held in RAM as uint8 (N,C,H,W) tensors, served by a DeviceLoader or a DataLoader.

    Subclasses set ``self.splits = {"train"|"val"|"test": (images, labels)}``, ``mean``/``std`` (0..1 units),
    ``pad``/``flip`` (train augmentation) in ``setup`` via ``_set_splits``.
    """

    def __init__(self, *, device_resident: bool | str, augment: bool, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.device_resident_setting = check_flag("device_resident", device_resident, allow_auto=True)
        self.augment = check_flag("augment", augment)
        self.splits: dict[str, tuple[Tensor, Tensor]] = {}
        self.mean: list[float] = []
        self.std: list[float] = []
        self.pad, self.flip = 0, False
        self.val_is_test = False
        self._on_device: dict[tuple[str, str], tuple[Tensor, Tensor]] = {}

    def _set_splits(self, splits: dict[str, tuple[Tensor, Tensor]]) -> None:
        self.splits = splits
        self._on_device.clear()

    def setup(self, stage: str | None = None) -> None:  # noqa: D102 - subclasses load in _load()
        if not self.splits:
            self._load()

    def _load(self) -> None:
        raise NotImplementedError

    def device_resident(self) -> bool:
        """Resolve ``device_resident``: "auto" = on unless the splits would take > 25% of free accelerator memory."""
        if self.device_resident_setting != "auto":
            return bool(self.device_resident_setting)
        device = self._device()
        if device.type != "cuda":
            return True  # the data already lives in host memory
        nbytes = sum(x.numel() + 8 * len(y) for x, y in self.splits.values())
        free, _ = torch.cuda.mem_get_info(device)
        return nbytes <= 0.25 * free

    def num_workers(self) -> int:
        """DataLoader workers: "auto" = 0 for device-resident data, else min(8, CPUs)."""
        auto = 0 if self.device_resident() else min(8, cpu_count())
        return resolve_workers(self.num_workers_setting, auto)

    def _torchvision_transform(self, train: bool) -> v2.Compose:
        """The per-image equivalent of DeviceLoader.transform (same crop/flip semantics)."""
        ops: list[Any] = []
        if train and self.augment and self.pad:
            ops.append(v2.RandomCrop(self.native_size, padding=self.pad))
        if train and self.augment and self.flip:
            ops.append(v2.RandomHorizontalFlip(0.5))
        ops.append(v2.ToDtype(torch.float32, scale=True))
        if self.image_size != self.native_size:
            ops.append(v2.Resize(self.image_size, antialias=self.image_size < self.native_size))
        ops.append(v2.Normalize(self.mean, self.std))
        return v2.Compose(ops)

    @property
    def native_size(self) -> int:
        return int(self.splits["train"][0].shape[-1]) if self.splits else self.image_size

    def _loader(self, split: str) -> DeviceLoader | DataLoader:
        self.setup()
        images, labels = self.splits[split]
        train = split == "train"
        if not self.device_resident():
            return self._dataloader(
                TensorImageDataset(images, labels, self._torchvision_transform(train)), train, self.num_workers()
            )
        return self._device_loader(split, train, self._device(), lambda: (images, labels), mean=self.mean,
                                   std=self.std, pad=self.pad if self.augment else 0,
                                   flip=self.flip and self.augment, out_size=self.image_size)


    def describe(self) -> dict[str, Any]:
        """Flat record of what was loaded, for run records."""
        self.prepare_data()
        self.setup()
        record: dict[str, Any] = {
            "name": self.name,
            "num_classes": self.num_classes,
            "in_channels": self.in_channels,
            "image_size": self.image_size,
            "native_size": self.native_size,
            "batch_size_per_device": self.batch_size,
            **{f"{s}_size": len(self.splits[s][1]) for s in SPLITS},
            "val_is_test": self.val_is_test,
            "augment": self.augment,
            "augment_pad": self.pad if self.augment else 0,
            "augment_flip": self.flip and self.augment,
            "mean": [round(m, 4) for m in self.mean],
            "std": [round(s, 4) for s in self.std],
            "loader": "DeviceLoader" if self.device_resident() else "DataLoader",
            "device_resident": self.device_resident(),
            "num_workers": self.num_workers(),
            "seed": self.seed,
        }
        return record
