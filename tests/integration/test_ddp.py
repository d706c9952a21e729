"""2-process CPU DDP (gloo) through scripts/train.py: one results.json, one wandb run, synced metrics."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers.runs import FAST_TRAIN


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
    assert 0 <= r["test/acc"] <= 1 and 0 <= r["test_last/acc"] <= 1
    assert r["train/images_per_s"] > 0
    assert len(list(run_dir.rglob("results.json"))) == 1
    assert len(list(run_dir.glob("wandb/offline-run-*"))) == 1  # rank 0 alone logs to wandb
    assert not list(run_dir.glob("**/.*.tmp"))
