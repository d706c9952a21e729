"""Interruption and resume: SIGTERM mid-run -> resumable last.ckpt; re-running the same command resumes (same
wandb run id, global step continues); a finished run is not retrained; corrupt or mismatched checkpoints are
clean errors; a SIGKILL while a checkpoint is being written leaves the previous good file."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from helpers.cli import run_cli
from helpers.kills import ARGS, STEPS
from helpers.kills import train as killable_train
from helpers.runs import FAST_TRAIN, REPO, compose_train, record_differences
from helpers.wandb import history
from models.errors import ConfigError
from models.train.checkpoints import load_checkpoint
from models.train.records import read_results
from models.train.run import train

EPOCH_KEYS = ("train/acc", "train/acc_top5", "train/loss_epoch", "val/acc", "val/loss", "val/acc_top5",
              "val/acc_best")


def _history_steps(wandb_file: Path) -> list[int]:
    return [row["trainer/global_step"] for row in history(wandb_file) if "train/loss_step" in row]  # step rows


def _epoch_history(run_dir: Path) -> dict[tuple[int, str], float]:
    """Every per-epoch value wandb holds for the run (all its .wandb files: one per invocation), by (epoch, key).
    A step re-done after a kill may appear twice (wandb cannot forget a row): the later value counts."""
    out: dict[tuple[int, str], float] = {}
    for wandb_file in sorted(run_dir.glob("wandb/offline-run-*/run-*.wandb")):
        for row in history(wandb_file):
            out.update({(int(row["epoch"]), k): row[k] for k in EPOCH_KEYS if k in row})
    return out


@pytest.mark.slow
def test_sigterm_then_resume_then_not_retrained(wandb_env: Path, tmp_path: Path) -> None:
    """SIGTERM (a real signal to a real process, at a named step), then the same command again (in this process,
    through scripts/train.py itself): it resumes the same wandb run where it stopped and ends with the uninterrupted
    run's whole per-epoch history; a third time, it is reported, not retrained."""
    run_dir = tmp_path / "run"
    args = [*ARGS, "logger=wandb"]  # 3 epochs x 5 steps, last.ckpt every 2 steps
    proc = killable_train(run_dir, tmp_path, "train_step:7", "SIGTERM", args=args)
    assert proc.returncode == 143, proc.stderr[-2000:]  # stopped by SIGTERM (a sweep stops too), resumable
    assert "Traceback" not in proc.stderr and "interrupted by SIGTERM" in proc.stdout
    first = read_results(run_dir)
    assert first["status"] == "running" and first["interrupted"] == "SIGTERM"
    stopped = first["interrupted_at_step"]
    assert stopped == 8  # step 7 finished, then the signal was honoured
    last = run_dir / "checkpoints" / "last.ckpt"
    assert load_checkpoint(last)["global_step"] == stopped  # the resumable checkpoint is the interrupted state

    # a different model cannot resume this run (checked before anything is written or trained)
    with pytest.raises(ConfigError, match=r"belongs to another configuration: model.name='resnet20' \(now "
                                          r"'resnet32'\): re-run it with the settings of .*config.yaml"):
        train(compose_train([*args, "model=resnet32", f"run_dir={run_dir}"]))

    # the same command again: resumes from last.ckpt and finishes
    again = run_cli("train", [*args, f"hydra.run.dir={run_dir}"], cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"resuming from {last} at epoch 1, step 8" in again.stdout
    r = read_results(run_dir)
    assert r["status"] == "finished" and r["resumed_from"] == str(last) and r["steps"] == STEPS and r["epochs"] == 3
    wandb_files = sorted(run_dir.glob("wandb/offline-run-*/run-*.wandb"))
    run_id = (run_dir / "wandb_id.txt").read_text().strip()
    assert len(wandb_files) == 2 and all(f.name == f"run-{run_id}.wandb" for f in wandb_files)
    steps = _history_steps(wandb_files[1])
    assert steps and min(steps) >= stopped  # the global step continues where it stopped
    # the whole per-epoch history (train/* included) equals an uninterrupted run's
    reference = run_cli("train", [*args, f"hydra.run.dir={tmp_path / 'reference'}"], cwd=tmp_path)
    assert reference.returncode == 0, reference.stderr[-2000:]
    expected = _epoch_history(tmp_path / "reference")
    assert len(expected) == 3 * len(EPOCH_KEYS) and _epoch_history(run_dir) == expected

    # and once more: a finished run is reported, not retrained
    third = run_cli("train", [*args, f"hydra.run.dir={run_dir}"], cwd=tmp_path)
    assert third.returncode == 0 and "already finished" in third.stdout
    assert read_results(run_dir) == r
    assert len(list(run_dir.glob("wandb/offline-run-*"))) == 2


def test_corrupt_checkpoint_is_a_clean_error(tmp_path: Path) -> None:
    last = tmp_path / "checkpoints" / "last.ckpt"
    last.parent.mkdir(parents=True)
    last.write_bytes(b"PK\x03\x04 definitely not a checkpoint")
    with pytest.raises(ConfigError, match=rf"checkpoint {last} is corrupt or truncated"):
        train(compose_train([*FAST_TRAIN, "logger=none", f"run_dir={tmp_path}"]))
    assert read_results(tmp_path)["status"] == "failed"


def test_truncated_real_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "full.ckpt"
    torch.save({"state_dict": {"w": torch.randn(256, 256)}, "hyper_parameters": {"model": {}}}, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ConfigError, match="corrupt or truncated"):
        load_checkpoint(path)


def test_checkpoint_with_arbitrary_objects_is_refused(tmp_path: Path) -> None:
    """weights_only semantics: a pickle that would construct arbitrary objects is not executed."""
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "obj": Path("/etc")}, path)
    with pytest.raises(ConfigError, match="weights_only"):
        load_checkpoint(path)


