"""The two axes added as NetSpec fields train in their tiny grids, end to end (sweep, records, report), and their
records carry the knob and the exact counts."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers.cli import run_cli
from models.analysis.runs import load_runs


@pytest.mark.slow
@pytest.mark.parametrize("grid, knob, params", [("se_on_off_tiny", "se", {False: 269_722, True: 272_095}),
                                                 ("preact_vs_postact_tiny", "preact", {False: 269_722,
                                                                                       True: 269_722})])
def test_the_tiny_grid_of_a_new_axis_trains(grid: str, knob: str, params: dict, tmp_path: Path) -> None:
    done = run_cli("ablate", [grid, "trainer.max_epochs=1", f"hydra.sweep.dir={tmp_path / 'sweep'}"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    runs = load_runs(tmp_path / "sweep")
    assert sorted(r[f"model/{knob}"] for r in runs) == [False, True]
    for r in runs:
        assert r["status"] == "finished" and r["params"] == params[r[f"model/{knob}"]] and r["test/acc"] > 0
    table = (tmp_path / "sweep" / "report" / "table.md").read_text()
    assert f"| {knob} |" in table.splitlines()[2] or knob in table.split("\n\n")[1].splitlines()[0]
