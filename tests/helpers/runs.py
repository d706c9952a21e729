"""Real runs of the project's commands: composed configs, `scripts/*.py` as subprocesses, isolated wandb dirs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "scripts"

# Tiny but real: digits at 8x8 (the 8x8 originals; resnet20 needs >= 4), a few batches per split.
FAST_TRAIN = [
    "data.image_size=8", "data.batch_size=32", "trainer.max_epochs=2", "trainer.limit_train_batches=4",
    "trainer.limit_val_batches=2", "trainer.limit_test_batches=2", "trainer.enable_progress_bar=false",
    "trainer.log_every_n_steps=1", "measure.warmup_steps=1", "summary=false", "sched.warmup_steps=2",
    "measure.parts=false",  # timed only where a test reads the times (the shared finished run)
]
WANDB_DIRS = {"WANDB_DIR": "dir", "WANDB_CONFIG_DIR": "config", "WANDB_CACHE_DIR": "cache", "WANDB_DATA_DIR": "data",
              "WANDB_ARTIFACT_DIR": "artifacts"}


def compose_train(overrides: list[str]) -> Any:
    """configs/train.yaml composed with Hydra's compose API (no run dir is created)."""
    from models.utils.hydra import compose

    return compose(overrides)


def wandb_env(root: Path) -> dict[str, str]:
    """Offline, silent wandb with every wandb directory under `root` (never the user's home config)."""
    env = {"WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_DISABLE_GIT": "true"}
    for key, sub in WANDB_DIRS.items():
        (root / sub).mkdir(parents=True, exist_ok=True)
        env[key] = str(root / sub)
    return env


def script_env(tmp: Path | None = None, **extra: str) -> dict[str, str]:
    """The environment for a subprocess of a script: no inherited HYDRA_FULL_ERROR, offline wandb, unbuffered."""
    env = {k: v for k, v in os.environ.items() if k not in ("HYDRA_FULL_ERROR", "CRASH_AT")}
    env.update(WANDB_MODE="offline", WANDB_SILENT="true", PYTHONUNBUFFERED="1")
    if tmp is not None:
        env["WANDB_DIR"] = str(tmp)
    env.update(extra)
    return env


def run_script(script: str, args: list[str], cwd: Path = REPO, env: dict[str, str] | None = None,
               timeout: float = 300, **kwargs: Any) -> subprocess.CompletedProcess:
    """`python scripts/<script>.py *args`, output captured."""
    return subprocess.run([sys.executable, str(SCRIPTS / f"{script}.py"), *args], cwd=cwd,
                          env=env or script_env(), capture_output=True, text=True, timeout=timeout, **kwargs)


def run_train_script(args: list[str], env: dict[str, str] | None = None, timeout: float = 300,
                     **kwargs: Any) -> subprocess.CompletedProcess:
    """`python scripts/train.py *args` from the repo root, output captured."""
    return run_script("train", args, env={**script_env(), **(env or {})}, timeout=timeout, **kwargs)


def data_config(name: str, **overrides: Any) -> dict[str, Any]:
    """`configs/data/<name>.yaml` as the dict `data.build_datamodule` takes, with `overrides` on top."""
    from omegaconf import OmegaConf

    cfg = OmegaConf.to_container(OmegaConf.load(REPO / "configs" / "data" / f"{name}.yaml"), resolve=True)
    return {**cfg, **overrides}


def csv_history(run_dir: Path, drop_prefix: tuple[str, ...] = ("perf/", "train/wall_s")) -> list[dict[str, str]]:
    """Every row of `<run dir>/csv/metrics.csv` (as text), without the timing columns (measurements, not results)."""
    import csv

    with open(run_dir / "csv" / "metrics.csv", newline="") as f:
        rows = [{k: v for k, v in row.items() if v != "" and not k.startswith(drop_prefix)}
                for row in csv.DictReader(f)]
    return [row for row in rows if set(row) - {"epoch", "step"}]  # rows that held only timing keys are gone


# results.json keys that describe an invocation, not the result: where the run lives, when and how often it was
# started, what stopped it, and measurements of speed and load (each invocation measures its own). Everything else
# must be the same whether a run was interrupted or not.
PER_INVOCATION = ("run_dir", "best_checkpoint", "started_at", "ended_at", "invocations", "interruptions",
                  "interrupted", "interrupted_at_step", "resume_from", "resumed_from", "resumed_at_step",
                  "wall_time_s", "wall_time_s/last", "train/wall_s", "epoch_time_s", "train/images_per_s",
                  "eval/images_per_s", "train/data_wait_frac", "train/measured_from", "train/measured_to",
                  "measured_train_steps", "mfu", "peak_memory_mb", "peak_flops")  # peak_flops: a CPU measures it
PER_INVOCATION_PREFIXES = ("hardware/load", "time/", "time_share/")
CURVE_WALL = 3  # the wall-time column of `curve` ([step, epoch, train/pflops, train/wall_s, val/acc])


def record_differences(a: dict[str, Any], b: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Every key whose value differs between two records, the per-invocation keys aside (the curve's wall-time
    column too): {key: (a's value, b's value)}."""
    def result(record: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in record.items()
               if k not in PER_INVOCATION and not k.startswith(PER_INVOCATION_PREFIXES)}
        if out.get("curve"):
            out["curve"] = [[x for i, x in enumerate(p) if i != CURVE_WALL] for p in out["curve"]]
        return out

    ra, rb = result(a), result(b)
    return {k: (ra.get(k), rb.get(k)) for k in sorted(set(ra) | set(rb)) if ra.get(k) != rb.get(k)}
