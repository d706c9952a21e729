"""Security of artefacts (issue 6, item 6): see docs/security.md.

- Checkpoints are loaded with torch.load(weights_only=True) semantics: a checkpoint whose pickle would run code is
  refused with a one-line error, and the code never runs (resume path through scripts/train.py).
- scripts/report.py reads only JSON (results.json) from run directories: booby-trapped .ckpt/.pkl files next to the
  results are never unpickled (each trap would create a marker file; a control shows the traps are live).
- No secret from the environment (API keys, tokens) is written into configs, results.json, logs or the wandb run.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from helpers.runs import REPO

SECRETS = {"WANDB_API_KEY": "secret-test-key-123", "AWS_SECRET_ACCESS_KEY": "secret-aws-key-456",
           "HF_TOKEN": "secret-hf-token-789", "GITHUB_TOKEN": "secret-gh-token-000",
           "OPENAI_API_KEY": "secret-openai-key-321"}


class Trap:
    """Unpickling this runs a shell command that creates `marker`."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _env(tmp: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    env.update(WANDB_MODE="offline", WANDB_SILENT="true", WANDB_DISABLE_GIT="true", PYTHONPATH=str(REPO), **extra)
    return env


def _record(seed: int) -> dict:
    return {"status": "finished", "experiment": "planted", "ablation": None, "seed": seed, "model": "resnet20",
            "model/stem": "cifar", "model/block": "basic", "model/residual": True, "model/head": "gap",
            "model/depth": 20, "model/width": 16, "data": "digits", "params": 272474, "macs": 40813184,
            "flops": 81626368, "test/acc": 0.9 + seed / 100, "test/acc_top5": 1.0, "val/acc_best": 0.9,
            "train/images_per_s": 1000.0, "epochs": 2, "steps": 8}


def test_report_reads_json_only_and_never_unpickles(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    markers = []
    for seed in (0, 1):
        run = runs / f"run{seed}"
        (run / "checkpoints").mkdir(parents=True)
        (run / "results.json").write_text(json.dumps(_record(seed)))
        for name in ("checkpoints/last.ckpt", "checkpoints/best.ckpt", "model.pkl", "state.pt"):
            marker = tmp_path / f"PWNED_{seed}_{Path(name).name}"
            markers.append(marker)
            if name.endswith(".ckpt"):
                torch.save({"state_dict": {}, "trap": Trap(marker)}, run / name)  # zip format, as Lightning writes
            else:
                (run / name).write_bytes(pickle.dumps(Trap(marker)))
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "report.py"), str(runs), "--out",
                           str(tmp_path / "report")], cwd=tmp_path, env=_env(tmp_path), capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = (tmp_path / "report" / "table.md").read_text()
    assert "272.47" in table and "| 2 |" in table  # params (K) of the planted runs, n = 2 seeds
    assert not [m for m in markers if m.exists()], "the report unpickled a file from the runs directory"

    # control: the traps are live (loading them the unsafe way runs the code)
    control = runs / "run0" / "checkpoints" / "last.ckpt"
    subprocess.run([sys.executable, "-c", f"import torch; torch.load({str(control)!r}, weights_only=False)"],
                   env=_env(tmp_path), capture_output=True, timeout=120)
    assert (tmp_path / "PWNED_0_last.ckpt").exists()


@pytest.mark.slow
def test_resume_refuses_a_checkpoint_that_would_run_code(tmp_path: Path) -> None:
    """The resume path (checkpoint check, then Lightning's trainer.fit(ckpt_path=...) through our CheckpointIO) only
    ever loads with weights_only=True: a trapped last.ckpt in zip format is a clean one-line error."""
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    marker = tmp_path / "PWNED"
    torch.save({"state_dict": {}, "hyper_parameters": {"model": {}}, "trap": Trap(marker)},
               run / "checkpoints" / "last.ckpt")
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "train.py"), "data.image_size=8",
                           "trainer.max_epochs=1", "logger=none", f"hydra.run.dir={run}"], cwd=tmp_path,
                          env=_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: checkpoint {run}/checkpoints/last.ckpt holds objects "
                                                   "that weights_only loading refuses"), proc.stderr
    assert not marker.exists()
    assert json.loads((run / "results.json").read_text())["status"] == "failed"


@pytest.mark.slow
def test_no_secret_is_written_anywhere(tmp_path: Path) -> None:
    """A short offline wandb run (plus the CSV logger's directory) with API keys/tokens in the environment: no file
    under the run directory or the wandb directories, and nothing printed, contains any of the values."""
    wandb_dirs = {k: tmp_path / "wandb" / k.lower() for k in ("WANDB_DIR", "WANDB_CONFIG_DIR", "WANDB_CACHE_DIR",
                                                            "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR")}
    for d in wandb_dirs.values():
        d.mkdir(parents=True)
    run = tmp_path / "run"
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "train.py"), "data.image_size=8",
                           "data.batch_size=32", "trainer.max_epochs=1", "trainer.limit_train_batches=2",
                           "trainer.limit_val_batches=1", "trainer.limit_test_batches=1", "logger=wandb",
                           "trainer.enable_progress_bar=false", f"hydra.run.dir={run}"], cwd=tmp_path,
                          env=_env(tmp_path, **SECRETS, **{k: str(v) for k, v in wandb_dirs.items()}),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((run / "results.json").read_text())["status"] == "finished"
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.suffix == ".wandb" for p in files) and (run / ".hydra" / "config.yaml").exists()
    assert len(files) > 10
    for secret in SECRETS.values():
        assert secret not in proc.stdout and secret not in proc.stderr
        leaked = [str(p) for p in files if secret.encode() in p.read_bytes()]
        assert not leaked, f"{secret} written to {leaked}"
