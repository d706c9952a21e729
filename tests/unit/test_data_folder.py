"""Image-folder datamodule on small real JPEG/PNG trees written on the fly: layouts, subsets, errors, cache."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from data import build_datamodule
from data.folder import ImageFolderDataModule
from data.synthetic import write_image_folder
from helpers.fits import smoke_fit
from helpers.runs import data_config
from models.errors import ConfigError

WNIDS = ["n01440764", "n02102040", "n02979186"]


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return write_image_folder(tmp_path / "ds", WNIDS, {"train": 6, "val": 2})


def _dm(root: Path, **kw) -> ImageFolderDataModule:
    return ImageFolderDataModule(root=str(root), **{"image_size": 32, "batch_size": 4, "num_workers": 0, **kw})


def test_imagefolder_basics(tree: Path) -> None:
    dm = _dm(tree)
    info = dm.describe()
    assert info["num_classes"] == 3 and dm.classes == WNIDS
    assert (info["train_size"], info["val_size"], info["test_size"]) == (18, 6, 6)
    assert info["test_source"] == "val (no test/ split)" and info["val_is_test"] is True
    assert {p.suffix for p, _ in dm.samples["train"]} == {".jpg", ".png"}
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (4, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert len(dm.train_dataloader()) == 4 and len(dm.val_dataloader()) == 2
    xv, yv = next(iter(dm.val_dataloader()))
    assert yv.tolist() == [0, 0, 1, 1] and xv.min() > -2.2 and xv.max() < 2.7  # ImageNet-normalised range


def test_test_split_is_used_when_present(tree: Path) -> None:
    write_image_folder(tree, WNIDS, {"test": 3}, seed=1)
    info = _dm(tree).describe()
    assert info["test_source"] == "test" and info["test_size"] == 9 and info["val_is_test"] is False


def test_class_subsets(tree: Path) -> None:
    dm = _dm(tree, classes=[WNIDS[2], WNIDS[0]])
    assert dm.num_classes == 2 and dm.describe()["train_size"] == 12
    assert {p.parent.name for p, y in dm.samples["train"] if y == 0} == {WNIDS[2]}  # label order = classes order
    assert _dm(tree, num_classes_subset=2).classes == WNIDS[:2]
    with pytest.raises(ConfigError, match="data.classes names n99999999 not present"):
        _ = _dm(tree, classes=["n99999999"]).num_classes
    with pytest.raises(ConfigError, match="data.num_classes_subset=5"):
        _ = _dm(tree, num_classes_subset=5).num_classes
    with pytest.raises(ConfigError, match="data.classes and data.num_classes_subset"):
        _dm(tree, classes=[WNIDS[0]], num_classes_subset=1)


def test_structure_errors(tmp_path: Path, tree: Path) -> None:
    with pytest.raises(ConfigError, match=r"data.root=.*nowhere/train not found"):
        _dm(tmp_path / "nowhere").setup()
    empty = tree / "train" / "n09999999"
    empty.mkdir()
    with pytest.raises(ConfigError, match=r"class folder .*train/n09999999 has no images"):
        _dm(tree).setup()
    empty.rmdir()
    (tree / "val" / WNIDS[1]).rename(tree / "val_moved")
    with pytest.raises(ConfigError, match=rf"class folder .*val/{WNIDS[1]} not found"):
        _dm(tree).setup()
    (tree / "val_moved").rename(tree / "val" / WNIDS[1])
    write_image_folder(tree, ["n07777777"], {"val": 1})
    with pytest.raises(ConfigError, match=r"val has class folders n07777777 absent from train/"):
        _dm(tree).setup()
    assert _dm(tree, num_classes_subset=3).describe()["val_size"] == 6  # a subset ignores the extra folder
    bare = tmp_path / "bare"
    (bare / "train").mkdir(parents=True)
    with pytest.raises(ConfigError, match="has no class folders"):
        _dm(bare).setup()
    with pytest.raises(ConfigError, match="data.download=true is not available"):
        _dm(tree, download=True)
    with pytest.raises(ConfigError, match="data.device_resident=true needs data.cache=true"):
        _dm(tree, device_resident=True)


def _truncate(tree: Path) -> Path:
    bad = tree / "train" / WNIDS[1] / "0.jpg"
    bad.write_bytes(bad.read_bytes()[:300])
    return bad


def test_truncated_jpeg_found_by_scan(tree: Path) -> None:
    bad = _truncate(tree)
    with pytest.raises(ConfigError, match=rf"1 unreadable image\(s\): {bad} .*delete or replace"):
        _dm(tree).prepare_data()


# with a worker, torch's DataLoader needs ~5 s to shut the worker down after it raised: marked slow
@pytest.mark.parametrize("workers", [0, pytest.param(1, marks=pytest.mark.slow)])
def test_truncated_jpeg_at_load_time_names_the_file(tree: Path, workers: int) -> None:
    bad = _truncate(tree)
    dm = _dm(tree, verify=False, num_workers=workers, batch_size=18)
    dm.prepare_data()  # no scan
    with pytest.raises(ConfigError, match=rf"^cannot read image {bad} .*delete or replace the file") as err:
        list(dm.train_dataloader())  # with workers: re-raised in the main process, still one clean line
    assert "Traceback" not in str(err.value)


def test_scan_accepts_trailing_bytes_after_jpeg_end(tree: Path) -> None:
    ok = tree / "train" / WNIDS[0] / "0.jpg"
    ok.write_bytes(ok.read_bytes() + b"\0" * 100)  # valid image, end marker no longer in the tail
    _dm(tree).prepare_data()


def test_tinyimagenet_layout(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "tiny-imagenet-200", WNIDS, {"train": 4, "val": 2}, layout="tinyimagenet")
    assert (root / "train" / WNIDS[0] / "images" / f"{WNIDS[0]}_0.JPEG").is_file()
    dm = build_datamodule(data_config("tinyimagenet", root=str(tmp_path), image_size=32, batch_size=4,
                                       num_workers=0))
    info = dm.describe()
    assert info["name"] == "tinyimagenet" and info["num_classes"] == 3
    assert (info["train_size"], info["val_size"], info["test_size"]) == (12, 6, 6)
    assert sorted(y for _, y in dm.samples["val"]) == [0, 0, 1, 1, 2, 2]
    x, _ = next(iter(dm.val_dataloader()))
    assert x.shape == (4, 3, 32, 32)
    (root / "val" / "val_annotations.txt").unlink()
    with pytest.raises(ConfigError, match="val_annotations.txt not found"):
        build_datamodule(data_config("tinyimagenet", root=str(root))).setup()


def test_imagenette_layout_finds_extracted_folder(tmp_path: Path) -> None:
    write_image_folder(tmp_path / "imagenette2-160", WNIDS, {"train": 2, "val": 1})
    dm = build_datamodule(data_config("imagenette", root=str(tmp_path), image_size=32, batch_size=2, num_workers=0))
    assert dm.root == tmp_path / "imagenette2-160" and dm.describe()["train_size"] == 6
    with pytest.raises(ConfigError, match="data.root=.*or data.download=true"):
        build_datamodule(data_config("imagenette", root=str(tmp_path / "none"))).setup()
    assert build_datamodule(data_config("imagenette", root=str(tmp_path / "none"), download=True)).num_classes == 10


def test_cache_built_reused_and_rebuilt(tree: Path, tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    dm = _dm(tree, cache=True, cache_dir=str(cache_dir))
    dm.prepare_data()
    assert dm.cache_events == {"train": "built", "val": "built"}
    files = sorted(cache_dir.glob("*.npy"))
    assert len(files) == 2 and not list(cache_dir.glob("*.partial"))
    arr = np.load(files[0], mmap_mode="r")
    assert arr.dtype == np.uint8 and arr.shape[1:] == (3, 36, 36)  # int(32 * 1.143)
    x, _y = next(iter(dm.train_dataloader()))
    assert x.shape == (4, 3, 32, 32) and x.dtype == torch.float32 and len(dm.train_dataloader()) == 4
    xv, _ = next(iter(dm.val_dataloader()))
    assert xv.shape == (4, 3, 32, 32)

    again = _dm(tree, cache=True, cache_dir=str(cache_dir))
    again.setup()
    assert again.cache_events == {"train": "reused", "val": "reused"}
    assert sorted(cache_dir.glob("*.npy")) == files

    src = tree / "val" / WNIDS[0] / "0.jpg"
    Image.new("RGB", (40, 30), (255, 0, 0)).save(src)
    os.utime(src, ns=(src.stat().st_atime_ns, src.stat().st_mtime_ns + 10**9))
    changed = _dm(tree, cache=True, cache_dir=str(cache_dir))
    changed.setup()
    assert changed.cache_events == {"train": "reused", "val": "built"}
    assert len(list(cache_dir.glob("*.npy"))) == 2  # the stale val cache was replaced
    red = changed.cached["val"][0][0]
    assert red[0].float().mean() > 240 and red[1].float().mean() < 15  # the new pixels are in the cache


def test_cache_ignores_interrupted_build(tree: Path, tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    dm = _dm(tree, cache=True, cache_dir=str(cache_dir))
    leftover = cache_dir / "imagefolder-train-x-36px-deadbeef.123.partial"
    leftover.write_bytes(b"half written")
    dm.setup()
    assert dm.cache_events["train"] == "built"


def test_cache_dir_not_writable_names_key(tree: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match="data.cache_dir=.*set data.cache_dir=<writable dir>"):
        _dm(tree, cache=True, cache_dir=str(blocker / "sub")).setup()


@pytest.mark.parametrize("cache", [False, True])
def test_lightning_fit_and_test(tree: Path, tmp_path: Path, cache: bool) -> None:
    dm = _dm(tree, cache=cache, cache_dir=str(tmp_path / "c"))
    trainer, metrics = smoke_fit(dm)
    assert trainer.state.finished and 0 <= metrics["test_acc"] <= 1
