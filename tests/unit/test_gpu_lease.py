"""The GPU-lease grid (scripts/gpu_grid.sh): its epochs come from gpu-check's measured speed; its grid composes."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from helpers.runs import REPO
from models.bench.gpu_check import GRID_EPOCH_WORK, grid_epochs, measured_speed
from models.train.keys import check_keys
from models.utils.hydra import compose


def test_speed_is_read_from_a_gpu_check_report(tmp_path: Path) -> None:
    report = tmp_path / "gpu_check.json"
    report.write_text(json.dumps({"checks": {"speed": {"pass": False, "detail": "project 19,607 img/s, eager loop "
                                                       "11,179, CUDA-graph loop 31,620: 0.620 x the graph loop"}}}))
    assert measured_speed(report) == 19607.0
    assert measured_speed(tmp_path / "absent.json") is None
    report.write_text(json.dumps({"checks": {"graphs": {"pass": True, "detail": "..."}}}))  # no speed check ran
    assert measured_speed(report) is None


def test_epochs_fit_the_minutes_at_the_measured_speed() -> None:
    # the calibration itself: at 19,607 img/s one epoch of the slowest packed run takes 110,000 / 19,607 = 5.6 s
    assert grid_epochs(19607, 6.5) == int(0.85 * 330 * 19607 / GRID_EPOCH_WORK) == 49
    assert grid_epochs(None, 6.5) == 15
    assert grid_epochs(100.0, 6.5) == 5  # a slow device still runs the shortest schedule the grid allows
    assert grid_epochs(1e9, 6.5) == 200


def test_the_grid_takes_its_epochs_from_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("GRID_EPOCHS", "7")
    cfg = compose(["+ablation=residual_vs_plain_gpu", "data.root=/nowhere", "trainer=gpu"])
    check_keys(cfg)
    assert cfg.trainer.max_epochs == 7 and cfg.trainer.max_steps == -1 and cfg.trainer.max_time is None
    assert list(cfg.sched.milestones) == [0.5, 0.75] and cfg.optim.lr == 0.1
    monkeypatch.delenv("GRID_EPOCHS")
    assert compose(["+ablation=residual_vs_plain_gpu"]).trainer.max_epochs == 15


def test_the_script_needs_a_data_root() -> None:
    done = subprocess.run(["bash", str(REPO / "scripts" / "gpu_grid.sh")], capture_output=True, text=True)
    assert done.returncode != 0 and "usage: scripts/gpu_grid.sh DATA_ROOT" in done.stderr
