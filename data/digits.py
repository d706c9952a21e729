"""scikit-learn's digits (1,797 real 8x8 handwritten digits, 10 classes): the built-in dataset, no download."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from data.in_memory import InMemoryImageDataModule
from data.keys import Digits as DigitsKeys
from data.keys import check_args
from data.splits import channel_stats, stratified_split
from models.errors import ConfigError


def load_digits_images(image_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """All 1,797 digits as uint8 (N,3,S,S) RGB (bilinear upsampling of the 0..16 grey levels) + int64 labels."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = torch.from_numpy(bunch.images.astype(np.float32) / 16.0).unsqueeze(1)  # (N,1,8,8) in 0..1
    x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False)
    x = x.clamp_(0, 1).mul_(255).round_().to(torch.uint8).expand(-1, 3, -1, -1).contiguous()
    return x, torch.from_numpy(bunch.target.astype(np.int64))


class DigitsDataModule(InMemoryImageDataModule):
    """Digits resized to ``image_size`` RGB, fixed stratified split (default 1257/270/270) by ``seed``.

    Normalised with the train split's mean/std. ``augment=True`` adds RandomCrop(pad=2) only (no flip: flipped
    digits change meaning). ``batch_size`` is per device. Device-resident by default (the data is 5 MB).
    """

    num_classes = 10

    def __init__(
        self,
        image_size: int = 32,
        batch_size: int = 64,
        num_workers: int | str = "auto",
        seed: int = 0,
        val_size: int = 270,
        test_size: int = 270,
        augment: bool = False,
        device_resident: bool | str = "auto",
        pad_eval: bool = False,
    ) -> None:
        check_args(DigitsKeys, locals())
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
        self.name = "digits"
        self.val_size, self.test_size = int(val_size), int(test_size)
        if self.val_size + self.test_size > 1797 - 100:
            raise ConfigError(
                f"data.val_size={val_size} + data.test_size={test_size} leave fewer than 100 of 1797 digits for"
                f" training: lower data.val_size / data.test_size"
            )
        self.pad, self.flip = 2, False

    def _auto_workers(self) -> int:
        return 0  # even for the DataLoader path: 1,797 tiny images are faster in-process than with workers

    def _load(self) -> None:
        images, labels = load_digits_images(self.image_size)
        n = len(labels)
        train, val, test = stratified_split(
            labels.numpy(), [n - self.val_size - self.test_size, self.val_size, self.test_size], self.seed
        )
        splits = {k: (images[i], labels[i]) for k, i in (("train", train), ("val", val), ("test", test))}
        self.mean, self.std = channel_stats(splits["train"][0])
        self._set_splits(splits)

    def _describe(self) -> dict[str, Any]:
        return {**super()._describe(), "source": "sklearn.datasets.load_digits",
                "val_source": f"stratified {self.val_size} of 1797 (seed {self.seed})",
                "test_source": f"stratified {self.test_size} of 1797 (held out)"}
