"""2-process CPU DDP (gloo) through scripts/train.py: one results.json, one wandb run, and test metrics synced across
the ranks: what rank 0 records equals the same checkpoint evaluated in one process on the union of both shards."""

from __future__ import annotations

import json
from pathlib import Path

import lightning.pytorch as pl
import pytest
from omegaconf import OmegaConf

from data import build_datamodule
from helpers.runs import FAST_TRAIN
from models.network import Net
from models.train.build import build_spec
from models.train.checkpoints import load_checkpoint
from models.train.module import Classifier


def evaluate_alone(run_dir: Path, checkpoint: str, batches: int) -> dict[str, float]:
    """The checkpoint's test metrics in ONE process over the first `batches` x batch_size test images."""
    cfg = OmegaConf.load(run_dir / "config.yaml")
    dm = build_datamodule(cfg.data)
    dm.setup("fit")
    _, spec = build_spec(cfg.model, dm)
    module = Classifier(Net(spec), spec.num_classes)
    module.load_state_dict(load_checkpoint(checkpoint)["state_dict"])
    trainer = pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                         enable_model_summary=False, limit_test_batches=batches)
    return trainer.test(module, datamodule=dm, verbose=False)[0]


@pytest.mark.slow
def test_cpu_ddp_two_processes(train_script, wandb_env: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "ddp"
    proc = train_script([*FAST_TRAIN, "trainer.accelerator=cpu", "trainer.devices=2", "trainer.strategy=ddp",
                         "logger=wandb", f"hydra.run.dir={run_dir}"], timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads((run_dir / "results.json").read_text())
    assert r["status"] == "finished" and r["hardware/num_devices"] == 2
    # limit_train_batches=4 per rank, 2 epochs: the global step counts optimizer steps (4 per epoch)
    assert r["steps"] == 8 and r["epochs"] == 2 and r["sched/total_steps"] == 8  # per-rank batches: exact
    # synced: rank r tested samples r, r+2, r+4, ... in 2 batches of 32, i.e. together the first 128 test images
    alone = evaluate_alone(run_dir, r["best_checkpoint"], batches=4)
    assert r["test/acc"] == pytest.approx(alone["test/acc"], abs=1e-6)
    assert r["test/loss"] == pytest.approx(alone["test/loss"], rel=1e-5)
    assert r["test/acc_top5"] == pytest.approx(alone["test/acc_top5"], abs=1e-6)
    assert r["train/images_per_s"] > 0
    assert len(list(run_dir.rglob("results.json"))) == 1
    assert len(list(run_dir.glob("wandb/offline-run-*"))) == 1  # rank 0 alone logs to wandb
    assert not list(run_dir.glob("**/.*.tmp"))
