"""Seeded, stratified splits and per-channel statistics of uint8 image tensors."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor


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
