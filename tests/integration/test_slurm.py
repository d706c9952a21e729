"""Ablation grids on a real SLURM cluster (slurm-wlm 22.05 on this machine, started by the `slurm_cluster` fixture),
through the project's own command: `scripts/train.py -m +ablation=... hydra/launcher=slurm`.

- the grid lands as ONE job array, every task writes its results.json, and the report equals a local run's;
- a task signalled mid-training -- USR2 (submitit's time-limit signal, `scancel --signal=USR2`) or SIGTERM
  (`scontrol requeue`, as preemption) -- saves last.ckpt at that step, is requeued, and the requeued task resumes the
  same run directory and ends with the same metrics and history as the uninterrupted run (deterministic CPU);
- a run that fails for real fails its task once (FAILED, never requeued), as does a time-out past max_num_timeout.

Runs pause at a known step (tests/helpers/pause/sitecustomize.py) so that the signals land mid-training.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from helpers.runs import REPO, csv_history
from helpers.slurm import ENDED, LocalSlurm, results, sweep, wait_for
from models.analysis.report import report
from models.train.records import read_results

pytestmark = pytest.mark.slurm

PAUSE_HOOK = REPO / "tests" / "helpers" / "pause"
PAUSE_AT = 7  # optimizer step (of 15: 5 per epoch); the signal's checkpoint is at step 8, mid-epoch 2
TINY = ["+ablation=residual_vs_plain_tiny", "seed=0", "trainer.limit_train_batches=5", "trainer.limit_val_batches=2",
        "trainer.limit_test_batches=2", "trainer.log_every_n_steps=1", "trainer.deterministic=true"]
MODELS = "model=plain20,resnet20"
ON_SLURM = ["hydra/launcher=slurm", "hydra.launcher.partition=debug", "hydra.launcher.gpus_per_node=0",
            "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=1", "hydra.launcher.timeout_min=10"]
TIMING = ("time_share/", "train/images_per_s", "eval/images_per_s")  # measurements, not results


def run_dirs(out: Path) -> dict[str, Path]:
    """model name -> run directory of a sweep."""
    return {d.name.split(",")[0].split("=")[1]: d for d in out.iterdir() if (d / "results.json").is_file()}


def array_tasks(cluster: LocalSlurm, out: Path, settled: bool = False) -> list[dict[str, str]]:
    """SLURM's view of the sweep's job array (its id from submitit's folder names); `settled`: once every task has
    ended (a task's result is written a moment before its process exits)."""
    array = {p.name.split("_")[0] for p in (out / ".submitit").glob("[0-9]*_*")}
    assert len(array) == 1, f"expected one job array, submitit folders say {array}"
    end = time.monotonic() + 30
    while True:
        tasks = sorted((j for j in cluster.jobs() if j["array_job"] in array), key=lambda j: j["array_task"])
        if not settled or time.monotonic() > end or all(t["state"] in ENDED for t in tasks):
            return tasks
        time.sleep(0.5)


def report_rows(out: Path, tmp: Path) -> list[dict[str, str]]:
    report(str(out), out=tmp, overrides=[*TINY[1:], MODELS])
    import csv

    with open(tmp / "table.csv", newline="") as f:
        return [{k: v for k, v in row.items() if not k.startswith(TIMING)} for row in csv.DictReader(f)]


@pytest.fixture(scope="module")
def local_grid(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same grid run locally (Hydra's basic launcher), one thread per run like the SLURM tasks."""
    out = tmp_path_factory.mktemp("local") / "sweep"
    proc = sweep([*TINY, MODELS], out, {"OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def test_grid_runs_as_one_job_array_and_reports_like_a_local_run(slurm_cluster: LocalSlurm, local_grid: Path,
                                                                   tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    proc = sweep([*TINY, MODELS, *ON_SLURM], out, slurm_cluster.env)  # no OMP_NUM_THREADS: SLURM's cpus_per_task
    assert proc.returncode == 0, proc.stderr[-3000:]
    tasks = array_tasks(slurm_cluster, out, settled=True)
    assert [(t["array_task"], t["state"], t["restarts"]) for t in tasks] == [("0", "COMPLETED", "0"),
                                                                            ("1", "COMPLETED", "0")]
    array = tasks[0]["array_job"]
    assert f"submitted as SLURM job {array} (2 tasks" in proc.stdout
    assert proc.stdout.count(" finished (SLURM task ") == 2
    runs = run_dirs(out)
    assert sorted(runs) == ["plain20", "resnet20"]
    for name, run_dir in runs.items():
        record = read_results(run_dir)
        assert record["status"] == "finished" and record["invocations"] == 1 and record["interruptions"] == []
        assert record["hardware/threads"] == 1  # torch threads = SLURM_CPUS_PER_TASK
        assert results(run_dir) == results(run_dirs(local_grid)[name])
        assert csv_history(run_dir) == csv_history(run_dirs(local_grid)[name])
    assert report_rows(out, tmp_path / "report") == report_rows(local_grid, tmp_path / "local_report")


def test_signalled_tasks_checkpoint_requeue_and_resume_like_uninterrupted(slurm_cluster: LocalSlurm,
                                                                           local_grid: Path, tmp_path: Path) -> None:
    out, marks = tmp_path / "sweep", tmp_path / "paused"
    marks.mkdir()
    env = {**slurm_cluster.env, "PYTHONPATH": str(PAUSE_HOOK), "PAUSE_AT_STEP": str(PAUSE_AT), "PAUSE_DIR": str(marks)}
    proc = sweep([*TINY, MODELS, *ON_SLURM], out, env, wait=False)
    wait_for([marks / "0", marks / "1"], proc, f"the tasks never reached step {PAUSE_AT}")
    array = array_tasks(slurm_cluster, out)[0]["array_job"]
    slurm_cluster.run(["scancel", "--signal=USR2", f"{array}_0"])  # plain20: the time-limit signal
    slurm_cluster.run(["scontrol", "requeue", f"{array}_1"])  # resnet20: preemption / requeue (SIGTERM)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr[-3000:]
    assert stdout.count(" finished (SLURM task ") == 2  # the sweep waited for the requeued tasks
    tasks = array_tasks(slurm_cluster, out, settled=True)
    assert [(t["state"], t["restarts"]) for t in tasks] == [("COMPLETED", "1"), ("COMPLETED", "1")]
    runs = run_dirs(out)
    for name, by in (("plain20", "SIGUSR2 (SLURM time limit or preemption)"), ("resnet20", "SIGTERM")):
        record = read_results(runs[name])
        assert record["status"] == "finished" and record["invocations"] == 2, record
        (stop,) = record["interruptions"]  # saved at the signal: the step in progress finished, nothing more lost
        assert (stop["by"], stop["at_step"], stop["invocation"]) == (by, PAUSE_AT + 1, 1)
        assert stop["checkpoint"] == str(runs[name] / "checkpoints" / "last.ckpt")
        assert record["resumed_at_step"] == PAUSE_AT + 1  # not the epoch-end checkpoint of step 5
        assert results(runs[name]) == results(run_dirs(local_grid)[name])
        assert csv_history(runs[name]) == csv_history(run_dirs(local_grid)[name])
    submitit_log = next((out / ".submitit" / f"{array}_0").glob("*_log.out")).read_text()
    assert f"Requeued job {array}_0 (2 remaining timeouts)" in submitit_log


def test_failed_runs_fail_their_task_once(slurm_cluster: LocalSlurm, tmp_path: Path) -> None:
    """Task 0 has a bad config; task 1 times out with no requeue left (max_num_timeout=0). Both end FAILED without
    a restart; the sweep waits for both and reports the first in one line; task 1's run stays resumable."""
    out, marks = tmp_path / "sweep", tmp_path / "paused"
    marks.mkdir()
    env = {**slurm_cluster.env, "PYTHONPATH": str(PAUSE_HOOK), "PAUSE_AT_STEP": str(PAUSE_AT), "PAUSE_DIR": str(marks)}
    args = [*TINY, "model=plain20", "optim.lr=-0.1,0.05", *ON_SLURM, "hydra.launcher.max_num_timeout=0"]
    proc = sweep(args, out, env, wait=False)
    wait_for([marks / "1"], proc, f"task 1 never reached step {PAUSE_AT}")
    array = array_tasks(slurm_cluster, out)[0]["array_job"]
    slurm_cluster.run(["scancel", "--signal=USR2", f"{array}_1"])
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 2
    (line,) = stderr.strip().splitlines()
    assert line.startswith("error: sweep task #0 (") and " optim.lr=-0.1 " in line
    assert line.endswith(f", SLURM task {array}_0) failed: optim.lr=-0.1 is not valid: use a number > 0")
    assert "timed-out too many times" in stdout
    tasks = array_tasks(slurm_cluster, out, settled=True)
    time.sleep(3)  # a task being requeued would be PENDING again by now
    assert [(t["state"], t["restarts"]) for t in array_tasks(slurm_cluster, out)] == [("FAILED", "0"),
                                                                                      ("FAILED", "0")] == \
        [(t["state"], t["restarts"]) for t in tasks]
    bad, timed_out = (read_results(d) for d in sorted(out.glob("model=*")))
    assert bad["status"] == "failed" and bad["error"] == "optim.lr=-0.1 is not valid: use a number > 0"
    assert timed_out["status"] == "running" and timed_out["interruptions"][0]["at_step"] == PAUSE_AT + 1
    assert json.loads((sorted(out.glob("model=*"))[1] / "results.json").read_text())["resume_from"]
