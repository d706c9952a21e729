"""Several runs per device (hydra/launcher=local_gpus, jobs_per_gpu=2; here the CPU): the two jobs of a tiny grid run
at the same time (their time ranges overlap), both finish with correct records saying they were packed, the CPU
threads were split between them, and the report marks their img/s."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers.runs import run_train_script, script_env
from models.analysis.report import report
from models.train.records import read_results


@pytest.mark.slow
def test_two_packed_jobs_run_concurrently_and_are_marked(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    overrides = ["model=plain20,resnet20", "seed=0", "trainer.max_epochs=1"]
    proc = run_train_script(["-m", "+ablation=residual_vs_plain_tiny", *overrides, "hydra/launcher=local_gpus",
                             "hydra.launcher.jobs_per_gpu=2", "hydra.launcher.gpus_per_node=0",
                             f"hydra.sweep.dir={sweep}"], env=script_env(tmp_path), timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = [read_results(d) for d in sorted(sweep.iterdir()) if (d / "results.json").is_file()]
    assert len(records) == 2 and all(r["status"] == "finished" and r["packed_jobs"] == 2 for r in records)
    (a0, a1), (b0, b1) = ((r["started_at"], r["ended_at"]) for r in records)
    assert max(a0, b0) < min(a1, b1), "the two jobs did not run at the same time"
    assert all(r["hardware/threads"] == max(1, r["hardware/cpu_count"] // 2) for r in records)  # threads split
    assert proc.stdout.count(" finished: ") == 2  # one line per finished job from the launcher
    table, _ = report(str(sweep), out=tmp_path / "report", overrides=overrides)
    assert "train img/s †" in table and "runs shared the device" in table


@pytest.mark.slow
def test_the_gpu_branch_pins_each_job_to_its_gpu(tmp_path: Path) -> None:
    """The launcher's GPU branch on a machine whose CUDA_VISIBLE_DEVICES names two GPUs (by UUID, as MIG slices and
    some clusters do): each job is pinned to one of them through its own CUDA_VISIBLE_DEVICES (submitit's local
    executor takes no other parameter), two jobs on two GPUs share none (packed_jobs 1), and the jobs, seeing no
    CUDA device here, run on the CPU."""
    sweep = tmp_path / "sweep"
    gpus = "GPU-0a1b2c3d-0000-0000-0000-000000000001,GPU-0a1b2c3d-0000-0000-0000-000000000002"
    overrides = ["model=plain20,resnet20", "seed=0", "trainer.max_epochs=1", "trainer.limit_train_batches=2",
                 "measure.parts=false"]
    proc = run_train_script(["-m", "+ablation=residual_vs_plain_tiny", *overrides, "hydra/launcher=local_gpus",
                             "hydra.launcher.jobs_per_gpu=2", f"hydra.sweep.dir={sweep}"],
                            env=script_env(tmp_path, CUDA_VISIBLE_DEVICES=gpus), timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = [read_results(d) for d in sorted(sweep.iterdir()) if (d / "results.json").is_file()]
    assert len(records) == 2 and all(r["status"] == "finished" and r["packed_jobs"] == 1 for r in records)
    assert sorted(r["hardware/cuda_visible_devices"] for r in records) == sorted(gpus.split(","))
    assert all(r["hardware/device_type"] == "cpu" for r in records)
    for gpu in gpus.split(","):
        assert proc.stdout.count(f" on GPU {gpu}: ") == 1, proc.stdout
