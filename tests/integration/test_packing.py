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
