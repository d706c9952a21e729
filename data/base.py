"""`BaseImageDataModule`: what every datamodule shares — common attributes, the trainer context, mid-epoch resume
of the train loader, where batches come from (device-resident tensors or a DataLoader) and the flat `describe()`.

``batch_size`` is always per device (per DDP rank): the global batch is batch_size x world_size.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import lightning.pytorch as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Subset

from data.checks import cpu_count, resolve_workers
from data.device import DeviceLoader, FileSource, LoaderSettings, TensorSource
from data.splits import interleaved_order
from models.utils.system import PACKED_ENV

SPLITS = ("train", "val", "test")


class BaseImageDataModule(pl.LightningDataModule):
    """Subclasses provide ``_loader(split)``, ``_split_tensors()`` (the uint8 splits a DeviceLoader would serve, or
    {} when there are none), ``_describe()`` (their own record keys) and may refine the worker hooks."""

    in_channels = 3

    def __init__(self, *, image_size: int, batch_size: int, num_workers: int | str, seed: int,
                 device_resident: bool | str = "auto", pad_eval: bool = False) -> None:
        super().__init__()  # values checked by the subclass against its declaration (data.keys.check_args)
        self.image_size, self.batch_size, self.seed = int(image_size), int(batch_size), int(seed)
        self.num_workers_setting = num_workers
        self.device_resident_setting = device_resident
        self._on_device: dict[tuple[str, str], tuple[Tensor, Tensor]] = {}
        # evaluation batches padded to a static shape: what a network replayed as CUDA graphs needs (the run passes
        # it; the padding never reaches a metric)
        self.pad_eval = bool(pad_eval)

    # -- trainer context (cpu / rank 0 of 1 when used standalone) --
    def _device(self) -> torch.device:
        return self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")

    def _rank_world(self) -> tuple[int, int]:
        return (self.trainer.global_rank, self.trainer.world_size) if self.trainer is not None else (0, 1)

    def _epoch_fn(self) -> Callable[[], int] | None:
        trainer = self.trainer
        return (lambda: trainer.current_epoch) if trainer is not None else None

    # -- where batches come from --
    def _split_tensors(self) -> dict[str, tuple[Tensor, Tensor]]:
        raise NotImplementedError

    def device_resident(self) -> bool:
        """Batches from whole uint8 splits on the training device (a DeviceLoader). "auto": yes wherever there are
        such splits and, on CUDA, they take at most 25% of the free memory, divided among the runs packed on the GPU
        (on a CPU run host memory is the device)."""
        splits = self._split_tensors()
        if not splits:
            return False
        if self.device_resident_setting != "auto":
            return bool(self.device_resident_setting)
        device = self._device()
        if device.type != "cuda":
            return True
        nbytes = sum(x.numel() + 8 * len(y) for x, y in splits.values())
        packed = int(os.environ.get(PACKED_ENV) or 1)  # runs sharing this GPU: each gets its share of the 25%
        return nbytes <= 0.25 * torch.cuda.mem_get_info(device)[0] / max(1, packed)

    def _from_tensors(self) -> bool:
        """Batches are gathered from tensors (no per-image DataLoader, no workers)."""
        return self.device_resident()

    def _auto_workers(self) -> int:
        return min(8, cpu_count())

    def num_workers(self) -> int:
        """DataLoader workers actually used: 0 with a DeviceLoader, else the setting ("auto": `_auto_workers()`)."""
        return 0 if self._from_tensors() else resolve_workers(self.num_workers_setting, self._auto_workers())

    def describe(self) -> dict[str, Any]:
        """Flat record of what was loaded, for run records (`data/<key>` in results.json)."""
        self.prepare_data()
        self.setup()
        return {"name": self.name, "num_classes": self.num_classes, "in_channels": self.in_channels,
                "image_size": self.image_size, "batch_size_per_device": self.batch_size, **self._describe(),
                "device_resident": self.device_resident(), "num_workers": self.num_workers(), "seed": self.seed}

    def _describe(self) -> dict[str, Any]:
        return {}

    def split_size(self, split: str) -> int:
        """Images in `split` ("train", "val", "test")."""
        return sum(self.class_counts(split))

    def class_counts(self, split: str) -> list[int]:
        """Images of each class in `split` (index = label)."""
        raise NotImplementedError

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

    def _progress_fn(self, train: bool) -> Callable[[], int] | None:
        """Batches of the current epoch already trained on (a DeviceLoader's checkpointed resume position)."""
        trainer = self.trainer
        if trainer is None or not train:
            return None
        return lambda: trainer.fit_loop.epoch_loop.batch_progress.current.processed

    def _shuffle(self, train: bool) -> bool:
        # Lightning's overfit_batches wants a fixed train order; it can only switch that off for DataLoaders itself
        return train and not (self.trainer is not None and self.trainer.overfit_batches > 0)

    # -- the loaders: subclasses provide `_loader(split)` --
    def _dataloader(self, dataset: Dataset, train: bool, workers: int, labels: Tensor | None = None) -> DataLoader:
        if not train and labels is not None:  # an evaluation split: served in its stratified order (eval_order)
            dataset = Subset(dataset, self.eval_order(labels).tolist())
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

    def _device_loader(self, name: str, train: bool, device: torch.device,
                       host_tensors: Callable[[], tuple[Tensor, Tensor]], indices: Tensor | None = None,
                       **augment: Any) -> DeviceLoader:
        """A DeviceLoader over the tensors `name` (or their positions `indices`), copied to `device` once and shared
        by every loader built from them (e.g. train and a val split carved from it)."""
        key = (name, str(device))
        if key not in self._on_device:
            images, labels = host_tensors()
            self._on_device[key] = (images.to(device), labels.to(device))
        return self._loader_over(TensorSource(*self._on_device[key], indices=indices), train, device, **augment)

    def eval_order(self, labels: Tensor) -> Tensor:
        """The order an evaluation split is served in (`data.splits.interleaved_order`, seeded by data.seed: the
        same for every run of a grid), so that a limited evaluation is a stratified subset."""
        return torch.from_numpy(interleaved_order(labels.cpu().numpy(), self.seed))

    def _loader_over(self, source: TensorSource | FileSource, train: bool, device: torch.device,
                     **augment: Any) -> DeviceLoader:
        if not train:
            split = torch.arange(len(source)) if source.indices is None else source.indices.cpu()
            labels = source.all_labels.cpu()[split]
            source.indices = split[self.eval_order(labels)].to(source.all_labels.device)
        rank, world = self._rank_world()
        augment.update(mean=tuple(augment["mean"]), std=tuple(augment["std"]))
        settings = LoaderSettings(self.batch_size, train=train, seed=self.seed, rank=rank, world_size=world,
                                  shuffle=self._shuffle(train), pad_last=self.pad_eval, **augment)
        return DeviceLoader(source, settings, device, epoch_fn=self._epoch_fn(), progress_fn=self._progress_fn(train))

    def _loader(self, split: str) -> DeviceLoader | DataLoader:
        raise NotImplementedError

    def train_dataloader(self) -> DeviceLoader | DataLoader:
        return self._track_train(self._loader("train"))

    def val_dataloader(self) -> DeviceLoader | DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DeviceLoader | DataLoader:
        return self._loader("test")

    def teardown(self, stage: str | None = None) -> None:
        self._on_device.clear()  # frees the accelerator copies; host splits stay for a later fit/test
