"""A grid's records made fit to commit: each run's `results.json` and CSV history, nothing else, no machine paths.

    python scripts/report.py residual_vs_plain_cpu --export --out docs/results/residual_vs_plain_cpu

copies `<sweep dir>/<run>/{results.json, csv/metrics.csv}` to `<out>/runs/<run>/` (checkpoints, logs and wandb
files stay behind) and the report is then made from those copies, so that the committed tables can be regenerated
from the committed records alone (`scripts/report.py <out>/runs --out <out>`). Paths inside a run directory become
relative to it (`checkpoints/best.ckpt`); any other absolute path (a data root, a cache) keeps its last component
only (`…/cifar-10-batches-py`): where a machine kept its data says nothing about the result.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

from models.errors import ConfigError
from models.train.records import RESULTS, atomic_write_bytes, read_results

HISTORY = Path("csv") / "metrics.csv"
RUNS = "runs"
# An absolute path inside a string: "/" at the start, after "=", whitespace, a quote or an opening bracket.
_ABSOLUTE = re.compile(r"(?:^|(?<=[=\s'\"(\[]))/(?:[^\s'\",;)\]]+/)*([^\s'\",;)\]/]+)/?")


def strip_paths(value: Any, run_dir: str) -> Any:
    """`value` with every absolute path made relative to `run_dir` (inside it) or cut to its last component."""
    if isinstance(value, dict):
        return {k: strip_paths(v, run_dir) for k, v in value.items()}
    if isinstance(value, list):
        return [strip_paths(v, run_dir) for v in value]
    if not isinstance(value, str):
        return value
    if value == run_dir:
        return "."
    if value.startswith(run_dir.rstrip("/") + "/"):
        return value[len(run_dir.rstrip("/")) + 1:]
    return _ABSOLUTE.sub(lambda m: f"…/{m.group(1)}", value)


def export_records(sweep: str | Path, out: str | Path) -> Path:
    """Copy the records of every run under `sweep` to `<out>/runs/<run>`; returns `<out>/runs`. A run directory
    already exported and not changed since is rewritten identically (the export is repeatable)."""
    sweep, dest = Path(sweep), Path(out) / RUNS
    found = sorted(p.parent for p in sweep.rglob(RESULTS) if RUNS not in p.relative_to(sweep).parts[:-2])
    if not found:
        raise ConfigError(f"no runs (results.json) under {sweep}: nothing to export")
    for run in found:
        record = read_results(run)
        if record is None:
            raise ConfigError(f"{run / RESULTS} cannot be read: fix or remove it before exporting")
        name = run.relative_to(sweep)
        target = dest / name
        run_dir = str(record.get("run_dir") or run.resolve())
        clean = strip_paths(record, run_dir) | {"run_dir": str(Path(RUNS) / name)}
        atomic_write_bytes(target / RESULTS, (json.dumps(clean, indent=1, sort_keys=False) + "\n").encode())
        if (run / HISTORY).is_file():
            (target / HISTORY).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(run / HISTORY, target / HISTORY)
    return dest
