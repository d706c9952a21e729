"""Digits datamodule, the device-resident loader (augmentation semantics, epochs, DDP shards) and the registry."""

from __future__ import annotations

import functools
import json
import operator

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from torch import nn
from torchvision.transforms import v2

from data import build_datamodule
from data.device import DeviceLoader, LoaderSettings, TensorSource, crop_flip
from data.digits import DigitsDataModule
from data.splits import stratified_split
from helpers.fits import BatchRecorder, smoke_fit
from helpers.runs import data_config
from models.errors import ConfigError


@pytest.fixture(scope="module")
def digits() -> DigitsDataModule:
    dm = DigitsDataModule(batch_size=64)
    dm.setup()
    return dm


def _loader(n: int = 100, batch_size: int = 8, epoch_fn=None, **kw) -> DeviceLoader:
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 3, 4, 4).contiguous()
    settings = LoaderSettings(batch_size, mean=(0, 0, 0), std=(1, 1, 1), **{"train": False, **kw})
    return DeviceLoader(TensorSource(images, torch.arange(n)), settings, epoch_fn=epoch_fn)


def _labels(loader: DeviceLoader) -> list[int]:
    return [int(v) for _, y in loader for v in y]


# -- digits --------------------------------------------------------------------------------------------------


def test_digits_splits_shapes_and_normalisation(digits: DigitsDataModule) -> None:
    info = digits.describe()
    assert (info["train_size"], info["val_size"], info["test_size"]) == (1257, 270, 270)
    assert info["device_resident"] is True and info["num_classes"] == 10 and info["val_is_test"] is False
    x, _y = digits.splits["train"]
    assert x.dtype == torch.uint8 and x.shape == (1257, 3, 32, 32) and int(x.max()) == 255
    assert torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 1], x[:, 2])  # grey replicated to RGB
    # stratified: each class's share of val is within one sample of its share overall
    counts = np.bincount(digits.splits["val"][1].numpy(), minlength=10)
    overall = np.bincount(np.concatenate([s[1].numpy() for s in digits.splits.values()]), minlength=10)
    assert np.all(np.abs(counts - overall * 270 / 1797) <= 1)
    xb, yb = next(iter(digits.train_dataloader()))
    assert xb.shape == (64, 3, 32, 32) and xb.dtype == torch.float32 and yb.dtype == torch.int64
    allx = torch.cat([b for b, _ in digits.train_dataloader()])
    assert abs(allx.mean().item()) < 0.05 and abs(allx.std().item() - 1) < 0.05  # train mean/std normalisation


def test_digits_splits_are_disjoint_and_seeded() -> None:
    labels = np.arange(1797) % 10
    parts = stratified_split(labels, [1257, 270, 270], seed=0)
    assert [len(p) for p in parts] == [1257, 270, 270]
    assert len(np.unique(np.concatenate(parts))) == 1797
    again = stratified_split(labels, [1257, 270, 270], seed=0)
    other = stratified_split(labels, [1257, 270, 270], seed=1)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again, strict=True))
    assert not np.array_equal(parts[1], other[1])
    a, b = DigitsDataModule(seed=3), DigitsDataModule(seed=3)
    a.setup(), b.setup()
    assert torch.equal(a.splits["test"][0], b.splits["test"][0])
    rows = {t.numpy().tobytes() for t in a.splits["test"][0]}
    assert sum(t.numpy().tobytes() in rows for t in a.splits["train"][0]) <= 5  # only literal duplicate digits


def test_digits_device_and_dataloader_paths_agree(digits: DigitsDataModule) -> None:
    slow = DigitsDataModule(batch_size=64, device_resident=False)
    fast_batches, slow_batches = list(digits.test_dataloader()), list(slow.test_dataloader())
    assert isinstance(slow.test_dataloader(), torch.utils.data.DataLoader)
    assert len(fast_batches) == len(slow_batches) == 5
    for (xf, yf), (xs, ys) in zip(fast_batches, slow_batches, strict=True):
        assert torch.equal(yf, ys) and torch.allclose(xf, xs, atol=1e-5)
    assert len(slow.train_dataloader()) == len(digits.train_dataloader()) == 1257 // 64


