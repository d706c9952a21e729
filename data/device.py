"""Batches prepared on the training device: one loader for whole uint8 splits in memory and for image files.

A split is served as uint8 (B,C,H,W) batches by a *source* — `TensorSource` (a tensor, on the training device or in
host memory; gathered by index, no per-image Python, no worker) or `FileSource` (a Dataset of uint8 images decoded by
DataLoader workers, then moved to the device). `DeviceLoader` owns everything else, identically for both: which
samples form each batch (epochs, DDP shards, mid-epoch resume) and the batched crop/flip/normalise on the device.
Lightning consumes it as a plain sized iterable.

Epochs: train order is a permutation seeded by (seed, epoch); augmentation draws are seeded by (seed, epoch, rank).
The epoch comes from ``epoch_fn`` (the datamodules pass ``lambda: trainer.current_epoch``, so resuming from a
checkpoint at epoch k replays epoch k's order), else from ``set_epoch``, else from an internal counter that
advances after every complete pass.

Resume: the loader is *stateful* in Lightning's sense (``state_dict``/``load_state_dict``), so every checkpoint
records the epoch and how many of its batches were trained on (``progress_fn``: the fit loop's processed-batch count;
standalone: the batches yielded). Resuming from a mid-epoch checkpoint continues with the next batch of the same
permutation; the skipped batches' augmentation draws are replayed (drawn, not applied: no image is read for them), so
the run is bitwise identical to one that was never interrupted.

DDP: like ``DistributedSampler``. Train: every rank draws the same permutation, it is cut to a multiple of
world_size (the tail is dropped), rank r takes positions r::world_size, then the last partial batch is dropped.
Eval: rank r takes samples r::world_size in order, without duplicates; every rank gets the same number of batches
(a rank with one sample fewer splits its last batch in two; only with batch_size=1 one sample is repeated).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from models.errors import ConfigError


def _seeded(device: torch.device, *entropy: int) -> torch.Generator:
    """A generator on ``device`` whose seed mixes all of ``entropy`` (so (seed, epoch) pairs never collide)."""
    seed = int(np.random.SeedSequence([int(e) for e in entropy]).generate_state(1, dtype=np.uint64)[0] >> 1)
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    return gen


def draw_crop_flip(b: int, h: int, w: int, crop: int, flip: bool, gen: torch.Generator | None,
                   device: torch.device) -> tuple[Tensor, Tensor, Tensor | None]:
    """The random part of ``crop_flip``: per-image offsets (B,1) and flips (B,1), in this order."""
    oy = torch.randint(0, h - crop + 1, (b, 1), generator=gen, device=device)
    ox = torch.randint(0, w - crop + 1, (b, 1), generator=gen, device=device)
    flipped = torch.rand(b, 1, generator=gen, device=device) < 0.5 if flip else None
    return oy, ox, flipped


def crop_flip(
    x: Tensor, crop: int, *, pad: int = 0, flip: bool = False, train: bool = True, gen: torch.Generator | None = None
) -> Tensor:
    """Batched ``RandomCrop(crop, padding=pad)`` (zero fill) + ``RandomHorizontalFlip(0.5)`` on uint8 (B,C,H,W).

    ``train=False`` is ``CenterCrop(crop)`` (no padding, no flip). Every image gets its own offset and flip, done
    as a single ``gather`` over precomputed flat pixel indices; the flip just reverses the column index.
    """
    b, c, h, w = x.shape
    if not train:
        if crop == h == w:
            return x
        top, left = round((h - crop) / 2.0), round((w - crop) / 2.0)  # same rounding as torchvision
        return x[:, :, top : top + crop, left : left + crop]
    if pad:
        x = F.pad(x, (pad, pad, pad, pad))  # zero fill, like RandomCrop(padding=pad, fill=0)
        h, w = h + 2 * pad, w + 2 * pad
    oy, ox, flipped = draw_crop_flip(b, h, w, crop, flip, gen, x.device)
    ar = torch.arange(crop, device=x.device)
    cols = ox + ar
    if flipped is not None:
        cols = torch.where(flipped, ox + (crop - 1) - ar, cols)
    flat = ((oy + ar) * w).unsqueeze(2) + cols.unsqueeze(1)  # (B, crop, crop) indices into h*w
    flat = flat.view(b, 1, crop * crop).expand(b, c, crop * crop)
    return x.reshape(b, c, h * w).gather(2, flat).view(b, c, crop, crop)


class TensorSource:
    """A split as uint8 (N,C,H,W) images + labels in one tensor (or the positions ``indices`` of a larger one)."""

    def __init__(self, images: Tensor, labels: Tensor, indices: Tensor | None = None) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4 or len(images) != len(labels):
            raise ValueError(f"TensorSource needs uint8 NCHW images and one label each, got {images.dtype} "
                             f"{tuple(images.shape)} and {len(labels)} labels")
        self.images, self.all_labels = images, labels.to(torch.int64)
        self.indices = indices if indices is None else indices.to(torch.int64)
        self.shape = tuple(images.shape[1:])

    def __len__(self) -> int:
        return len(self.images) if self.indices is None else len(self.indices)

    def to(self, device: torch.device | str) -> TensorSource:
        move = (lambda t: t) if self.images.device == torch.device(device) else (lambda t: t.to(device))
        return TensorSource(move(self.images), move(self.all_labels),
                            None if self.indices is None else move(self.indices))

    def batches(self, positions: list[Tensor], device: torch.device) -> Iterator[tuple[Tensor, Tensor]]:
        """uint8 images and labels of each batch of split positions (gathered where the tensor lives)."""
        if not positions:
            return
        flat = torch.cat(positions).to(self.images.device, non_blocking=True)  # one copy of the epoch's indices
        if self.indices is not None:
            flat = self.indices.to(self.images.device)[flat]
        for idx in flat.split([len(p) for p in positions]):
            yield self.images[idx].to(device, non_blocking=True), self.all_labels[idx].to(device, non_blocking=True)


class FileSource:
    """A split as a Dataset of uint8 (C,H,W) images (decoded by ``workers`` DataLoader processes) + its labels."""

    def __init__(self, dataset: Dataset, labels: Tensor, shape: Sequence[int], workers: int = 0,
                 indices: Tensor | None = None) -> None:
        self.dataset, self.all_labels, self.shape, self.workers = dataset, labels.to(torch.int64), tuple(shape), workers
        self.indices = indices

    def __len__(self) -> int:
        return len(self.all_labels) if self.indices is None else len(self.indices)

    def to(self, device: torch.device | str) -> FileSource:
        return self

    def batches(self, positions: list[Tensor], device: torch.device) -> Iterator[tuple[Tensor, Tensor]]:
        if not positions:
            return
        sample_ids = [(p if self.indices is None else self.indices[p]).tolist() for p in positions]
        loader = DataLoader(self.dataset, batch_sampler=sample_ids, num_workers=self.workers,
                            pin_memory=device.type == "cuda", persistent_workers=False)
        for x, y in loader:
            yield x.to(device, non_blocking=True), y.to(device, non_blocking=True)


Source = TensorSource | FileSource


@dataclass(frozen=True)
class LoaderSettings:
    """What a `DeviceLoader` serves. ``batch_size`` is per rank (per device). ``crop`` defaults to the image side;
    ``out_size`` (default ``crop``) bilinearly resizes after cropping. ``train=True``: shuffled, random crop (after
    zero-padding by ``pad``) and flip, drops the last partial batch; ``train=False``: in order, center crop, keeps
    every sample. ``shuffle`` overrides the order only (default: ``train``). ``pad_last`` (evaluation): every batch
    padded to ``batch_size`` with zeros and yielded as ``(x, y, n)``, n the number of real images (static shapes for
    CUDA graphs; the model counts the first n only)."""

    batch_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    train: bool
    pad: int = 0
    flip: bool = False
    crop: int | None = None
    out_size: int | None = None
    seed: int = 0
    rank: int = 0
    world_size: int = 1
    shuffle: bool | None = None
    pad_last: bool = False


class DeviceLoader:
    """Sized iterable of ``(x float32 (B,C,S,S) normalised, y int64 (B,))`` batches, all on ``device``, from a
    ``TensorSource`` (moved to ``device`` once; pass one already there to share it between loaders) or a
    ``FileSource``, served as ``settings`` say. ``epoch_fn`` / ``progress_fn``: see the module docstring."""

    def __init__(self, source: Source, settings: LoaderSettings, device: torch.device | str = "cpu", *,
                 epoch_fn: Callable[[], int] | None = None, progress_fn: Callable[[], int] | None = None) -> None:
        channels, height = source.shape[0], source.shape[-1]
        s = settings
        if len(s.mean) != channels or len(s.std) != channels:  # programming errors, not user input: ValueErrors
            raise ValueError(f"{channels}-channel images but mean/std {s.mean}/{s.std}")
        if not 0 <= s.rank < s.world_size:
            raise ValueError(f"rank={s.rank} outside world_size={s.world_size}")
        self.settings, self.device = settings, torch.device(device)
        self.source = source.to(self.device)
        self.batch_size, self.train, self.seed = int(s.batch_size), bool(s.train), int(s.seed)
        self.shuffle = self.train if s.shuffle is None else bool(s.shuffle)  # False: Lightning's overfit_batches
        self.pad, self.flip = int(s.pad), bool(s.flip)
        self.crop = int(s.crop or height)
        self.out_size = int(s.out_size or self.crop)
        self.rank, self.world_size = int(s.rank), int(s.world_size)
        self.epoch_fn, self.progress_fn = epoch_fn, progress_fn
        self.pad_last = bool(s.pad_last) and not self.train  # eval: every batch full-size, (x, y, n valid)
        self.epoch = 0
        self._pass_epoch: int | None = None  # the epoch of the current/last pass
        self._yielded = 0  # batches yielded by that pass
        self._resume: tuple[int, int] | None = None  # (epoch, batches already trained) from load_state_dict
        mean_t = torch.tensor(s.mean, dtype=torch.float32).view(1, channels, 1, 1)
        std_t = torch.tensor(s.std, dtype=torch.float32).view(1, channels, 1, 1)
        self._scale = (1.0 / (255.0 * std_t)).to(self.device)  # (x/255 - mean)/std folded into one multiply-add
        self._shift = (-mean_t / std_t).to(self.device)
        if self.train and len(self.source) // self.world_size < self.batch_size:
            raise ConfigError(
                f"data.batch_size={s.batch_size} exceeds the {len(self.source) // self.world_size} training samples "
                "per device: lower data.batch_size"
            )

    def to(self, device: torch.device | str) -> DeviceLoader:
        """The same loader (same batches, same draws) producing its batches on ``device``."""
        other = DeviceLoader(self.source, self.settings, device, epoch_fn=self.epoch_fn, progress_fn=self.progress_fn)
        other.epoch = self.epoch
        return other

    @property
    def labels(self) -> Tensor:
        src = self.source
        return src.all_labels if src.indices is None else src.all_labels[src.indices.to(src.all_labels.device)]

    def set_epoch(self, epoch: int) -> None:
        """Pin the epoch used by the next pass (ignored when ``epoch_fn`` is set)."""
        self.epoch = int(epoch)

    def state_dict(self) -> dict[str, int]:
        """Saved by Lightning in every checkpoint (``loops.fit_loop.state_dict.combined_loader``)."""
        epoch = self._pass_epoch if self._pass_epoch is not None else self.epoch
        done = int(self.progress_fn()) if self.progress_fn is not None else self._yielded
        return {"epoch": int(epoch), "batches": done}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """The next pass, if it is over the same epoch, starts after the batches already trained on."""
        self._resume = (int(state["epoch"]), int(state["batches"]))

    def __len__(self) -> int:
        n, w, b = len(self.source), self.world_size, self.batch_size
        return (n // w) // b if self.train else math.ceil(math.ceil(n / w) / b)

    def batch_indices(self, epoch: int) -> list[Tensor]:
        """This rank's batches of split positions (CPU int64) for ``epoch``."""
        n, w, b = len(self.source), self.world_size, self.batch_size
        if self.train:
            if self.shuffle:  # the same permutation on every rank, so the shards are disjoint
                perm = torch.randperm(n, generator=_seeded(torch.device("cpu"), self.seed, epoch))
            else:
                perm = torch.arange(n)
            mine = perm[: (n // w) * w][self.rank :: w]
            return list(mine[: len(self) * b].split(b))
        mine = torch.arange(self.rank, n, w)
        batches = list(mine.split(b))
        while len(batches) < len(self):  # keep batch counts equal across ranks (collectives must line up)
            last = batches.pop() if batches else mine[:0]
            if len(last) >= 2:
                batches += list(last.tensor_split(2))
            elif len(last) == 1:  # batch_size=1: repeat the sample, as DistributedSampler's padding would
                batches += [last, last]
            else:  # fewer samples than ranks
                batches.append(torch.zeros(1, dtype=torch.int64))
        return batches

    def transform(self, x: Tensor, gen: torch.Generator | None) -> Tensor:
        """uint8 batch -> augmented, normalised float32 batch (all on the device)."""
        x = crop_flip(x, self.crop, pad=self.pad, flip=self.flip, train=self.train, gen=gen)
        x = torch.addcmul(self._shift, x.float(), self._scale)
        if self.out_size != self.crop:
            x = F.interpolate(x, size=(self.out_size, self.out_size), mode="bilinear", align_corners=False,
                              antialias=self.out_size < self.crop)
        return x.contiguous()

    def _padded(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor, int]:
        n, missing = len(y), self.batch_size - len(y)
        if missing > 0:
            x = torch.cat([x, x.new_zeros((missing, *x.shape[1:]))])
            y = torch.cat([y, y.new_zeros(missing)])
        return x, y, n

    def _replay(self, skipped: list[Tensor], gen: torch.Generator | None) -> None:
        """Consume the random draws of batches trained before a restart (no image needed)."""
        if gen is None:
            return
        side = self.source.shape[-1] + 2 * self.pad
        for idx in skipped:
            draw_crop_flip(len(idx), side, side, self.crop, self.flip, gen, self.device)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        # A generator: nothing runs until the first next(), i.e. after Lightning has advanced the epoch.
        epoch = int(self.epoch_fn()) if self.epoch_fn is not None else self.epoch
        skip = 0
        if self._resume is not None:
            if self._resume[0] == epoch and self.train:
                skip = min(self._resume[1], len(self))
            self._resume = None
        self._pass_epoch, self._yielded = epoch, skip
        gen = _seeded(self.device, self.seed, epoch, self.rank) if self.train else None
        batches = self.batch_indices(epoch)
        self._replay(batches[:skip], gen)
        for i, (x, y) in enumerate(self.source.batches(batches[skip:], self.device), start=skip):
            self._yielded = i + 1
            yield self._padded(self.transform(x, gen), y) if self.pad_last else (self.transform(x, gen), y)
        if self.epoch_fn is None:
            self.epoch = epoch + 1  # standalone use: reshuffle on the next pass

