"""One benchmark case: the model, data, batch and switches measured, and how long each timed window is."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Case:
    model: str = "resnet20"
    data: str = "cifar10"  # cifar10 (the real copy, else synthetic CIFAR-format files) | synthetic | digits | folder
    batch: int = 128
    image_size: int | None = None  # None: the dataset's default (32 for CIFAR, 224 for folder)
    precision: str = "32-true"
    channels_last: bool = False
    compile: bool = False
    steps: int = 5                 # steps per timed window
    repeats: int = 3               # timed windows per side (median reported)
    warmup: int = 3                # untimed steps first (compile, allocator, thread pools)
    eval_batches: int = 4          # test batches per test loop (the first of each loop is untimed)
