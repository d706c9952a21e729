"""A limited evaluation is a stratified part of the split (data.splits.interleaved_order), served the same way by
every datamodule and path, and the same for every run of a grid."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from data.digits import DigitsDataModule
from data.splits import interleaved_order


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 60), min_size=1, max_size=12), st.integers(0, 10), st.data())
def test_every_prefix_holds_each_class_in_proportion(counts: list[int], seed: int, data: st.DataObject) -> None:
    labels = np.repeat(np.arange(len(counts)), counts)  # class-sorted, like a folder of class folders
    order = interleaved_order(labels, seed)
    assert sorted(order.tolist()) == list(range(len(labels)))
    m = data.draw(st.integers(1, len(labels)))
    got = np.bincount(labels[order[:m]], minlength=len(counts))
    want = m * np.asarray(counts) / len(labels)
    assert np.all(np.abs(got - want) <= 1.0 + 1e-9), (got, want)
    assert np.array_equal(order, interleaved_order(labels, seed))  # seeded: the same for every run of a grid


def _prefix_labels(loader, batches: int) -> list[int]:
    out = []
    for i, batch in enumerate(loader):
        if i == batches:
            break
        out += batch[1].tolist()
    return out


def test_both_loader_paths_serve_evaluation_class_interleaved() -> None:
    for resident in (True, False):
        dm = DigitsDataModule(image_size=8, batch_size=16, num_workers=0, device_resident=resident)
        dm.setup()
        labels = dm.splits["test"][1]
        dm.splits["test"] = (dm.splits["test"][0][labels.argsort()], labels[labels.argsort()])  # class-sorted
        first = _prefix_labels(dm.test_dataloader(), 2)
        assert len(first) == 32 and set(first) == set(range(10)), (resident, sorted(first))
        full = _prefix_labels(dm.test_dataloader(), 10**6)
        assert sorted(full) == sorted(dm.splits["test"][1].tolist())  # the whole split, once each
        train = _prefix_labels(dm.train_dataloader(), 1)
        assert len(train) == 16  # training order is untouched (shuffled per epoch)
    assert torch.equal(dm.eval_order(torch.tensor([0, 0, 1, 1])), dm.eval_order(torch.tensor([0, 0, 1, 1])))
