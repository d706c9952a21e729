"""Device-resident loader: a whole split lives on the training device as one uint8 NCHW tensor.

Each batch is gathered by index, cropped/flipped and normalised with batched tensor ops on that device, so there
is no per-image Python and no DataLoader worker. Lightning consumes it as a plain sized iterable (its batch transfer
is a no-op because batches are already on the device).

Epochs: train order is a permutation seeded by (seed, epoch); augmentation draws are seeded by (seed, epoch, rank).
The epoch comes from ``epoch_fn`` (the datamodules pass ``lambda: trainer.current_epoch``, so resuming from a
checkpoint at epoch k replays epoch k's order), else from ``set_epoch``, else from an internal counter that
advances after every complete pass.

Resume: the loader is *stateful* in Lightning's sense (``state_dict``/``load_state_dict``), so every checkpoint
records the epoch and how many of its batches were trained on (``progress_fn``: the fit loop's processed-batch count;
standalone: the batches yielded). Resuming from a mid-epoch checkpoint continues with the next batch of the same
permutation (the skipped batches' augmentation draws are replayed), so the run is bitwise identical to one that was
never interrupted, instead of re-training the epoch's first batches.

DDP: like ``DistributedSampler``. Train: every rank draws the same permutation, it is cut to a multiple of
world_size (the tail is dropped), rank r takes positions r::world_size, then the last partial batch is dropped.
Eval: rank r takes samples r::world_size in order, without duplicates; every rank gets the same number of batches
(a rank with one sample fewer splits its last batch in two; only with batch_size=1 one sample is repeated).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from models.errors import ConfigError


def _seeded(device: torch.device, *entropy: int) -> torch.Generator:
    """A generator on ``device`` whose seed mixes all of ``entropy`` (so (seed, epoch) pairs never collide)."""
    seed = int(np.random.SeedSequence([int(e) for e in entropy]).generate_state(1, dtype=np.uint64)[0] >> 1)
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    return gen


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
    dev = x.device
    oy = torch.randint(0, h - crop + 1, (b, 1), generator=gen, device=dev)
    ox = torch.randint(0, w - crop + 1, (b, 1), generator=gen, device=dev)
    ar = torch.arange(crop, device=dev)
    cols = ox + ar
    if flip:
        flipped = torch.rand(b, 1, generator=gen, device=dev) < 0.5
        cols = torch.where(flipped, ox + (crop - 1) - ar, cols)
    flat = ((oy + ar) * w).unsqueeze(2) + cols.unsqueeze(1)  # (B, crop, crop) indices into h*w
    flat = flat.view(b, 1, crop * crop).expand(b, c, crop * crop)
    return x.reshape(b, c, h * w).gather(2, flat).view(b, c, crop, crop)


class DeviceLoader:
    """Sized iterable of ``(x float32 (B,C,S,S) normalised, y int64 (B,))`` batches, all on ``device``.

    ``images``: uint8 (N,C,H,W) (moved to ``device`` once; pass a tensor already there to share it between
    loaders). ``crop`` defaults to H; ``out_size`` (default ``crop``) bilinearly resizes after cropping.
    ``train=True``: shuffled, random crop/flip, drops the last partial batch. ``train=False``: in order, center
    crop, keeps every sample. ``shuffle`` overrides the order only (default: ``train``). ``batch_size`` is per
    rank (per device).
    """

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        batch_size: int,
        *,
        mean: Sequence[float],
        std: Sequence[float],
        train: bool,
        pad: int = 0,
        flip: bool = False,
        crop: int | None = None,
        out_size: int | None = None,
        seed: int = 0,
        device: torch.device | str = "cpu",
        rank: int = 0,
        world_size: int = 1,
        epoch_fn: Callable[[], int] | None = None,
        shuffle: bool | None = None,
        progress_fn: Callable[[], int] | None = None,
    ) -> None:
        # programming errors, not user input: plain ValueErrors
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(f"DeviceLoader needs uint8 NCHW images, got {images.dtype} {tuple(images.shape)}")
        if len(images) != len(labels) or len(mean) != images.shape[1] or len(std) != images.shape[1]:
            raise ValueError(
                f"{len(images)} images of {images.shape[1]} channels, {len(labels)} labels, mean/std {mean}/{std}"
            )
        if not 0 <= rank < world_size:
            raise ValueError(f"rank={rank} outside world_size={world_size}")
        self.device = torch.device(device)
        self.images = images.to(self.device)
        self.labels = labels.to(self.device, torch.int64)
        self.batch_size, self.train, self.seed = int(batch_size), bool(train), int(seed)
        self.shuffle = self.train if shuffle is None else bool(shuffle)  # False: Lightning's overfit_batches
        self.pad, self.flip = int(pad), bool(flip)
        self.crop = int(crop or images.shape[-1])
        self.out_size = int(out_size or self.crop)
        self.rank, self.world_size = int(rank), int(world_size)
        self.epoch_fn = epoch_fn
        self.epoch = 0
        self.progress_fn = progress_fn
        self._pass_epoch: int | None = None  # the epoch of the current/last pass
        self._yielded = 0  # batches yielded by that pass
        self._resume: tuple[int, int] | None = None  # (epoch, batches already trained) from load_state_dict
        c = images.shape[1]
        mean_t = torch.tensor(mean, dtype=torch.float32).view(1, c, 1, 1)
        std_t = torch.tensor(std, dtype=torch.float32).view(1, c, 1, 1)
        # (x/255 - mean)/std folded into one multiply-add
        self._scale = (1.0 / (255.0 * std_t)).to(self.device)
        self._shift = (-mean_t / std_t).to(self.device)
        n = len(images)
        if train and n // self.world_size < self.batch_size:
            raise ConfigError(
                f"data.batch_size={batch_size} exceeds the {n // self.world_size} training samples per device:"
                f" lower data.batch_size"
            )

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
        n, w, b = len(self.images), self.world_size, self.batch_size
        return (n // w) // b if self.train else math.ceil(math.ceil(n / w) / b)

    def batch_indices(self, epoch: int) -> list[Tensor]:
        """This rank's batches of sample indices (CPU int64) for ``epoch``."""
        n, w, b = len(self.images), self.world_size, self.batch_size
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
            x = F.interpolate(
                x,
                size=(self.out_size, self.out_size),
                mode="bilinear",
                align_corners=False,
                antialias=self.out_size < self.crop,
            )
        return x.contiguous()

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
        # one host->device copy of the epoch's indices, then per-batch views
        flat = torch.cat(batches).to(self.device, non_blocking=True)
        for i, idx in enumerate(flat.split([len(b) for b in batches])):
            if i < skip:  # resumed mid-epoch: already trained on; replay its random draws to stay in step
                if gen is not None:
                    self.transform(self.images[idx], gen)
                continue
            self._yielded = i + 1
            yield self.transform(self.images[idx], gen), self.labels[idx]
        if self.epoch_fn is None:
            self.epoch = epoch + 1  # standalone use: reshuffle on the next pass
