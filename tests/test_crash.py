"""Crash safety (issue 6, item 1): kill a real training run (scripts/train.py) at named points — SIGTERM mid-epoch,
SIGKILL mid-epoch, SIGKILL during validation, SIGKILL while a checkpoint is being written — re-run the same command
after each, and check the final weights, optimizer state and metrics are IDENTICAL to an uninterrupted run
(trainer.deterministic=true, CPU).

The kill points are deterministic: the interrupted runs go through HOOK below, which patches the training step, the
validation step or the rename at the end of an atomic checkpoint write to signal its own process at the named point,
then runs scripts/train.py unchanged (runpy). The re-runs are the plain command. The library has no test hooks.
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from models.records import load_checkpoint, read_results

REPO = Path(__file__).resolve().parents[1]

# 5 batches/epoch x 3 epochs = 15 optimizer steps; last.ckpt every 2 steps (2, 4, 6, ...) and at each epoch end,
# so kills land with a mid-epoch last.ckpt. Augmentation on: the resumed epoch must replay its random crops too.
ARGS = ["data.image_size=8", "data.batch_size=32", "data.augment=true", "trainer.max_epochs=3",
        "trainer.limit_train_batches=5", "trainer.limit_val_batches=2", "trainer.limit_test_batches=2",
        "trainer.deterministic=true", "trainer.enable_progress_bar=false", "checkpoint.every_n_steps=2",
        "measure.warmup_steps=1", "summary=false", "logger=csv", "sched.warmup_steps=2"]
STEPS = 15

HOOK = r"""
import os, runpy, signal, sys
from pathlib import Path
repo = Path(os.environ["CRASH_REPO"])
sys.path[:0] = [str(repo / "scripts"), str(repo)]
point, n = os.environ["CRASH_AT"].split(":")
n = int(n)
sig = getattr(signal, os.environ.get("CRASH_SIGNAL", "SIGKILL"))
fired = []

def fire(where):
    if not fired:
        fired.append(where)
        Path(os.environ["CRASH_MARK"]).write_text(where)
        os.kill(os.getpid(), sig)

from models.lightning import Classifier
if point == "train_step":  # before the forward of optimizer step n (global_step == n)
    orig_train = Classifier.training_step
    def training_step(self, batch, batch_idx):
        if self.global_step == n:
            fire(f"train_step {n} (epoch {self.current_epoch}, batch {batch_idx})")
        return orig_train(self, batch, batch_idx)
    Classifier.training_step = training_step
elif point == "validation":  # second validation batch of epoch n
    orig_val = Classifier.validation_step
    def validation_step(self, batch, batch_idx):
        if self.current_epoch == n and batch_idx == 1 and not self.trainer.sanity_checking:
            fire(f"validation epoch {n} at step {self.global_step}")
        return orig_val(self, batch, batch_idx)
    Classifier.validation_step = validation_step
elif point == "nan_loss":  # the training loss of optimizer step n becomes NaN (no signal: divergence tests)
    import torch
    orig_step = Classifier._step
    def _step(self, batch):
        loss, logits, y = orig_step(self, batch)
        if self.training and self.global_step == n:
            Path(os.environ["CRASH_MARK"]).write_text(f"nan at step {n}")
            loss = loss * torch.tensor(float("nan"))
        return loss, logits, y
    Classifier._step = _step
elif point == "ckpt_write":  # n-th checkpoint of this process: temp file complete and fsync'ed, not yet renamed
    from models import records
    real_replace, count = os.replace, [0]
    def replace(src, dst, *a, **k):
        if str(dst).endswith(".ckpt"):
            count[0] += 1
            if count[0] == n:
                assert Path(src).stat().st_size > 0
                fire(f"checkpoint write {Path(dst).name} (temp {Path(src).name})")
        return real_replace(src, dst, *a, **k)
    records.os.replace = replace
sys.argv = [str(repo / "scripts" / "train.py"), *sys.argv[1:]]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def _env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("HYDRA_FULL_ERROR", "CRASH_AT")}
    env.update(WANDB_MODE="offline", WANDB_SILENT="true", WANDB_DIR=str(tmp), PYTHONUNBUFFERED="1")
    return env


def train(run_dir: Path, tmp: Path, at: str | None = None, sig: str = "SIGKILL", args: list[str] | None = None
          ) -> subprocess.CompletedProcess:
    args = [*(ARGS if args is None else args), f"hydra.run.dir={run_dir}"]
    env = _env(tmp)
    if at is None:
        cmd = [sys.executable, str(REPO / "scripts" / "train.py"), *args]
    else:
        cmd = [sys.executable, "-c", HOOK, *args]
        (tmp / "fired").unlink(missing_ok=True)
        env.update(CRASH_REPO=str(REPO), CRASH_AT=at, CRASH_SIGNAL=sig, CRASH_MARK=str(tmp / "fired"))
    return subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True, timeout=300)


