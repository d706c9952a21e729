"""Crash safety (issue 6, item 1): kill a real training run (scripts/train.py) at named points — SIGTERM mid-epoch,
SIGKILL mid-epoch, SIGKILL during validation, SIGKILL while a checkpoint is being written — re-run the same command
after each, and check the final weights, optimizer state and metrics are IDENTICAL to an uninterrupted run
(trainer.deterministic=true, CPU).

The kill points are deterministic (`helpers.kills`); every killed invocation is a real process. The uninterrupted
reference and the final re-run are the plain command run in this process (`helpers.kills.rerun`: scripts/train.py
itself, no process boundary to test there).
"""

from __future__ import annotations

import csv
import signal
from pathlib import Path

import pytest
import torch

from helpers.kills import ARGS, STEPS, rerun, train
from helpers.runs import csv_history, record_differences
from models.train.checkpoints import load_checkpoint
from models.train.records import read_results

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
    ref = rerun(ref_dir, tmp_path)
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

    # 2. SIGKILL as epoch 1 begins: last.ckpt is epoch 0's validation-end one (step 5), taken before epoch 0's train/*
    # row was logged; Lightning resumes it in epoch 1 without epoch hooks, so the resumed run logs that row itself
    p = train(run_dir, tmp_path, "train_step:5")
    assert fired.exists() and p.returncode == -signal.SIGKILL, p.stderr[-3000:]
    assert load_checkpoint(last)["global_step"] == 5 and "train_epoch_pending" in load_checkpoint(last)

    # 3. SIGKILL mid-epoch (epoch 1, third batch): last.ckpt is the mid-epoch one of step 6
    p = train(run_dir, tmp_path, "train_step:7")
    assert fired.exists() and p.returncode == -signal.SIGKILL, p.stderr[-3000:]
    assert read_results(run_dir)["status"] == "running"
    assert load_checkpoint(last)["global_step"] == 6

    # 4. SIGKILL during epoch 1's validation: last.ckpt is step 8's (the periodic writer skips step 10, the batch
    # after which validation runs: Lightning would resume such a checkpoint as if that validation had happened)
    p = train(run_dir, tmp_path, "validation:1")
    assert fired.read_text() == "validation epoch 1 at step 10" and p.returncode == -signal.SIGKILL, p.stderr[-3000:]
    assert load_checkpoint(last)["global_step"] == 8

    # 5. SIGKILL while the re-run writes its first checkpoint: the temp file is left, the old file is intact
    p = train(run_dir, tmp_path, "ckpt_write:1")
    assert fired.read_text().startswith("checkpoint write") and p.returncode == -signal.SIGKILL, p.stderr[-3000:]
    assert list((run_dir / "checkpoints").glob(".*.ckpt.*.tmp")), "the kill did not land mid-write"
    assert load_checkpoint(last)["global_step"] == 8  # the previous good file
    assert read_results(run_dir)["status"] == "running"

    # 6. the same command, no hook: resumes and finishes
    p = rerun(run_dir, tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    assert f"resuming from {last} at epoch 1, step 8" in p.stdout  # where the previous good file left off
    assert not list(run_dir.rglob("*.tmp"))  # leftovers of the killed write are cleaned up

    a, b = read_results(ref_dir), read_results(run_dir)
    assert b["status"] == "finished" and b["steps"] == STEPS and b["resumed_from"] == str(last)
    assert {k: a.get(k) for k in METRICS} == {k: b.get(k) for k in METRICS}
    # every field of results.json, the per-invocation ones aside (helpers.runs.PER_INVOCATION): a new per-invocation
    # series that a resume drops (as `curve` once lost every point before the kill) fails here
    assert record_differences(a, b) == {}
    assert [p[0] for p in b["curve"]] == [5, 10, 15]
    # EVERY logged metric, train ones included, over the whole history: the CSV of the run stopped five times equals
    # the uninterrupted one row for row (the rows a killed invocation wrote after its last checkpoint were moved to
    # superseded.csv, not lost); only the timing columns (perf/*: measurements, not results) may differ.
    assert csv_history(run_dir) == csv_history(ref_dir)
    assert (run_dir / "csv" / "superseded.csv").is_file()
    # six invocations (five killed or stopped), their wall time added up, every stop recorded: the SIGTERM by the
    # run itself, each SIGKILL by the invocation that resumed after it (the killed one could say nothing)
    assert b["invocations"] == 6 and b["wall_time_s"] > b["wall_time_s/last"] > 0
    stops = b["interruptions"]
    assert [i["invocation"] for i in stops] == [1, 2, 3, 4, 5] and stops[0]["by"] == "SIGTERM"
    assert all(i["by"].startswith("unclean stop") for i in stops[1:])
    assert [i["at_step"] for i in stops] == [4, 5, 6, 8, 8]  # where each resumed invocation found last.ckpt
    assert a["invocations"] == 1 and a["wall_time_s"] == a["wall_time_s/last"]
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


@pytest.mark.slow
def test_a_compiled_run_killed_and_resumed_is_identical_to_uninterrupted(tmp_path: Path) -> None:
    """The CUDA-graph path's settings (compile=reduce-overhead: on this CPU, Inductor without graphs) through a
    SIGKILL: same weights, metrics and history as the uninterrupted compiled run; the compiler's counts recorded."""
    args = [*ARGS, "trainer.max_epochs=2", "compile=reduce-overhead", "model.depths=[1,1,1]"]  # a resnet8: quick
    ref_dir, run_dir = tmp_path / "reference", tmp_path / "run"
    ref = train(ref_dir, tmp_path, args=args)  # every compiled run a process of its own: one compiler state each
    assert ref.returncode == 0, ref.stderr[-3000:]
    p = train(run_dir, tmp_path, "train_step:7", args=args)
    assert p.returncode == -signal.SIGKILL
    assert load_checkpoint(run_dir / "checkpoints" / "last.ckpt")["global_step"] == 6
    again = train(run_dir, tmp_path, args=args)  # a fresh process: what it compiled is its own
    assert again.returncode == 0, again.stderr[-3000:]
    a, b = read_results(ref_dir), read_results(run_dir)
    assert {k: a.get(k) for k in METRICS} == {k: b.get(k) for k in METRICS} and b["steps"] == 10
    assert csv_history(run_dir) == csv_history(ref_dir)
    ca, cb = (load_checkpoint(d / "checkpoints" / "last.ckpt") for d in (ref_dir, run_dir))
    _same_tensors(ca["state_dict"], cb["state_dict"], "state_dict")  # keys of the plain network, same values
    assert not [k for k in cb["state_dict"] if "_orig_mod" in k]
    assert b["compile"] == "reduce-overhead" and b["compile/graphs"] >= 1 and b["compile/recompiles"] >= 0
    assert b["compile/cudagraph_skips"] > 0 and "need a CUDA device" in b["compile/cudagraph_skip_reasons"]
    assert "warning: compile=reduce-overhead ran without CUDA graphs" in again.stdout
