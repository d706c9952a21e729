"""Records that never lie (issue 14), on generated image folders and digits, through scripts/train.py:

a killed image-folder run resumes to the uninterrupted history (train metrics included); every data/* record says
what the run did (cache built or reused, where val and test come from); a run directory belongs to one
configuration and a finished run's files are never overwritten; a val split that also picked the checkpoint is
labelled wherever its numbers appear. Killed runs are real processes; the other commands run scripts/train.py in
this process (helpers.cli). (CSV history and wall time across kills: test_crash.py; wandb history across a
SIGTERM: test_resume.py; preprocessing and caches: tests/unit/test_data_folder.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from data.synthetic import write_image_folder
from helpers.cli import run_cli
from helpers.kills import rerun
from helpers.kills import train as killable_train
from helpers.runs import csv_history
from models.analysis.report import report
from models.train.records import read_results

WNIDS = ["n01440764", "n02102040", "n02979186"]
FOLDER = ["data=imagefolder", "data.image_size=32", "data.batch_size=8", "data.num_workers=0",
          "trainer.max_epochs=3", "trainer.deterministic=true", "trainer.enable_progress_bar=false",
          "checkpoint.every_n_steps=2", "measure.warmup_steps=1", "logger=csv", "summary=false", "measure.parts=false"]
METRICS = ("val/acc", "val/loss", "val/acc_best", "test/acc", "test/loss", "test_last/acc", "steps", "epochs")


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """48 training images (43 train + 5 carved for val), 12 held-out test images in val/."""
    return write_image_folder(tmp_path_factory.mktemp("tree") / "ds", WNIDS, {"train": 16, "val": 4}, size=(40, 30))


@pytest.mark.slow
def test_a_killed_image_folder_run_resumes_to_the_uninterrupted_history(tree: Path, tmp_path: Path) -> None:
    args = [*FOLDER, f"data.root={tree}", f"data.cache_dir={tmp_path / 'cache'}"]
    ref = rerun(tmp_path / "reference", tmp_path, args=args)
    assert ref.returncode == 0, ref.stderr[-3000:]
    run_dir = tmp_path / "run"
    killed = killable_train(run_dir, tmp_path, "train_step:8", args=args)  # epoch 1, third batch (5 per epoch)
    assert killed.returncode != 0 and read_results(run_dir)["status"] == "running"
    again = rerun(run_dir, tmp_path, args=args)
    assert again.returncode == 0, again.stderr[-3000:]
    a, b = read_results(tmp_path / "reference"), read_results(run_dir)
    assert {k: a[k] for k in METRICS} == {k: b[k] for k in METRICS} and b["resumed_from"]
    assert csv_history(run_dir) == csv_history(tmp_path / "reference")  # every row, train/acc and loss included
    assert b["data/loader"].startswith("DataLoader workers decode") and b["data/val_is_test"] is False


@pytest.mark.slow
def test_data_records_say_what_this_run_did(tree: Path, tmp_path: Path) -> None:
    common = [*FOLDER, "trainer.max_epochs=1", f"data.root={tree}", "data.cache=true",
              f"data.cache_dir={tmp_path / 'cache'}"]
    first = run_cli("train", [*common, f"hydra.run.dir={tmp_path / 'first'}"], tmp_path)
    second = run_cli("train", [*common, "seed=1", f"hydra.run.dir={tmp_path / 'second'}"], tmp_path)
    assert first.returncode == 0 and second.returncode == 0, first.stderr[-2000:] + second.stderr[-2000:]
    a, b = read_results(tmp_path / "first"), read_results(tmp_path / "second")
    assert a["data/cache_status"] == "train=built,val=built"  # the run that built the caches says so
    assert b["data/cache_status"] == "train=reused,val=reused"
    assert a["data/val_source"] == "train/ (stratified 5 of 48, seed 0)" and a["data/test_source"] == "val/ (held out)"
    assert (a["data/train_size"], a["data/val_size"], a["data/test_size"]) == (43, 5, 12)
    assert a["data/cache_dir"] == str(tmp_path / "cache") and not list(tree.rglob("*.npy"))


@pytest.mark.slow
def test_val_is_test_is_labelled_in_every_record(tree: Path, tmp_path: Path) -> None:
    proc = run_cli("train", [*FOLDER, "trainer.max_epochs=1", f"data.root={tree}", "data.val_size=0", "summary=true",
                             f"hydra.run.dir={tmp_path / 'run'}"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    r = read_results(tmp_path / "run")
    assert r["data/val_is_test"] is True and r["data/test_source"] == "val/ (also selected the checkpoint)"
    assert "test/acc is on the val split that also picked the checkpoint" in proc.stdout
    table, _ = report(str(tmp_path / "run"), out=tmp_path / "report")
    assert "test split: val/ (also selected the checkpoint)" in table and "CAVEAT" in table


@pytest.mark.slow
def test_a_run_directory_belongs_to_one_configuration(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    base = ["data.image_size=8", "trainer.max_epochs=1", "trainer.limit_train_batches=2",
            "trainer.limit_val_batches=1", "trainer.limit_test_batches=1", "logger=csv", "measure.parts=false",
            f"hydra.run.dir={run_dir}"]
    first = run_cli("train", base, tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    kept = {p: p.read_bytes() for p in [run_dir / "results.json", run_dir / "config.yaml",
                                         *sorted((run_dir / ".hydra").iterdir())]}
    assert sorted(p.name for p in kept) == ["config.yaml", "config.yaml", "hydra.yaml", "overrides.yaml",
                                            "results.json"]  # .hydra/ written by the run itself

    other = run_cli("train", [*base, "model=vgg11_cifar", "data.image_size=32", "optim.lr=0.5"], tmp_path)
    lines = other.stderr.strip().splitlines()
    assert other.returncode == 2 and len(lines) == 1, other.stderr[-2000:]
    assert lines[0].startswith(f"error: run directory {run_dir} belongs to another configuration: ")
    for part in ("model.name='resnet20' (now 'vgg11_cifar')", "data.image_size=8 (now 32)", "optim.lr=0.1 (now 0.5)"):
        assert part in lines[0]
    assert lines[0].endswith(f"re-run it with the settings of {run_dir}/config.yaml, or give this one its own "
                             "hydra.run.dir")

    noise = run_cli("train", [*base, "logger=none", "data.num_workers=0", "trainer.enable_progress_bar=false"],
                    tmp_path)
    assert noise.returncode == 0 and "already finished" in noise.stdout  # where/how it runs is not its identity
    assert {p: p.read_bytes() for p in kept} == kept  # neither refusal nor re-run touched the finished run's files