METRICS = ("val/acc", "val/loss", "val/acc_top5", "val/acc_best", "test/acc", "test/loss", "test/acc_top5",
           "test_last/acc", "test_last/loss", "test_last/acc_top5", "steps", "epochs", "status")


def _same_tensors(a: object, b: object, where: str = "") -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), where
        for k in a:
            _same_tensors(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _same_tensors(x, y, f"{where}[{i}]")


@pytest.mark.slow
def test_kills_at_named_points_then_rerun_is_identical_to_uninterrupted(tmp_path: Path) -> None:
    ref_dir, run_dir = tmp_path / "reference", tmp_path / "run"
    ref = train(ref_dir, tmp_path)
    assert ref.returncode == 0, ref.stderr[-3000:]
    fired = tmp_path / "fired"
    last = run_dir / "checkpoints" / "last.ckpt"

    # 1. SIGTERM (SLURM's preemption notice) mid-epoch: a resumable checkpoint, no traceback, exit status 143
    p = train(run_dir, tmp_path, "train_step:3", "SIGTERM")
    assert fired.exists() and p.returncode == 143, p.stderr[-3000:]  # 128 + SIGTERM: the job stopped, resumable
    assert "Traceback" not in p.stderr and "interrupted by SIGTERM" in p.stdout
    r = read_results(run_dir)
    assert r["status"] == "running" and r["interrupted"] == "SIGTERM" and r["interrupted_at_step"] == 4
    assert load_checkpoint(last)["global_step"] == 4  # step 3 finished, then the signal was honoured

    # 2. SIGKILL mid-epoch (epoch 1, third batch): last.ckpt is the mid-epoch one of step 6
    p = train(run_dir, tmp_path, "train_step:7")
    assert fired.exists() and p.returncode == -signal.SIGKILL, p.stderr[-3000:]
    assert read_results(run_dir)["status"] == "running"
    assert load_checkpoint(last)["global_step"] == 6

    # 3. SIGKILL during epoch 1's validation: last.ckpt is the one written after step 10 (end of the epoch's batches)
    p = train(run_dir, tmp_path, "validation:1")
    assert fired.read_text() == "validation epoch 1 at step 10" and p.returncode == -signal.SIGKILL, p.stderr[-3000:]
    assert load_checkpoint(last)["global_step"] == 10

    # 4. SIGKILL while the first checkpoint of the re-run is being written: the temp file is left, the old file is intact
    p = train(run_dir, tmp_path, "ckpt_write:1")
    assert fired.read_text().startswith("checkpoint write") and p.returncode == -signal.SIGKILL, p.stderr[-3000:]
    assert list((run_dir / "checkpoints").glob(".*.ckpt.*.tmp")), "the kill did not land mid-write"
    assert load_checkpoint(last)["global_step"] == 10  # the previous good file
    assert read_results(run_dir)["status"] == "running"

    # 5. the same command, no hook: resumes and finishes
    p = train(run_dir, tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    assert f"Restoring states from the checkpoint path at {last}" in p.stderr
    assert not list(run_dir.rglob("*.tmp"))  # leftovers of the killed write are cleaned up

    a, b = read_results(ref_dir), read_results(run_dir)
    assert b["status"] == "finished" and b["steps"] == STEPS and b["resumed_from"] == str(last)
    assert {k: a.get(k) for k in METRICS} == {k: b.get(k) for k in METRICS}
    # val/acc_best survives the restarts: the max over all epochs, including those validated before a kill
    with open(ref_dir / "csv" / "metrics.csv") as f:
        val_acc = [float(row["val/acc"]) for row in csv.DictReader(f) if row.get("val/acc")]
    assert len(val_acc) == 3 and b["val/acc_best"] == max(val_acc)
    for name in ("last.ckpt", "best.ckpt"):
        ca, cb = (load_checkpoint(d / "checkpoints" / name) for d in (ref_dir, run_dir))
        assert ca["global_step"] == cb["global_step"] and ca["epoch"] == cb["epoch"]
        _same_tensors(ca["state_dict"], cb["state_dict"], f"{name}:state_dict")
        _same_tensors(ca["optimizer_states"], cb["optimizer_states"], f"{name}:optimizer_states")
        assert ca["lr_schedulers"] == cb["lr_schedulers"]
