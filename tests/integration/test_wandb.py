"""What the offline wandb run wrote, read back with wandb's own reader (`wandb leet inspect`), no mocks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import models
from helpers.wandb import history, inspect_run, metric_definitions
from models.complexity import profile
from models.train.loggers import wandb_mode


def test_offline_run_contents(finished_wandb_run: dict) -> None:
    run_dir: Path = finished_wandb_run["run_dir"]
    record = finished_wandb_run["record"]
    run = inspect_run(run_dir)
    summary, config = run["summary"], run["config"]
    assert run["state"] == "finished" and run["exit_code"] == 0
    assert run["run_id"] == (run_dir / "wandb_id.txt").read_text().strip()
    assert run["project"] == "vgg-vs-resnet" and "digits_quick" in run["tags"] and "resnet20" in run["tags"]
    # params / MACs / accuracy side by side in the summary
    assert summary["params"] == record["params"] == 269722
    assert summary["macs"] == record["macs"] and summary["flops"] == 2 * record["macs"]
    assert summary["test/acc"] == pytest.approx(record["test/acc"])
    assert summary["test_last/acc"] == pytest.approx(record["test_last/acc"])
    assert summary["val/acc"] == {"max": pytest.approx(record["val/acc_best"])}  # define_metric(summary="max")
    assert summary["train/images_per_s"] == pytest.approx(record["train/images_per_s"])
    # model knobs as flat config keys, plus params/MACs and the experiment
    for knob in ("stem", "block", "residual", "shortcut", "head", "depth", "width", "widths", "depths"):
        assert config[f"model/{knob}"] == record[f"model/{knob}"], knob
    assert config["params"] == record["params"] and config["macs"] == record["macs"]
    assert config["experiment"] == "digits_quick" and config["model"] == "resnet20"
    # the per-layer breakdown as a wandb.Table
    table = summary["complexity/layers"]
    assert table["_type"] == "table-file" and table["ncols"] == 7
    assert table["nrows"] == len(profile(models.build("resnet20", num_classes=10), 8).layers)
    timing = summary["time/parts"]  # the measured time per part, as a table beside the per-layer counts
    assert timing["_type"] == "table-file" and timing["ncols"] == 4 and timing["nrows"] == 5
    assert summary["time_share/head"] == pytest.approx(record["time_share/head"])
    assert "api_key" not in json.dumps(run).lower()


def test_offline_unless_online_was_chosen(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WANDB_MODE", raising=False)
    assert wandb_mode(None) == "offline"
    assert wandb_mode(False) == "online" and wandb_mode(True) == "offline"
    monkeypatch.setenv("WANDB_MODE", "online")
    assert wandb_mode(None) == "online"
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert wandb_mode(None) == "disabled"


def test_accuracy_against_compute_on_the_dashboard(finished_wandb_run: dict) -> None:
    """train/pflops and train/wall_s logged at every validation point, declared as metrics, and val/* and test/*
    plotted against training PFLOPs by default; results.json has the totals and the curve the report draws."""
    run_dir: Path = finished_wandb_run["run_dir"]
    record = finished_wandb_run["record"]
    (wandb_file,) = sorted(run_dir.glob("wandb/offline-run-*/run-*.wandb"))
    defined = metric_definitions(wandb_file)
    assert "train/pflops" in defined and "train/wall_s" in defined
    for name in ("val/acc", "val/*", "test/*"):
        assert defined[name]["step_metric"] == "train/pflops" and defined[name]["options"]["step_sync"]
    rows = [r for r in history(wandb_file) if "train/wall_s" in r]
    assert len(rows) == record["epochs"] and all(r["train/pflops"] > 0 for r in rows)  # one per validation
    val = [r for r in history(wandb_file) if "val/acc" in r]
    assert [r["train/pflops"] for r in val] == [r["train/pflops"] for r in rows]  # val rows carry their x value
    steps_images = record["steps"] * record["data/batch_size"]
    assert record["train/pflops"] == pytest.approx(3 * record["flops"] * steps_images / 1e15)
    assert len(record["curve"]) == record["epochs"] and record["curve"][-1][2] == pytest.approx(record["train/pflops"])
    assert 0 < record["curve"][0][3] <= record["train/wall_s"] <= record["wall_time_s"]
