"""Callbacks a test passes to a real run (`train(cfg, callbacks=[...])`) to see what the run did on the inside:
the memory format and dtype the network really computed with, and an independent clock of the training steps."""

from __future__ import annotations

import time
from typing import Any

import lightning.pytorch as pl
import torch
from torch import nn


def first_conv(net: nn.Module) -> nn.Conv2d:
    return next(m for m in net.modules() if isinstance(m, nn.Conv2d))


class LayoutProbe(pl.Callback):
    """On the first training batch: the memory format of the first conv's input and weight, whether autocast was
    on inside the forward and at which dtype, and the dtype the conv produced."""

    def __init__(self) -> None:
        self.seen: dict[str, Any] = {}
        self._handle: Any = None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        conv = first_conv(pl_module.net)

        def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            if self.seen:
                return
            x, device = inputs[0], inputs[0].device.type
            self.seen = {"input_channels_last": x.is_contiguous(memory_format=torch.channels_last)
                         and not x.is_contiguous(),
                         "weight_channels_last": module.weight.is_contiguous(memory_format=torch.channels_last)
                         and not module.weight.is_contiguous(),
                         "autocast": torch.is_autocast_enabled(device),
                         "autocast_dtype": torch.get_autocast_dtype(device), "output_dtype": output.dtype}

        self._handle = conv.register_forward_hook(hook)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._handle is not None:
            self._handle.remove()


class StepTimes(pl.Callback):
    """Its own clock: perf_counter at every training batch start and end, and the images of each batch."""

    def __init__(self) -> None:
        self.starts: list[float] = []
        self.ends: list[float] = []
        self.images: list[int] = []
        self.epochs: list[int] = []

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        self.starts.append(time.perf_counter())

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        self.ends.append(time.perf_counter())
        self.images.append(int(batch[0].shape[0]))
        self.epochs.append(trainer.current_epoch)

    def rate(self, warmup: int) -> float:
        """images/s over the steps after `warmup`, each from the previous step's end, never across an epoch start
        (the first step of an epoch pays for validation and a new iterator)."""
        images = seconds = 0.0
        for k in range(max(1, warmup), len(self.ends)):
            if self.epochs[k] == self.epochs[k - 1]:
                images, seconds = images + self.images[k], seconds + self.ends[k] - self.ends[k - 1]
        return images / seconds
