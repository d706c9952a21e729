"""`InMemoryImageDataModule`: splits held in RAM as uint8 (N,C,H,W) tensors (digits, CIFAR), served by a
DeviceLoader (batched augmentation on the training device) or by a torchvision DataLoader (per image)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from data.base import SPLITS, BaseImageDataModule
from data.device import DeviceLoader


class TensorImageDataset(Dataset):
    """The conventional per-image path: uint8 (N,C,H,W) + labels through a torchvision transform."""

    def __init__(self, images: Tensor, labels: Tensor, transform: Any) -> None:
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        return self.transform(self.images[i]), int(self.labels[i])


class InMemoryImageDataModule(BaseImageDataModule):
    """Subclasses set ``self.splits = {"train"|"val"|"test": (images, labels)}``, ``mean``/``std`` (0..1 units),
    ``pad``/``flip`` (train augmentation) in ``setup`` via ``_set_splits``."""

    def __init__(self, *, augment: bool, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.augment = bool(augment)
        self.splits: dict[str, tuple[Tensor, Tensor]] = {}
        self.mean: list[float] = []
        self.std: list[float] = []
        self.pad, self.flip = 0, False
        self.val_is_test = False

    def _set_splits(self, splits: dict[str, tuple[Tensor, Tensor]]) -> None:
        self.splits = splits
        self._on_device.clear()

    def setup(self, stage: str | None = None) -> None:
        if not self.splits:
            self._load()

    def _load(self) -> None:
        raise NotImplementedError

    def _split_tensors(self) -> dict[str, tuple[Tensor, Tensor]]:
        self.setup()
        return self.splits

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

    def class_counts(self, split: str) -> list[int]:
        self.setup()
        return torch.bincount(self.splits[split][1], minlength=self.num_classes).tolist()

    @property
    def native_size(self) -> int:
        return int(self.splits["train"][0].shape[-1]) if self.splits else self.image_size

    def _loader(self, split: str) -> DeviceLoader | DataLoader:
        self.setup()
        images, labels = self.splits[split]
        train = split == "train"
        if not self.device_resident():
            return self._dataloader(
                TensorImageDataset(images, labels, self._torchvision_transform(train)), train, self.num_workers(),
                labels
            )
        return self._device_loader(split, train, self._device(), lambda: (images, labels), mean=self.mean,
                                   std=self.std, pad=self.pad if self.augment else 0,
                                   flip=self.flip and self.augment, out_size=self.image_size)

    def _describe(self) -> dict[str, Any]:
        return {"native_size": self.native_size, **{f"{s}_size": len(self.splits[s][1]) for s in SPLITS},
                "val_is_test": self.val_is_test, "augment": self.augment,
                "augment_pad": self.pad if self.augment else 0, "augment_flip": self.flip and self.augment,
                "mean": [round(m, 4) for m in self.mean], "std": [round(s, 4) for s in self.std],
                "loader": "DeviceLoader" if self.device_resident() else "DataLoader"}