def test_digits_small_cnn_learns_quickly() -> None:
    """The labels line up with the images: a small BN CNN passes 90% test accuracy in two epochs."""
    dm = DigitsDataModule(batch_size=32, image_size=16)
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(4),
        nn.Flatten(),
        nn.Linear(512, 10),
    )
    opt = torch.optim.Adam(net.parameters(), 3e-3)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny convs: threading only adds overhead, and hurts badly on a busy machine
    try:
        for _ in range(2):
            for x, y in dm.train_dataloader():
                opt.zero_grad()
                nn.functional.cross_entropy(net(x), y).backward()
                opt.step()
        net.eval()
        with torch.no_grad():
            correct = sum(int((net(x).argmax(1) == y).sum()) for x, y in dm.test_dataloader())
    finally:
        torch.set_num_threads(threads)
    assert correct / 270 > 0.9


# -- augmentation semantics vs torchvision --------------------------------------------------------------------


def _coordinate_image() -> torch.Tensor:
    """Channel 0 encodes the row, channel 1 the column (never 0), so a crop reveals its offset and flip."""
    r = torch.arange(32).view(32, 1).expand(32, 32)
    return torch.stack([r * 7 + 3, r.T * 7 + 3, torch.full((32, 32), 128)]).to(torch.uint8)


