"""Kill a real training run (scripts/train.py) at a named point: the interrupted runs go through HOOK, which patches
the training step, the validation step or the rename at the end of an atomic checkpoint write to signal its own
process at that point (or makes step n's loss NaN), then runs scripts/train.py unchanged (runpy). The library has
no test hooks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from helpers.runs import REPO, script_env

# 5 batches/epoch x 3 epochs = 15 optimizer steps; last.ckpt every 2 steps (2, 4, 6, ...) and at each epoch end,
# so kills land with a mid-epoch last.ckpt. Augmentation on: the resumed epoch must replay its random crops too.
# A step row every step: the row of the batch a checkpoint is taken in must survive a kill right after it.
ARGS = ["data.image_size=8", "data.batch_size=32", "data.augment=true", "trainer.max_epochs=3",
        "trainer.log_every_n_steps=1",
        "trainer.limit_train_batches=5", "trainer.limit_val_batches=2", "trainer.limit_test_batches=2",
        "trainer.deterministic=true", "trainer.enable_progress_bar=false", "checkpoint.every_n_steps=2",
        "measure.warmup_steps=1", "summary=false", "logger=csv", "sched.warmup_steps=2", "measure.parts=false"]
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
        for _ in range(int(os.environ.get("CRASH_TIMES", "1"))):  # Ctrl-C twice: the second one stops at once
            os.kill(os.getpid(), sig)

from models.train.module import Classifier
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
    from models.train import records
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


def rerun(run_dir: Path, tmp: Path, args: list[str] | None = None) -> Any:
    """The same command again, no kill: scripts/train.py run in this process (helpers.cli), from `tmp`."""
    from helpers.cli import run_cli

    return run_cli("train", [*(ARGS if args is None else args), f"hydra.run.dir={run_dir}"], cwd=tmp,
                   env={"WANDB_DIR": str(tmp)})


def train(run_dir: Path, tmp: Path, at: str | None = None, sig: str = "SIGKILL", args: list[str] | None = None,
          times: int = 1) -> subprocess.CompletedProcess:
    """scripts/train.py with `args` in `run_dir`, as a real process; with `at` ("point:n"), killed by `sig` at that
    point (`times` signals in a row)."""
    import torch

    args = [*(ARGS if args is None else args), f"hydra.run.dir={run_dir}"]
    # the thread count of this process: a run resumed here (rerun) must compute exactly what a killed one did
    env = script_env(tmp, OMP_NUM_THREADS=str(torch.get_num_threads()))
    if at is None:
        cmd = [sys.executable, str(REPO / "scripts" / "train.py"), *args]
    else:
        cmd = [sys.executable, "-c", HOOK, *args]
        (tmp / "fired").unlink(missing_ok=True)
        env.update(CRASH_REPO=str(REPO), CRASH_AT=at, CRASH_SIGNAL=sig, CRASH_MARK=str(tmp / "fired"),
                   CRASH_TIMES=str(times))
    return subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True, timeout=300)
