"""What an offline wandb run wrote, read back with wandb's own reader (`wandb leet inspect`), no mocks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

WANDB = Path(sys.executable).with_name("wandb")


def inspect_run(run_dir: Path) -> dict:
    """The summary, config and state of the single offline run under `run_dir`."""
    (path,) = sorted(run_dir.glob("wandb/offline-run-*/run-*.wandb"))
    out = subprocess.run([str(WANDB), "leet", "inspect", "--summary", "--json", str(path)], capture_output=True,
                         text=True, timeout=120, check=True)
    return json.loads(out.stdout)


def display_name(run_dir: Path) -> str:
    """The name the offline run under `run_dir` shows on the dashboard."""
    (path,) = sorted(run_dir.glob("wandb/offline-run-*/run-*.wandb"))
    out = subprocess.run([str(WANDB), "leet", "inspect", "--json", str(path)], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    return next(json.loads(line)["run"]["display_name"] for line in out.splitlines() if '"display_name"' in line)


def history(wandb_file: Path) -> list[dict]:
    """Every history row of one .wandb file, in order."""
    out = subprocess.run([str(WANDB), "leet", "inspect", "--json", str(wandb_file)], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    return [json.loads(line)["history"]["item"] for line in out.splitlines() if '"history"' in line]


def metric_definitions(wandb_file: Path) -> dict[str, dict]:
    """The run's define_metric declarations (name or glob -> its options, step metric and summary)."""
    out = subprocess.run([str(WANDB), "leet", "inspect", "--json", str(wandb_file)], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    metrics = [json.loads(line)["metric"] for line in out.splitlines() if '"type":"metric"' in line]
    return {m.get("name") or m.get("glob_name"): m for m in metrics}
