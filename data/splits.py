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


def interleaved_order(labels: np.ndarray, seed: int) -> np.ndarray:
    """A seeded order of a split in which every prefix is stratified: each class's images (shuffled) are spread
    evenly over the whole order, so the first m images hold m x (class share) of each class, +-1. Evaluation splits
    are served in this order: Lightning's `limit_val_batches` / `limit_test_batches` take the first batches, which
    on a class-sorted folder or CIFAR's grouped test copy would otherwise be one class only. A whole split gives the
    same metrics in any order."""
    labels = np.asarray(labels)
    if len(labels) == 0:
        return np.zeros(0, dtype=np.int64)
    rng = np.random.default_rng(seed)
    grouped = np.lexsort((rng.random(len(labels)), labels))  # by class, shuffled within
    sorted_labels = labels[grouped]
    starts = np.searchsorted(sorted_labels, sorted_labels, side="left")
    counts = np.bincount(sorted_labels)[sorted_labels]
    place = (np.arange(len(labels)) - starts + 0.5) / counts  # how far through its class each image sits
    return grouped[np.lexsort((sorted_labels, place))]


def channel_stats(images: Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean/std in 0..1 units of a uint8 (N,C,H,W) tensor."""
    x = images.to(torch.float64).div_(255).transpose(0, 1).reshape(images.shape[1], -1)
    return x.mean(1).tolist(), x.std(1).tolist()
