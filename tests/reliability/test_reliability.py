"""Divergence (issue 6, item 2): a NaN/inf training loss is detected in the step that produced it; the run stops and is
recorded as `diverged` with that step; no checkpoint is ever written with non-finite tensors (the last good one
stays); a sweep goes on with its next run; re-running a diverged run does not train it again."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from helpers.kills import train
from helpers.runs import REPO, script_env
from models.train.checkpoints import load_checkpoint
from models.train.records import read_results

# every_n_steps=1: last.ckpt is (re)written after every step, so a NaN step would overwrite it if nothing stopped it
ARGS = ["data.image_size=8", "data.batch_size=32", "trainer.max_epochs=2", "trainer.limit_train_batches=4",
        "trainer.limit_val_batches=1", "trainer.limit_test_batches=1", "trainer.enable_progress_bar=false",
        "checkpoint.every_n_steps=1", "summary=false", "logger=none", "measure.parts=false"]  # no test reads times


def _all_finite(ckpt: dict) -> bool:
    tensors = [*ckpt["state_dict"].values()]
    for opt in ckpt.get("optimizer_states", []):
        for st in opt["state"].values():
            tensors += [v for v in st.values() if isinstance(v, torch.Tensor)]
    return all(torch.isfinite(t).all() for t in tensors if t.is_floating_point())


@pytest.mark.slow
def test_nan_loss_stops_the_run_in_that_step_and_keeps_the_last_good_checkpoint(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    p = train(run_dir, tmp_path, "nan_loss:6", args=ARGS)  # step 6 = epoch 1, third batch
    assert (tmp_path / "fired").read_text() == "nan at step 6"
    assert p.returncode == 0, p.stderr[-3000:]  # a diverged run is a result, not a crash (a sweep goes on)
    assert "Traceback" not in p.stderr
    r = read_results(run_dir)
    assert r["status"] == "diverged" and r["diverged_at_step"] == 6 and r["steps"] == 6, r
    assert "lower optim.lr" in r["error"]
    ckpts = sorted((run_dir / "checkpoints").glob("*.ckpt"))
    assert {c.name for c in ckpts} == {"last.ckpt", "best.ckpt"}
    for c in ckpts:
        assert _all_finite(load_checkpoint(c)), c
    assert load_checkpoint(run_dir / "checkpoints" / "last.ckpt")["global_step"] == 6  # the 6 good steps, no more
    assert not list(run_dir.rglob("*.tmp"))

    # re-running a diverged run reports it, it does not train again
    again = train(run_dir, tmp_path, args=ARGS)
    assert again.returncode == 0 and "already diverged" in again.stdout
    assert read_results(run_dir) == r


@pytest.mark.slow
def test_sweep_records_the_diverged_run_and_goes_on(tmp_path: Path) -> None:
    """A real divergence (lr 1e30) in job 0 of a 2-job Hydra multirun; job 1 still runs and finishes."""
    sweep = tmp_path / "sweep"
    cmd = [sys.executable, str(REPO / "scripts" / "train.py"), "-m", "optim.lr=1e30,0.05", *ARGS,
           f"hydra.sweep.dir={sweep}"]
    p = subprocess.run(cmd, cwd=tmp_path, env=script_env(tmp_path), capture_output=True, text=True, timeout=400)
    assert p.returncode == 0, p.stderr[-3000:]
    runs = {d.name: json.loads((d / "results.json").read_text()) for d in sorted(sweep.iterdir()) if d.is_dir()}
    assert set(runs) == {"0", "1"}
    bad, good = runs["0"], runs["1"]
    assert bad["status"] == "diverged"
    assert isinstance(bad["diverged_at_step"], int) and bad["diverged_at_step"] <= 2, bad
    assert "optim.lr=1e+30" in bad["overrides"]
    for c in (sweep / "0" / "checkpoints").glob("*.ckpt"):
        assert _all_finite(load_checkpoint(c)), c
    assert good["status"] == "finished" and good["steps"] == 8 and 0 <= good["test/acc"] <= 1
