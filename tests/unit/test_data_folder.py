"""Image-folder datamodule on small real JPEG/PNG trees written on the fly: layouts, subsets, errors, cache."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms.v2 import functional as TF

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


def test_imagefolder_basics_val_carved_from_train_and_val_folder_held_out(tree: Path) -> None:
    dm = _dm(tree)
    info = dm.describe()
    assert info["num_classes"] == 3 and dm.classes == WNIDS
    assert (info["train_size"], info["val_size"], info["test_size"]) == (16, 2, 6)  # auto: 10% of train/'s 18
    assert info["val_source"] == "train/ (stratified 2 of 18, seed 0)" and info["val_is_test"] is False
    assert info["test_source"] == "val/ (held out)"
    assert {p.suffix for p, _ in dm.files["train"]} == {".jpg", ".png"}
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (4, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert len(dm.train_dataloader()) == 4 and len(dm.val_dataloader()) == 1 and len(dm.test_dataloader()) == 2
    xt, yt = next(iter(dm.test_dataloader()))
    # test batches come class-interleaved (data.splits.interleaved_order): a limited test is a stratified part
    assert sorted(yt.tolist()) == [0, 0, 1, 2] and xt.min() > -2.2 and xt.max() < 2.7  # ImageNet-normalised range
    train = {p for p, _ in dm.files["train"]}
    carved = [dm.files["train"][i][0] for i in dm.splits["val"][1].tolist()]
    kept = [dm.files["train"][i][0] for i in dm.splits["train"][1].tolist()]
    assert set(carved) | set(kept) == train and not set(carved) & set(kept)  # a partition of train/


def test_val_size_count_fraction_and_the_opt_out(tree: Path) -> None:
    three = _dm(tree, val_size=3)
    three.setup()
    assert sorted(three.files["train"][i][1] for i in three.splits["val"][1].tolist()) == [0, 1, 2]  # stratified
    assert _dm(tree, val_size=0.5).describe()["val_size"] == 9
    seeded = [_dm(tree, val_size=3, seed=s) for s in (0, 0, 1)]
    for dm in seeded:
        dm.setup()
    carved = [dm.splits["val"][1].tolist() for dm in seeded]
    assert carved[0] == carved[1] != carved[2]  # data.seed picks the split, reproducibly
    old = _dm(tree, val_size=0).describe()  # the explicit opt-out: val/ selects and is reported as test
    assert old["val_is_test"] is True and old["test_source"] == "val/ (also selected the checkpoint)"
    assert (old["train_size"], old["val_size"], old["test_size"]) == (18, 6, 6)
    for bad in (-1, 1.5, "most", 18):
        with pytest.raises(ConfigError, match="data.val_size="):
            _dm(tree, val_size=bad).describe()


def test_a_test_folder_is_the_test_split(tree: Path) -> None:
    write_image_folder(tree, WNIDS, {"test": 3}, seed=1)
    info = _dm(tree).describe()
    assert info["test_source"] == "test/ (held out)" and info["val_source"] == "val/" and info["val_is_test"] is False
    assert (info["train_size"], info["val_size"], info["test_size"]) == (18, 6, 9)
    with pytest.raises(ConfigError, match="data.val_size=3 applies to trees without test/"):
        _dm(tree, val_size=3).describe()


def test_class_subsets(tree: Path) -> None:
    dm = _dm(tree, classes=[WNIDS[2], WNIDS[0]])
    assert dm.num_classes == 2 and dm.describe()["train_size"] == 11  # 12 minus the carved 10%
    assert {p.parent.name for p, y in dm.files["train"] if y == 0} == {WNIDS[2]}  # label order = classes order
    assert _dm(tree, num_classes_subset=2).classes == WNIDS[:2]
    with pytest.raises(ConfigError, match="data.classes names n99999999 not present"):
        _ = _dm(tree, classes=["n99999999"]).num_classes
    with pytest.raises(ConfigError, match="data.num_classes_subset=5"):
        _ = _dm(tree, num_classes_subset=5).num_classes
    with pytest.raises(ConfigError, match="data.classes and data.num_classes_subset"):
        _dm(tree, classes=[WNIDS[0]], num_classes_subset=1)


def test_structure_errors(tmp_path: Path, tree: Path) -> None:
    nowhere = tmp_path / "nowhere"
    with pytest.raises(ConfigError, match=rf"^{nowhere}/train not found \(data.root={nowhere}\): set data.root="):
        _dm(nowhere).setup()
    empty = tree / "train" / "n09999999"
    empty.mkdir()
    with pytest.raises(ConfigError, match=r"2 data problem\(s\) in .*: .*train/n09999999/ \(a class folder with no "
                                          r"images .*; .*val/n09999999/ \(class folder not found"):
        _dm(tree).setup()  # the empty train folder and the val folder that class lacks: both at once
    empty.rmdir()
    (tree / "val" / WNIDS[1]).rename(tree / "val_moved")
    with pytest.raises(ConfigError, match=rf"1 data problem\(s\) in .*val/{WNIDS[1]}/ \(class folder not found.*: "
                                          r"fill or drop those classes \(data.classes\)$"):
        _dm(tree).setup()
    (tree / "val_moved").rename(tree / "val" / WNIDS[1])
    write_image_folder(tree, ["n07777777"], {"val": 1})
    with pytest.raises(ConfigError, match=r"val has class folders n07777777 absent from train/"):
        _dm(tree).setup()
    assert _dm(tree, num_classes_subset=3).describe()["test_size"] == 6  # a subset ignores the extra folder
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


def test_every_unreadable_image_is_listed_and_the_run_keeps_the_list(tree: Path, tmp_path: Path) -> None:
    """Five empty JPEGs: the one line names three and counts the other two; the run that fails on them writes all
    five to <run dir>/unreadable_images.txt and results.json (data/unreadable_images)."""
    from helpers.runs import compose_train
    from models.train.records import read_results
    from models.train.run import train

    empty = sorted((tree / "train").rglob("*.jpg"))[:5]
    for path in empty:
        path.write_bytes(b"")
    with pytest.raises(ConfigError) as raised:
        _dm(tree).prepare_data()
    message = str(raised.value)
    assert message.startswith("5 unreadable image(s): ") and message.count(str(tree)) == 3
    assert " and 2 more (all 5 listed in the run directory's unreadable_images.txt): delete or replace them" in message
    run_dir = tmp_path / "run"
    overrides = ["data=imagefolder", f"data.root={tree}", "data.image_size=32", "logger=none", f"run_dir={run_dir}"]
    with pytest.raises(ConfigError):
        train(compose_train(overrides), overrides=overrides)
    listed = (run_dir / "unreadable_images.txt").read_text().splitlines()
    assert sorted(line.split(" (")[0] for line in listed) == sorted(map(str, empty))
    record = read_results(run_dir)
    assert record["status"] == "failed" and len(record["data/unreadable_images"]) == 5


# with a worker, torch's DataLoader needs ~5 s to shut the worker down after it raised: marked slow
@pytest.mark.parametrize("workers", [0, pytest.param(1, marks=pytest.mark.slow)])
def test_truncated_jpeg_at_load_time_names_the_file(tree: Path, workers: int) -> None:
    bad = _truncate(tree)
    dm = _dm(tree, verify=False, num_workers=workers, batch_size=18, val_size=0)
    dm.prepare_data()  # no scan
    with pytest.raises(ConfigError, match=rf"^cannot read image {bad} .*: delete or replace the file$") as err:
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
    assert (info["train_size"], info["val_size"], info["test_size"]) == (11, 1, 6)  # val/ is the held-out test
    assert sorted(y for _, y in dm.files["val"]) == [0, 0, 1, 1, 2, 2]
    x, _ = next(iter(dm.test_dataloader()))
    assert x.shape == (4, 3, 32, 32)
    (root / "val" / "val_annotations.txt").unlink()
    with pytest.raises(ConfigError, match="val_annotations.txt not found"):
        build_datamodule(data_config("tinyimagenet", root=str(root))).setup()


def test_imagenette_layout_finds_extracted_folder(tmp_path: Path) -> None:
    write_image_folder(tmp_path / "imagenette2-160", WNIDS, {"train": 2, "val": 1})
    dm = build_datamodule(data_config("imagenette", root=str(tmp_path), image_size=32, batch_size=2, num_workers=0))
    assert dm.root == tmp_path / "imagenette2-160" and dm.describe()["train_size"] == 5
    with pytest.raises(ConfigError, match="data.root=.*or data.download=true"):
        build_datamodule(data_config("imagenette", root=str(tmp_path / "none"))).setup()
    assert build_datamodule(data_config("imagenette", root=str(tmp_path / "none"), download=True)).num_classes == 10


def test_cache_built_reused_and_rebuilt(tree: Path, tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    dm = _dm(tree, cache=True, cache_dir=str(cache_dir))
    dm.prepare_data()
    dm.setup()
    dm.prepare_data()  # Lightning calls it again inside fit: the record must still say what this run did
    assert dm.describe()["cache_status"] == "train=built,val=built"
    files = sorted(cache_dir.glob("*.npy"))
    assert len(files) == 2 and not list(cache_dir.glob("*.partial"))
    arr = np.load(files[0], mmap_mode="r")
    assert arr.dtype == np.uint8 and arr.shape[1:] == (3, 36, 36)  # int(32 * 256 / 224)
    x, _y = next(iter(dm.train_dataloader()))
    assert x.shape == (4, 3, 32, 32) and x.dtype == torch.float32 and len(dm.train_dataloader()) == 4

    again = _dm(tree, cache=True, cache_dir=str(cache_dir))
    again.setup()
    assert again.describe()["cache_status"] == "train=reused,val=reused"
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


def test_one_cache_per_content_in_the_user_cache_dir(tree: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    as_folder = _dm(tree, cache=True)
    as_folder.setup()
    assert as_folder.cache_dir() == tmp_path / "xdg" / "vgg-vs-resnet" / "images"
    copy = tmp_path / "copy" / "imagenette2-160"
    shutil.copytree(tree, copy)  # new paths and mtimes, same images
    as_imagenette = build_datamodule(data_config("imagenette", root=str(copy.parent), image_size=32, batch_size=4,
                                                 num_workers=0, cache=True))
    as_imagenette.setup()
    assert as_imagenette.cache_events == {"train": "reused", "val": "reused"}  # keyed by content, not by name/path
    assert len(list(as_folder.cache_dir().glob("*.npy"))) == 2
    assert not [p for p in tree.rglob("*") if p.suffix in (".npy", ".json")]  # nothing written into the dataset


def test_cached_and_uncached_paths_give_identical_tensors(tmp_path: Path) -> None:
    """Non-square images (40x30): both paths resize the shorter side and centre-crop (no squashing), identically."""
    tree = write_image_folder(tmp_path / "ds", WNIDS, {"train": 6, "val": 2}, size=(40, 30))
    plain, cached = _dm(tree), _dm(tree, cache=True, cache_dir=str(tmp_path / "cache"))
    for split in ("train", "val", "test"):
        got = [list(getattr(dm, f"{split}_dataloader")()) for dm in (plain, cached)]
        assert len(got[0]) == len(got[1]) > 0
        for (xa, ya), (xb, yb) in zip(*got, strict=True):
            assert torch.equal(ya, yb) and torch.equal(xa, xb), split  # same crops and flips too
    path = plain.files["val"][0][0]
    with Image.open(path) as im:
        expect = TF.pil_to_tensor(TF.center_crop(TF.resize(im.convert("RGB"), 36, antialias=True), 36))
    assert torch.equal(cached.cached["val"][0][0], expect)


def test_cache_names_every_unreadable_image(tree: Path, tmp_path: Path) -> None:
    bad = [_truncate(tree), tree / "val" / WNIDS[2] / "1.jpg"]
    bad[1].write_bytes(b"not a jpeg")
    with pytest.raises(ConfigError) as err:
        _dm(tree, cache=True, cache_dir=str(tmp_path / "cache")).prepare_data()
    message = str(err.value)
    assert message.startswith("2 unreadable image(s) while building the image cache: ") and "verify" not in message
    assert all(str(p) in message for p in bad) and "\n" not in message


def test_cache_ignores_interrupted_build(tree: Path, tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    dm = _dm(tree, cache=True, cache_dir=str(cache_dir))
    dm.setup()
    built = next(cache_dir.glob("*.npy"))
    for npy in cache_dir.glob("*.npy"):
        npy.rename(npy.with_name(f"{npy.stem}.123.partial"))  # as if killed before the final rename
    again = _dm(tree, cache=True, cache_dir=str(cache_dir))
    again.setup()
    assert again.cache_events == {"train": "built", "val": "built"} and built.is_file()


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


@pytest.mark.parametrize("cache", [False, True])
def test_every_data_problem_of_a_tree_in_one_failure(tree: Path, tmp_path: Path, cache: bool) -> None:
    """An empty class folder, an HTML page saved as .JPEG, a text file named .png and a truncated JPEG: one failure
    names them all with what each one is, on the first run (not one problem per attempt)."""
    for image in (tree / "val" / WNIDS[1]).iterdir():
        image.unlink()  # an empty class folder
    html = tree / "train" / WNIDS[0] / "saved_page.JPEG"
    html.write_bytes(b"<!DOCTYPE html>\n<html><head><title>403 Forbidden</title></head></html>\n")
    text = tree / "train" / WNIDS[2] / "notes.png"
    text.write_text("photo of a dog, to be downloaded later\n")
    truncated = _truncate(tree)
    with pytest.raises(ConfigError) as raised:
        _dm(tree, cache=cache, cache_dir=str(tmp_path / "cache")).prepare_data()
    error = raised.value
    assert str(error).startswith(f"4 data problem(s) in {tree}: {tree / 'val' / WNIDS[1]}/ (a class folder with no "
                                 "images")
    assert "fill or drop those classes (data.classes) and delete or replace the unreadable files" in str(error)
    listed = "\n".join(error.files)
    assert f"{html} (an HTML page, not an image)" in listed
    assert f"{text} (a text file, not an image)" in listed
    assert f"{truncated} (" in listed and len(error.files) == 4
