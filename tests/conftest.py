"""Shared pytest fixtures. (Shared file: add fixtures, never remove others'.)"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]

# ------------------------------------------------------------------ training runs (tests/test_train*.py & co.)
# Tiny but real: digits at 8x8 (the 8x8 originals; resnet20 needs >= 4), a few batches per split.
FAST_TRAIN = [
    "data.image_size=8", "data.batch_size=32", "trainer.max_epochs=2", "trainer.limit_train_batches=4",
    "trainer.limit_val_batches=2", "trainer.limit_test_batches=2", "trainer.enable_progress_bar=false",
    "trainer.log_every_n_steps=1", "measure.warmup_steps=1", "summary=false", "sched.warmup_steps=2",
]


@pytest.fixture
def wandb_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Offline, silent wandb with every wandb directory under tmp_path (never the user's home config)."""
    root = tmp_path / "wandb_home"
    for key, sub in (("WANDB_DIR", "dir"), ("WANDB_CONFIG_DIR", "config"), ("WANDB_CACHE_DIR", "cache"),
                     ("WANDB_DATA_DIR", "data"), ("WANDB_ARTIFACT_DIR", "artifacts")):
        (root / sub).mkdir(parents=True, exist_ok=True)
        monkeypatch.setenv(key, str(root / sub))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DISABLE_GIT", "true")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    return root


def compose_train(overrides: list[str]) -> Any:
    """configs/train.yaml composed with Hydra's compose API (no run dir is created)."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(str(REPO / "configs"), version_base="1.3"):
        return compose("train", overrides=overrides)


@pytest.fixture
def train_cfg():
    return compose_train


def run_train_script(args: list[str], env: dict[str, str] | None = None, timeout: float = 300,
                     **kwargs: Any) -> subprocess.CompletedProcess:
    """`python scripts/train.py *args` from the repo root, output captured."""
    full_env = {**os.environ, **(env or {})}
    full_env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run([sys.executable, str(REPO / "scripts" / "train.py"), *args], cwd=REPO, env=full_env,
                          capture_output=True, text=True, timeout=timeout, **kwargs)


@pytest.fixture
def train_script():
    return run_train_script


@pytest.fixture(scope="session")
def finished_wandb_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One real end-to-end digits run (wandb offline), shared by the results.json and wandb read-back tests."""
    from models.training import train

    base = tmp_path_factory.mktemp("e2e")
    env = {"WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_DISABLE_GIT": "true"}
    for key, sub in (("WANDB_DIR", "dir"), ("WANDB_CONFIG_DIR", "config"), ("WANDB_CACHE_DIR", "cache"),
                     ("WANDB_DATA_DIR", "data")):
        (base / sub).mkdir()
        env[key] = str(base / sub)
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        run_dir = base / "run"
        overrides = ["experiment=digits_quick", *FAST_TRAIN, "logger=wandb", f"run_dir={run_dir}"]
        cfg = compose_train(overrides)
        record = train(cfg, overrides=overrides)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return {"run_dir": run_dir, "record": record, "cfg": cfg}
