"""DDP inside SLURM tasks on the real local cluster (tests/helpers/slurm.py): one run = one SLURM job of 2 tasks
(`hydra.launcher.tasks_per_node=2`), each task one DDP rank (gloo, CPU), ranks and rendezvous from SLURM's
environment (Lightning's SLURMEnvironment), no process launched by Lightning.

- the time-limit signal (USR2) mid-epoch reaching one rank only, a SIGTERM the other: both stop after the same step,
  one checkpoint, the job is requeued, resumes, and ends with the uninterrupted run's metrics and history;
- one rank dying (SIGKILL) mid-step: the task fails, the sweep says so in one line, well within `ddp_timeout_s`;
- two nodes x one task (a second slurmd in a network namespace of the test's own, helpers.slurm.Namespace): rank 1
  on the other node; results and CSV history equal to the same run launched locally with `trainer=ddp` (Lightning
  starts rank 1); rank 0 alone writes results.json, the CSV and the one wandb run.
Every finished run's results equal the local DDP run's, so the SLURM environment changes nothing a run computes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from helpers.runs import REPO, csv_history, wandb_env
from helpers.slurm import LocalSlurm, Namespace, NamespaceUnavailable, results, sweep, wait_for
from helpers.wandb import inspect_run
from models.train.records import read_results

pytestmark = pytest.mark.slurm

PAUSE_HOOK = REPO / "tests" / "helpers" / "pause"
PAUSE_AT = 7  # optimizer step (of 15: 5 per epoch), mid-epoch 2
DDP_TIMEOUT_S = 60
RUN = ["+ablation=residual_vs_plain_tiny", "model=resnet20", "seed=0", "trainer.limit_train_batches=5",
       "trainer.limit_val_batches=2", "trainer.limit_test_batches=2", "trainer.log_every_n_steps=1",
       "trainer.deterministic=true", "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2",
       f"ddp_timeout_s={DDP_TIMEOUT_S}", "measure.parts=false", "logger=[csv,wandb]"]
ON_SLURM = ["hydra/launcher=slurm", "hydra.launcher.partition=debug", "hydra.launcher.gpus_per_node=0",
            "hydra.launcher.tasks_per_node=2", "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=1",
            "hydra.launcher.timeout_min=10"]


def the_run(out: Path) -> Path:
    (run_dir,) = [d for d in out.iterdir() if (d / "config.yaml").is_file()]
    return run_dir


def job_of(cluster: LocalSlurm, out: Path) -> dict[str, str]:
    """SLURM's view of the sweep's one job (its id from submitit's folder), once it has ended."""
    (job_id,) = {p.name for p in (out / ".submitit").iterdir() if p.name.isdigit()}
    end = time.monotonic() + 30
    while True:
        (job,) = [j for j in cluster.jobs() if j["id"] == job_id]
        if job["state"] in ("COMPLETED", "FAILED", "CANCELLED") or time.monotonic() > end:
            return job
        time.sleep(0.5)


@pytest.fixture(scope="module")
def local_ddp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same run with `trainer=ddp` on this machine (Lightning launches rank 1), one thread per rank."""
    out = tmp_path_factory.mktemp("local_ddp") / "sweep"
    proc = sweep(RUN, out, {"OMP_NUM_THREADS": "1", **wandb_env(out.parent)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return the_run(out)


def test_time_limit_signal_stops_every_rank_at_one_step_then_requeue_resumes(
        slurm_cluster: LocalSlurm, local_ddp: Path, tmp_path: Path) -> None:
    """SLURM delivers a signal to each task at its own time: here the time-limit signal reaches rank 0 (waiting
    before step 7) only, and rank 1 (in step 7's all-reduce) gets a plain SIGTERM instead (a preemption notice).
    The ranks agree at the end of step 7 -- the time limit wins -- and both stop there. A rank stopping alone would
    leave the other blocked in step 8's all-reduce until ddp_timeout_s; Lightning's own SIGTERM handler would call
    a collective from inside the signal handler."""
    out, marks = tmp_path / "sweep", tmp_path / "paused"
    marks.mkdir()
    env = {**slurm_cluster.env, **wandb_env(tmp_path), "PYTHONPATH": str(PAUSE_HOOK), "PAUSE_AT_STEP": str(PAUSE_AT),
           "PAUSE_DIR": str(marks), "PAUSE_RANKS": "0"}
    proc = sweep([*RUN, *ON_SLURM], out, env, wait=False)
    (job_id,) = _job_ids(out, proc)
    wait_for([marks / job_id, marks / f"{job_id}.1"], proc, f"the ranks never reached step {PAUSE_AT}")
    pid = {0: _pid(marks / job_id), 1: _pid(marks / f"{job_id}.1")}
    os.kill(pid[1], signal.SIGTERM)  # rank 1: a preemption notice, noted while it waits in the all-reduce
    time.sleep(0.5)
    os.kill(pid[0], signal.SIGUSR2)  # rank 0: the time limit
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr[-3000:]
    job = job_of(slurm_cluster, out)
    assert (job["state"], job["restarts"]) == ("COMPLETED", "1")
    run_dir = the_run(out)
    record = read_results(run_dir)
    assert record["status"] == "finished" and record["invocations"] == 2, record
    (stop,) = record["interruptions"]
    assert (stop["by"], stop["at_step"]) == ("SIGUSR2 (SLURM time limit or preemption)", PAUSE_AT + 1)
    assert record["resumed_at_step"] == PAUSE_AT + 1  # one checkpoint, at the step both ranks stopped after
    assert sorted(p.name for p in (run_dir / "checkpoints").glob("*.ckpt")) == ["best.ckpt", "last.ckpt"]
    assert results(run_dir) == results(local_ddp)  # = the uninterrupted run (Lightning-launched DDP, same ranks)
    assert csv_history(run_dir) == csv_history(local_ddp)
    logs = out / ".submitit" / job_id
    rank1 = (logs / f"{job_id}_1_log.err").read_text() + (logs / f"{job_id}_1_log.out").read_text()
    assert "global_rank=1(2)" in rank1 and "Not checkpointing nor requeuing since I am a slave" in rank1
    assert "starting" not in rank1 and "finished:" not in rank1  # rank 0 alone speaks


def _pid(marker: Path) -> int:
    """The process that wrote a pause marker ("... step N, pid P")."""
    return int(marker.read_text().rsplit("pid ", 1)[1])


def _job_ids(out: Path, proc: subprocess.Popen, timeout: float = 60) -> list[str]:
    end = time.monotonic() + timeout
    while time.monotonic() < end and proc.poll() is None:
        ids = [p.name for p in (out / ".submitit").glob("[0-9]*") if p.name.isdigit()] if out.exists() else []
        if ids:
            return ids
        time.sleep(0.2)
    pytest.fail("no SLURM job was submitted")


def test_a_dying_rank_fails_the_task_in_one_line_within_the_ddp_timeout(slurm_cluster: LocalSlurm,
                                                                         tmp_path: Path) -> None:
    out, marks = tmp_path / "sweep", tmp_path / "paused"
    marks.mkdir()
    env = {**slurm_cluster.env, **wandb_env(tmp_path), "PYTHONPATH": str(PAUSE_HOOK), "PAUSE_AT_STEP": "1",
           "PAUSE_DIR": str(marks), "PAUSE_RANKS": "1"}
    proc = sweep([*RUN, *ON_SLURM], out, env, wait=False)
    (job_id,) = _job_ids(out, proc)
    wait_for([marks / f"{job_id}.1"], proc, "rank 1 never reached step 1")
    pid = _pid(marks / f"{job_id}.1")
    killed = time.monotonic()
    os.kill(pid, signal.SIGKILL)  # rank 1 dies; rank 0 waits in step 1's gradient all-reduce
    _, stderr = proc.communicate(timeout=DDP_TIMEOUT_S * 3)
    took = time.monotonic() - killed
    assert proc.returncode == 2, stderr[-3000:]
    (line,) = stderr.splitlines()
    assert line.startswith("error: sweep task #0 ("), line
    assert f"SLURM task {job_id}) failed: " in line
    assert took < DDP_TIMEOUT_S, f"the job took {took:.0f} s to fail"
    job = job_of(slurm_cluster, out)
    assert (job["state"], job["restarts"]) == ("FAILED", "0")
    record = read_results(the_run(out))
    assert record["status"] == "failed" and record["error"], record


@pytest.fixture(scope="module")
def two_nodes(slurm_cluster: LocalSlurm, tmp_path_factory: pytest.TempPathFactory):
    """A second cluster of two nodes: this host and `<host>-2` in a network namespace (`slurm_cluster` first: it
    installs the packages, or skips)."""
    try:
        with LocalSlurm(tmp_path_factory.mktemp("slurm2"), cpus=2, second_node=True) as cluster:
            yield cluster
    except NamespaceUnavailable as e:
        pytest.skip(f"no second node: this machine gives no network namespace ({e})")


def test_two_nodes_one_task_each_equal_local_ddp(two_nodes: LocalSlurm, local_ddp: Path, tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    two_node = [*RUN, "trainer.devices=1", "trainer.num_nodes=2", *ON_SLURM, "hydra.launcher.nodes=2",
                "hydra.launcher.tasks_per_node=1"]
    # rendezvous: this host's name resolves to 127.0.0.1 here (/etc/hosts), as node names often do not resolve
    # between nodes; the address and interface are given as on such clusters
    env = {**two_nodes.env, **wandb_env(tmp_path), "MASTER_ADDR": two_nodes.net.host_ip,
           "GLOO_SOCKET_IFNAME": Namespace.IFACE}
    proc = sweep(two_node, out, env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    job = job_of(two_nodes, out)
    assert (job["state"], job["restarts"]) == ("COMPLETED", "0")
    logs = out / ".submitit" / job["id"]
    hosts = [(logs / f"{job['id']}_{rank}_log.out").read_text().split("hostname=", 1)[1].split(",", 1)[0]
             for rank in (0, 1)]
    assert hosts == [two_nodes.host, two_nodes.node2]  # rank 0 here, rank 1 on the other node
    assert "finished:" not in (logs / f"{job['id']}_1_log.out").read_text()  # rank 0 alone speaks
    assert proc.stdout.count(" finished (SLURM task ") == 1
    run_dir = the_run(out)
    record = read_results(run_dir)
    assert record["status"] == "finished" and record["invocations"] == 1
    assert record["hardware/num_devices"] == 2 and record["hardware/threads"] == 1
    assert results(run_dir) == results(local_ddp)
    assert csv_history(run_dir) == csv_history(local_ddp)
    wandb = inspect_run(run_dir)  # one wandb run (rank 0's), read back by wandb itself
    assert wandb["summary"]["test/acc"] == pytest.approx(record["test/acc"])