def _decode(batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(row offset 0..8, column offset 0..8, flipped) of pad-4 crops of the coordinate image."""
    rows = (batch[:, 0, 16, 16].long() - 3) // 7
    c16, c17 = (batch[:, 1, 16, 16].long() - 3) // 7, (batch[:, 1, 16, 17].long() - 3) // 7
    flipped = c17 < c16
    return rows - 12, torch.where(flipped, c16 - 11, c16 - 12), flipped


def test_crop_flip_matches_torchvision_distribution() -> None:
    n, img = 6000, _coordinate_image()
    gen = torch.Generator().manual_seed(0)
    ours = crop_flip(img.expand(n, -1, -1, -1), 32, pad=4, flip=True, gen=gen)
    torch.manual_seed(0)
    tv = v2.Compose([v2.RandomCrop(32, padding=4), v2.RandomHorizontalFlip(0.5)])
    ref = torch.stack([tv(img) for _ in range(n)])
    assert ours.dtype == torch.uint8 and ours.shape == ref.shape == (n, 3, 32, 32)
    hists = []
    for batch in (ours, ref):
        oy, ox, flipped = _decode(batch)
        assert oy.min() == 0 and oy.max() == 8 and ox.min() == 0 and ox.max() == 8
        assert abs(flipped.float().mean().item() - 0.5) < 0.03
        hists.append(torch.bincount(oy * 9 + ox, minlength=81).float() / n)
        # zero fill: exactly the pixels that fall in the padding are 0 in channel 0
        pad_rows = (oy - 4).clamp(min=0) + (4 - oy).clamp(min=0)
        pad_cols = (ox - 4).clamp(min=0) + (4 - ox).clamp(min=0)
        expected_zeros = 32 * (pad_rows + pad_cols) - pad_rows * pad_cols
        assert torch.equal((batch[:, 0] == 0).sum((1, 2)), expected_zeros)
    # chi-square statistics (80 degrees of freedom: mean 80, sd 12.6): ours vs torchvision, and ours vs uniform
    a, b = hists[0] * n, hists[1] * n
    assert ((a - b) ** 2 / (a + b).clamp(min=1)).sum() < 150
    assert ((a - n / 81) ** 2 / (n / 81)).sum() < 150
    # same per-pixel expectation (7 standard errors: 3072 pixels are compared)
    mean_ours, mean_ref = ours.float().mean(0), ref.float().mean(0)
    se = ((ours.float().var(0) + ref.float().var(0)) / n).sqrt().clamp(min=0.5)
    assert ((mean_ours - mean_ref).abs() / se).max() < 7


def test_center_crop_and_resize_match_torchvision() -> None:
    x = torch.randint(0, 256, (4, 3, 37, 37), dtype=torch.uint8)
    assert torch.equal(crop_flip(x, 32, train=False), v2.CenterCrop(32)(x))
    loader = DeviceLoader(TensorSource(x, torch.zeros(4)), LoaderSettings(4, mean=(0.5,) * 3, std=(0.25,) * 3,
                                                                           train=False, crop=32, out_size=16))
    xb, _ = next(iter(loader))
    ref = v2.Compose(
        [
            v2.CenterCrop(32),
            v2.ToDtype(torch.float32, scale=True),
            v2.Resize(16, antialias=True),
            v2.Normalize((0.5,) * 3, (0.25,) * 3),
        ]
    )(x)
    assert xb.shape == (4, 3, 16, 16) and torch.allclose(xb, ref, atol=1e-4)


# -- epochs, determinism, DDP shards ----------------------------------------------------------------------------


def test_epochs_reshuffle_deterministically_and_resume() -> None:
    a, b = _loader(train=True, seed=5), _loader(train=True, seed=5)
    e0, e1 = _labels(a), _labels(a)  # the standalone loader advances its own epoch after each pass
    assert len(e0) == len(e1) == len(a) * 8 == 96 and e0 != e1
    assert _labels(b) == e0
    resumed = _loader(train=True, seed=5)
    resumed.set_epoch(1)
    assert _labels(resumed) == e1
    assert _labels(_loader(train=True, seed=6)) != e0
    epoch = [3]
    pinned = _loader(train=True, seed=5, epoch_fn=lambda: epoch[0])
    assert _labels(pinned) == _labels(pinned)  # epoch_fn wins over the internal counter
    assert _labels(_loader(train=False)) == list(range(100))
    # augmentation is seeded too
    x = torch.randint(0, 256, (64, 3, 8, 8), dtype=torch.uint8)
    aug = [
        DeviceLoader(TensorSource(x, torch.arange(64)),
                     LoaderSettings(16, mean=(0,) * 3, std=(1,) * 3, train=True, pad=2, flip=True, seed=1))
        for _ in range(2)
    ]
    assert all(torch.equal(p, q) for (p, _), (q, _) in zip(aug[0], aug[1], strict=True))


@pytest.mark.parametrize("n,world,bs", [(100, 3, 8), (100, 3, 11), (10, 4, 1), (7, 2, 3)])
def test_ddp_shards(n: int, world: int, bs: int) -> None:
    train = [_labels(_loader(n, bs, train=True, rank=r, world_size=world, seed=2)) for r in range(world)]
    assert len({len(t) for t in train}) == 1 and len(train[0]) == (n // world) // bs * bs
    flat = functools.reduce(operator.iadd, train, [])
    assert len(flat) == len(set(flat))  # disjoint across ranks
    evals = [list(_loader(n, bs, train=False, rank=r, world_size=world)) for r in range(world)]
    assert len({len(e) for e in evals}) == 1  # equal batch counts, so per-step collectives line up
    assert all(len(e) == len(_loader(n, bs, train=False, rank=r, world_size=world)) for r, e in enumerate(evals))
    seen = [int(v) for e in evals for _, y in e for v in y]
    assert set(seen) == set(range(n))
    if bs > 1:
        assert len(seen) == n  # no duplicates unless batch_size=1


def test_batch_larger_than_shard_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="data.batch_size"):
        _loader(10, 8, train=True, world_size=2)


# -- Lightning integration -----------------------------------------------------------------------------------


class _Record(pl.Callback):
    def __init__(self) -> None:
        self.batches: dict[int, list[list[int]]] = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.batches.setdefault(trainer.current_epoch, []).append([*batch[1].tolist(), round(float(batch[0].sum()), 2)])


def test_lightning_fit_resume_replays_epoch_order(tmp_path) -> None:
    from lightning.pytorch.callbacks import ModelCheckpoint

    full = _Record()
    ckpt = ModelCheckpoint(dirpath=tmp_path, save_top_k=-1, every_n_epochs=1, filename="{epoch}")
    smoke_fit(
        DigitsDataModule(batch_size=32, augment=True),
        max_epochs=3,
        callbacks=[full, ckpt],
        enable_checkpointing=True,
        root_dir=tmp_path,
    )
    assert set(full.batches) == {0, 1, 2} and full.batches[0] != full.batches[1] != full.batches[2]
    resumed = _Record()
    ckpt2 = ModelCheckpoint(dirpath=tmp_path, save_top_k=-1, every_n_epochs=1, filename="{epoch}")
    smoke_fit(
        DigitsDataModule(batch_size=32, augment=True),
        max_epochs=3,
        callbacks=[resumed, ckpt2],
        enable_checkpointing=True,
        root_dir=tmp_path,
        ckpt_path=tmp_path / "epoch=0.ckpt",
    )
    assert resumed.batches == {1: full.batches[1], 2: full.batches[2]}  # same order and same augmentation


def test_lightning_overfit_batches_keeps_a_fixed_order() -> None:
    record = _Record()
    smoke_fit(DigitsDataModule(batch_size=32), max_epochs=2, callbacks=[record], overfit_batches=2)
    assert record.batches[0] == record.batches[1] and len(record.batches[0]) == 2


@pytest.mark.slow
def test_real_ddp_shards_are_disjoint_and_reshuffled(tmp_path) -> None:
    """Two CPU processes (gloo, ddp_spawn): each rank trains on its own half, every epoch a new order.

    (The DataLoader path gets Lightning's DistributedSampler; checked by hand, same result.)
    """
    dm = DigitsDataModule(batch_size=50)
    smoke_fit(
        dm,
        max_epochs=2,
        limit_batches=1.0,
        callbacks=[BatchRecorder(tmp_path)],
        strategy="ddp_spawn",
        devices=2,
        run_test=False,
    )
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2))
    assert r0["world_size"] == 2 and r0["train_batches"] == r1["train_batches"] == 1257 // 2 // 50
    for epoch in ("train0", "train1"):
        assert len(r0[epoch]) == len(r1[epoch]) == 12 * 50 and not set(r0[epoch]) & set(r1[epoch])
    assert r0["train0"] != r0["train1"]
    assert not set(r0["val0"]) & set(r1["val0"]) and len(set(r0["val0"]) | set(r1["val0"])) == 270


def test_lightning_fit_and_test_with_both_loader_paths() -> None:
    for device_resident in (True, False):
        dm = DigitsDataModule(batch_size=32, device_resident=device_resident)
        trainer, metrics = smoke_fit(dm)
        assert trainer.state.finished and 0 <= metrics["test_acc"] <= 1


# -- the one factory ----------------------------------------------------------------------------------------------


def test_datamodule_factory_and_its_errors() -> None:
    assert build_datamodule(data_config("digits", batch_size=16)).batch_size == 16
    with pytest.raises(ConfigError, match="data._target_ is missing"):
        build_datamodule({"batch_size": 16})
    with pytest.raises(ConfigError, match="data._target_='data.mnist.MNIST' is not a datamodule class"):
        build_datamodule({"_target_": "data.mnist.MNIST"})
    with pytest.raises(ConfigError, match=r"data\.root is not a setting of this dataset \(data._target_=data.digits."
                                          r"DigitsDataModule\): drop it; it takes augment, batch_size"):
        build_datamodule(data_config("digits", root="/x"))
    assert build_datamodule(data_config("cifar100", root="/x")).num_classes == 100


@pytest.mark.parametrize(
    "kwargs,key",
    [
        ({"batch_size": 0}, "data.batch_size"),
        ({"batch_size": True}, "data.batch_size"),
        ({"num_workers": -1}, "data.num_workers"),
        ({"num_workers": "many"}, "data.num_workers"),
        ({"device_resident": "yes"}, "data.device_resident"),
        ({"image_size": 0}, "data.image_size"),
        ({"val_size": 1000, "test_size": 1000}, "data.val_size"),
        ({"augment": "no"}, "data.augment"),
    ],
)
def test_bad_inputs_name_the_key(kwargs: dict, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        DigitsDataModule(**kwargs)
    assert key in str(err.value) and "\n" not in str(err.value)
