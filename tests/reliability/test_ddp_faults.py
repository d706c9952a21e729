"""Distributed faults (issue 6, item 4): a 2-process CPU DDP run (gloo) launched as a subprocess of scripts/train.py;
SIGKILL the child rank mid-training -> the whole job exits non-zero within a bounded time (no hang, no orphan), and
re-running the same command resumes from last.ckpt and finishes.

DDP re-executes sys.argv for the extra ranks, so DDP is only ever started from a separate scripts/train.py process
(never from inside pytest's own process), in its own session so that cleanup can reach every rank.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers.runs import REPO, script_env
from models.train.checkpoints import load_checkpoint
from models.train.records import read_results

ARGS = ["trainer.accelerator=cpu", "trainer.devices=2", "trainer.strategy=ddp", "data.image_size=8",
        "data.batch_size=16", "trainer.max_epochs=2", "trainer.limit_train_batches=12", "trainer.limit_val_batches=2",
        "trainer.limit_test_batches=2", "trainer.enable_progress_bar=false", "checkpoint.every_n_steps=2",
        "summary=false", "logger=none", "measure.parts=false"]  # no test here reads the part times
BOUND_S = 120  # the job must be gone this long after a rank died


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _env(tmp: Path) -> dict[str, str]:
    env = script_env(tmp)
    for key in ("LOCAL_RANK", "NODE_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):  # a fresh job, not a rank
        env.pop(key, None)
    return env


def _start_and_find_rank(cmd: list[str], tmp: Path, log: Path, run_dir: Path) -> tuple[subprocess.Popen, int]:
    """Start the DDP job in its own session, wait for its first last.ckpt, return it and the rank-1 process."""
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=tmp, env=_env(tmp), stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    last = run_dir / "checkpoints" / "last.ckpt"
    deadline = time.time() + 300
    while proc.poll() is None and time.time() < deadline and not last.exists():
        time.sleep(0.1)
    assert proc.poll() is None and last.exists(), "DDP training did not get going: " + log.read_text()[-3000:]
    ranks = [p for p in _children(proc.pid) if "train.py" in _cmdline(p)]
    assert len(ranks) == 1, ranks  # rank 1, started by Lightning from rank 0 (this process)
    return proc, ranks[0]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_killing_one_rank_ends_the_job_then_rerun_resumes(tmp_path: Path) -> None:
    run_dir = tmp_path / "ddp"
    cmd = [sys.executable, str(REPO / "scripts" / "train.py"), *ARGS, f"hydra.run.dir={run_dir}"]
    last = run_dir / "checkpoints" / "last.ckpt"
    proc, rank = _start_and_find_rank(cmd, tmp_path, tmp_path / "first.log", run_dir)
    try:
        os.kill(rank, signal.SIGKILL)
        killed = time.time()
        rc = proc.wait(timeout=BOUND_S + 30)
        elapsed = time.time() - killed
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    out = (tmp_path / "first.log").read_text()
    assert rc != 0, out[-3000:]
    assert elapsed < BOUND_S, f"the job took {elapsed:.0f}s to notice a dead rank"
    assert "Traceback" not in out  # one line, not a wall of traces from every rank
    # nothing of the job is left running (same session)
    leftovers = [p for p in Path("/proc").glob("[0-9]*") if f"hydra.run.dir={run_dir}" in _cmdline(int(p.name))]
    assert not leftovers
    status = read_results(run_dir)["status"]
    assert status in ("failed", "running"), status
    stopped_at = load_checkpoint(last)["global_step"]
    assert 0 < stopped_at < 24  # killed mid-training, last.ckpt intact

    # the re-run (the requeued job): same command, resumes from last.ckpt, finishes
    again = subprocess.run(cmd, cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True, timeout=400,
                           start_new_session=True)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"resuming from {last} at epoch" in again.stdout
    r = read_results(run_dir)
    assert r["status"] == "finished" and r["steps"] == 24 and r["hardware/num_devices"] == 2
    assert r["resumed_from"] == str(last)


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_a_hung_rank_ends_the_job_after_the_collective_timeout(tmp_path: Path) -> None:
    """SIGSTOP (a rank that hangs rather than dies: its sockets stay open) -> the other rank's collective times out
    after ddp_timeout_s and the whole job exits non-zero; no process is left behind."""
    run_dir = tmp_path / "ddp"
    cmd = [sys.executable, str(REPO / "scripts" / "train.py"), *ARGS, "ddp_timeout_s=15", f"hydra.run.dir={run_dir}"]
    proc, rank = _start_and_find_rank(cmd, tmp_path, tmp_path / "hung.log", run_dir)
    try:
        os.kill(rank, signal.SIGSTOP)
        stopped = time.time()
        rc = proc.wait(timeout=BOUND_S + 30)
        elapsed = time.time() - stopped
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        for p in _children(proc.pid):
            os.kill(p, signal.SIGKILL)
    out = (tmp_path / "hung.log").read_text()
    assert rc != 0, out[-3000:]
    assert elapsed < BOUND_S, f"the job took {elapsed:.0f}s to give up on a hung rank"
    time.sleep(1)
    leftovers = [p for p in Path("/proc").glob("[0-9]*") if f"hydra.run.dir={run_dir}" in _cmdline(int(p.name))]
    for p in leftovers:  # do not leave a stopped process behind, whatever the verdict
        os.kill(int(p.name), signal.SIGKILL)
    assert not leftovers
    assert read_results(run_dir)["status"] in ("failed", "running")
