"""The tiny grid that read 0.000 everywhere: a class-sorted image folder of real JPEG/PNG files (classes in folders,
files in class order), evaluated on a part of its test split (the *_tiny grids set trainer.limit_test_batches).
The part is stratified, every record counts the images it evaluated per class, and the table's footnote says how
many of the split's images test top-1 was measured on."""

from __future__ import annotations

from pathlib import Path

import pytest

from data.synthetic import write_image_folder
from helpers.cli import run_cli
from helpers.wandb import display_name
from models.analysis.runs import load_runs

CLASSES = [f"c{i}" for i in range(10)]


@pytest.mark.slow
def test_a_tiny_grid_over_a_class_sorted_folder_evaluates_every_class(tmp_path: Path, wandb_env: Path) -> None:
    root = write_image_folder(tmp_path / "tree", CLASSES, {"train": 12, "val": 10}, size=(40, 30))
    sweep = tmp_path / "sweep"
    done = run_cli("ablate", ["head_fc_vs_gap_tiny", "model=resnet20", "data=imagefolder", f"data.root={root}",
                              "logger=wandb",
                              "data.batch_size=8", "data.image_size=32", "trainer.limit_train_batches=6",
                              f"hydra.sweep.dir={sweep}"],
                   cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    runs = load_runs(sweep)
    assert len(runs) == 2 and all(r["status"] == "finished" for r in runs)
    for r in runs:
        assert r["data/test_size"] == 100 and r["test/images"] == 32  # limit_test_batches=4 x 8 images
        assert len(r["test/images_per_class"]) == 10 and min(r["test/images_per_class"]) >= 3, r
        assert r["val/images"] == r["data/val_size"] == 12  # 10% of train, carved stratified: all of it fits
    table = (sweep / "report" / "table.md").read_text()
    assert "test images evaluated: 32 of 100 (3-4 per class; a stratified part: trainer.limit_test_batches)" in table
    assert "warning: the test evaluation" not in done.stdout  # every class was evaluated
    # on the dashboard the two runs differ by name: the knob the grid varies is in it
    names = sorted(display_name(Path(r["run_dir"])) for r in runs)
    assert names == ["resnet20-imagefolder-s0 model.head=fc", "resnet20-imagefolder-s0 model.head=gap"], names


@pytest.mark.slow
def test_a_part_too_small_for_every_class_is_said_in_one_line(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "tree", CLASSES, {"train": 6, "val": 4}, size=(40, 30))
    done = run_cli("train", ["model=resnet20", "data=imagefolder", f"data.root={root}", "data.batch_size=4",
                             "data.image_size=32", "trainer.max_epochs=1", "trainer.limit_train_batches=2",
                             "trainer.limit_test_batches=1", "logger=csv", "measure.parts=false", "summary=false",
                             f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [line for line in done.stdout.splitlines() if line.startswith("warning: the test evaluation")]
    assert lines == ["warning: the test evaluation covered 4 of 40 images and no image of 6 of 10 classes "
                     "(" + ", ".join(str(c) for c in sorted(set(range(10)) - set(_covered(tmp_path / "run"))))
                     + "): raise trainer.limit_test_batches"]


def _covered(run_dir: Path) -> list[int]:
    from models.train.records import read_results

    return [c for c, n in enumerate(read_results(run_dir)["test/images_per_class"]) if n]
