"""CIFAR datamodule on small CIFAR-format pickles written on the fly, plus the real copy in ../shared when present."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from data.cifar import CIFARDataModule
from data.synthetic import write_cifar
from helpers.fits import smoke_fit
from helpers.runs import REPO
from models.errors import ConfigError

REAL = REPO.parent / "shared/data/cifar10"


@pytest.fixture
def cifar10(tmp_path: Path) -> Path:
    write_cifar(tmp_path, "cifar10", n_train=50, n_test=20)
    return tmp_path


def _rows(x: torch.Tensor) -> set[bytes]:
    return {r.numpy().tobytes() for r in x}


def test_cifar10_splits_shapes_and_batches(cifar10: Path) -> None:
    dm = CIFARDataModule(root=str(cifar10), verify=False, val_size=10, batch_size=8)
    info = dm.describe()
    assert (info["train_size"], info["val_size"], info["test_size"]) == (40, 10, 20)
    assert info["val_is_test"] is False and info["device_resident"] is True and info["num_classes"] == 10
    assert dm.classes == [f"class_{i}" for i in range(10)]
    tr, va, te = (dm.splits[s][0] for s in ("train", "val", "test"))
    assert tr.dtype == torch.uint8 and tr.shape == (40, 3, 32, 32)
    assert not _rows(tr) & _rows(va) and not _rows(tr) & _rows(te) and not _rows(va) & _rows(te)
    assert sorted(dm.splits["val"][1].tolist()) == list(range(10))  # stratified: one per class
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (8, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert len(dm.train_dataloader()) == 5 and len(dm.test_dataloader()) == 3
    # eval batches are exactly (x/255 - mean)/std of the stored pixels, in the split's class-interleaved order
    xt, yt = next(iter(dm.test_dataloader()))
    first = dm.eval_order(dm.splits["test"][1])[:8]
    mean, std = torch.tensor(dm.mean).view(1, 3, 1, 1), torch.tensor(dm.std).view(1, 3, 1, 1)
    assert torch.allclose(xt, (te[first].float() / 255 - mean) / std, atol=1e-5)
    assert torch.equal(yt, dm.splits["test"][1][first]) and len(set(yt.tolist())) == 8  # 8 classes in 8 images


def test_root_may_be_the_batches_folder_and_split_is_seeded(cifar10: Path) -> None:
    a = CIFARDataModule(root=str(cifar10 / "cifar-10-batches-py"), verify=False, val_size=10, seed=1)
    b = CIFARDataModule(root=str(cifar10), verify=False, val_size=10, seed=1)
    c = CIFARDataModule(root=str(cifar10), verify=False, val_size=10, seed=2)
    for dm in (a, b, c):
        dm.setup()
    assert torch.equal(a.splits["val"][0], b.splits["val"][0])
    assert not torch.equal(a.splits["val"][0], c.splits["val"][0])


def test_val_size_zero_uses_test_as_val(cifar10: Path) -> None:
    dm = CIFARDataModule(root=str(cifar10), verify=False, val_size=0, batch_size=10)
    info = dm.describe()
    assert info["val_is_test"] is True and info["train_size"] == 50 and info["val_size"] == 20
    assert torch.equal(dm.splits["val"][0], dm.splits["test"][0])


def test_cifar100(tmp_path: Path) -> None:
    write_cifar(tmp_path, "cifar100", n_train=200, n_test=100)
    dm = CIFARDataModule(name="cifar100", root=str(tmp_path), verify=False, val_size=100, batch_size=16)
    info = dm.describe()
    assert info["num_classes"] == 100 and (info["train_size"], info["val_size"], info["test_size"]) == (100, 100, 100)
    assert dm.splits["train"][1].max() <= 99 and len(dm.classes) == 100
    assert sorted(dm.splits["val"][1].tolist()) == list(range(100))


def test_verify_reports_checksum_mismatch(cifar10: Path) -> None:
    with pytest.raises(ConfigError, match=r"checksum mismatch in .*data_batch_1: .*set data.verify=false"):
        CIFARDataModule(root=str(cifar10), verify=True).setup()


def test_missing_root_names_key_and_fix(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"data.root=.*cifar-10-batches-py not found: set data.root=.*data.download=true"
    ):
        CIFARDataModule(root=str(tmp_path / "nowhere"), verify=False).setup()
    with pytest.raises(ConfigError, match="data.root is not set"):
        CIFARDataModule()


@pytest.mark.parametrize("damage", ["truncate", "garbage", "delete"])
def test_damaged_batch_files_name_the_file(cifar10: Path, damage: str) -> None:
    path = cifar10 / "cifar-10-batches-py" / "data_batch_3"
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif damage == "garbage":
        path.write_bytes(b"this is not a pickle" * 10)
    else:
        path.unlink()
    with pytest.raises(ConfigError, match=r"data_batch_3 (is corrupt or truncated|is missing)"):
        CIFARDataModule(root=str(cifar10), verify=False).setup()


def test_bad_settings(cifar10: Path) -> None:
    with pytest.raises(ConfigError, match="data.name"):
        CIFARDataModule(name="cifar1000", root=str(cifar10))
    with pytest.raises(ConfigError, match="data.val_size"):
        CIFARDataModule(root=str(cifar10), val_size=-1)
    with pytest.raises(ConfigError, match="data.val_size=50 >= 50"):
        CIFARDataModule(root=str(cifar10), verify=False, val_size=50).setup()


def test_device_and_dataloader_paths(cifar10: Path) -> None:
    fast = CIFARDataModule(root=str(cifar10), verify=False, val_size=10, batch_size=8)
    slow = CIFARDataModule(
        root=str(cifar10), verify=False, val_size=10, batch_size=8, device_resident=False, num_workers=0
    )
    for split in ("val", "test"):
        for (xf, yf), (xs, ys) in zip(
            getattr(fast, f"{split}_dataloader")(), getattr(slow, f"{split}_dataloader")(), strict=True
        ):
            assert torch.equal(yf, ys) and torch.allclose(xf, xs, atol=1e-5)
    xs, ys = next(iter(slow.train_dataloader()))
    assert xs.shape == (8, 3, 32, 32) and xs.dtype == torch.float32 and len(slow.train_dataloader()) == 5


def test_resize_to_other_image_size(cifar10: Path) -> None:
    dm = CIFARDataModule(root=str(cifar10), verify=False, val_size=10, batch_size=8, image_size=64)
    x, _ = next(iter(dm.train_dataloader()))
    assert x.shape == (8, 3, 64, 64)


@pytest.mark.parametrize("device_resident", [True, False])
def test_lightning_fit_and_test(cifar10: Path, device_resident: bool) -> None:
    dm = CIFARDataModule(
        root=str(cifar10), verify=False, val_size=10, batch_size=8, device_resident=device_resident, num_workers=0
    )
    trainer, metrics = smoke_fit(dm)
    assert trainer.state.finished and 0 <= metrics["test_acc"] <= 1


# -- the real JPEG-derived copy (../shared/data/cifar10), skipped when absent -----------------------------------

real = pytest.mark.skipif(not (REAL / "cifar-10-batches-py").is_dir(), reason=f"{REAL} not present")


@real
def test_real_cifar10_loads_with_verify_false() -> None:
    dm = CIFARDataModule(root=str(REAL), verify=False)
    info = dm.describe()
    assert (info["train_size"], info["val_size"], info["test_size"]) == (45000, 5000, 10000)
    assert dm.classes[:3] == ["airplane", "automobile", "bird"]
    assert np.all(np.bincount(dm.splits["val"][1].numpy(), minlength=10) == 500)
    assert np.all(np.bincount(dm.splits["test"][1].numpy(), minlength=10) == 1000)
    total = sum(dm.splits[s][0].sum((0, 2, 3), dtype=torch.int64) for s in ("train", "val"))
    mean = total.double() / (50000 * 32 * 32 * 255)
    assert torch.allclose(mean, torch.tensor([0.4913, 0.4821, 0.4465], dtype=torch.float64), atol=2e-3)  # PROVENANCE.md
    xb, yb = next(iter(dm.train_dataloader()))
    assert xb.shape == (128, 3, 32, 32) and yb.max() <= 9


@real
def test_real_cifar10_checksum_refused() -> None:
    with pytest.raises(ConfigError, match="checksum mismatch .*data.verify=false"):
        CIFARDataModule(root=str(REAL), verify=True).setup()