_WRITER = """
import sys, torch
from models.train.checkpoints import AtomicCheckpointIO
io, path, i = AtomicCheckpointIO(), sys.argv[1], 0
while True:
    i += 1
    io.save_checkpoint({"state_dict": {"w": torch.full((2048, 2048), float(i))}, "i": i}, path)
    print(i, flush=True)
"""


def test_sigkill_during_checkpoint_writes_leaves_a_good_file(tmp_path: Path) -> None:
    path = tmp_path / "last.ckpt"
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(path)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "1"  # at least one complete write
    for _ in range(3):  # let it be in the middle of further 16 MB writes
        proc.stdout.readline()
    time.sleep(0.05)
    proc.kill()
    proc.wait(timeout=30)
    ckpt = load_checkpoint(path)
    assert ckpt["i"] >= 1 and torch.equal(ckpt["state_dict"]["w"], torch.full((2048, 2048), float(ckpt["i"])))


@pytest.mark.slow
def test_ctrl_c_stops_after_the_step_and_the_same_command_resumes(tmp_path: Path) -> None:
    """Ctrl-C (SIGINT, a real signal to a real process) once: the run stops after the step, writes a checkpoint,
    records the interruption, says so in one line with how to resume, exits 130, and is not `failed`. Twice: it
    stops at once from the last periodic checkpoint, recorded the same way. Each time the same command resumes,
    and the finished run equals an uninterrupted one, field for field."""
    run_dir, last = tmp_path / "run", tmp_path / "run" / "checkpoints" / "last.ckpt"
    once = killable_train(run_dir, tmp_path, "train_step:3", "SIGINT")
    assert once.returncode == 130, once.stderr[-2000:]
    assert "Traceback" not in once.stderr and "Ctrl-C: stopping after this step" in once.stdout + once.stderr
    assert "interrupted by SIGINT (Ctrl-C) at step 4; checkpoint" in once.stdout
    assert "Re-run the same command (same hydra.run.dir) to resume" in once.stdout
    r = read_results(run_dir)
    assert r["status"] == "running" and r["interrupted"] == "SIGINT (Ctrl-C)" and r["interrupted_at_step"] == 4
    assert [(i["by"], i["at_step"], i["checkpoint"]) for i in r["interruptions"]] == [
        ("SIGINT (Ctrl-C)", 4, str(last))]
    assert load_checkpoint(last)["global_step"] == 4

    twice = killable_train(run_dir, tmp_path, "train_step:7", "SIGINT", times=2)  # resumes at 4, stopped in step 7
    assert twice.returncode == 130, twice.stderr[-2000:]
    assert "Traceback" not in twice.stderr
    assert f"stopped by Ctrl-C at step 7. Re-run the same command (same hydra.run.dir) to resume from {last}" \
        in twice.stdout
    r = read_results(run_dir)
    assert r["status"] == "running" and r["interruptions"][1]["by"] == "SIGINT (Ctrl-C), at once"
    assert load_checkpoint(last)["global_step"] == 6  # the last periodic checkpoint before the second Ctrl-C

    again = run_cli("train", [*ARGS, f"hydra.run.dir={run_dir}"], cwd=tmp_path)
    assert again.returncode == 0 and f"resuming from {last} at epoch 1, step 6" in again.stdout, again.stderr[-2000:]
    reference = run_cli("train", [*ARGS, f"hydra.run.dir={tmp_path / 'reference'}"], cwd=tmp_path)
    assert reference.returncode == 0
    a, b = read_results(tmp_path / "reference"), read_results(run_dir)
    assert b["status"] == "finished" and record_differences(a, b) == {}
    assert [i["by"] for i in b["interruptions"]] == ["SIGINT (Ctrl-C)", "SIGINT (Ctrl-C), at once"]


@pytest.mark.slow
def test_a_run_from_before_a_key_existed_resumes_while_that_key_is_at_its_default(tmp_path: Path) -> None:
    """A real checkpoint and config.yaml, stripped of a model knob and a config key (as code from before they
    existed wrote them): the same command resumes; giving the key a value other than its default is another run,
    refused in one line before anything is written."""
    from omegaconf import OmegaConf

    run_dir, last = tmp_path / "run", tmp_path / "run" / "checkpoints" / "last.ckpt"
    stopped = killable_train(run_dir, tmp_path, "train_step:3", "SIGTERM")
    assert stopped.returncode == 143, stopped.stderr[-2000:]
    checkpoint = torch.load(last, weights_only=False)
    del checkpoint["hyper_parameters"]["model"]["zero_init_residual"]
    torch.save(checkpoint, last)
    saved = OmegaConf.load(run_dir / "config.yaml")
    del saved.model["zero_init_residual"], saved["label_smoothing"]
    OmegaConf.save(saved, run_dir / "config.yaml")

    for change, key in (("model.zero_init_residual=true", "model.zero_init_residual"),
                        ("label_smoothing=0.1", "label_smoothing")):
        refused = run_cli("train", [*ARGS, change, f"hydra.run.dir={run_dir}"], cwd=tmp_path)
        assert refused.returncode == 2 and refused.stderr.count("\n") == 1, refused.stderr
        assert f"belongs to another configuration: {key}=" in refused.stderr and "(now " in refused.stderr
    again = run_cli("train", [*ARGS, f"hydra.run.dir={run_dir}"], cwd=tmp_path)
    assert again.returncode == 0 and f"resuming from {last} at epoch 0, step 4" in again.stdout, again.stderr[-2000:]
    assert read_results(run_dir)["status"] == "finished"
