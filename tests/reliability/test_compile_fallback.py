"""A compile failure never costs a grid (issue 23): Inductor made to fail FOR REAL (its C++ compiler is `false`,
which exits 1) in a real scripts/train.py run with a cold compile cache; the run goes on eager from the same step,
says so in one warning line with the compiler's reason, finishes, and records compile/fallback and compile/used."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers.runs import FAST_TRAIN, run_train_script, script_env
from models.analysis.report import report
from models.train.records import read_results


@pytest.mark.slow
def test_a_failing_compiler_falls_back_to_eager_and_the_run_finishes(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    env = script_env(tmp_path, CXX="false", TORCHINDUCTOR_CACHE_DIR=str(tmp_path / "inductor"),
                     TORCHINDUCTOR_FX_GRAPH_CACHE="0")
    proc = run_train_script([*FAST_TRAIN, "compile=true", "logger=csv", f"hydra.run.dir={run_dir}"], env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    warnings = [line for line in proc.stdout.splitlines() if "failed at step" in line]
    assert len(warnings) == 1 and warnings[0].startswith("warning: compile=default failed at step 0 (")
    assert "the run goes on eager from this step" in warnings[0]
    r = read_results(run_dir)
    assert r["status"] == "finished" and r["steps"] == 8 and r["compile"] == "default"
    assert r["compile/used"] == "eager" and r["compile/fallback"] and "Error" in r["compile/fallback"]
    table, _ = report(str(run_dir), out=tmp_path / "report")
    assert "(1 compile fell back to eager)" in table
