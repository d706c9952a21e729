"""Shared pytest fixtures (helpers live in tests/helpers). Tiers: `make test-fast` = not slow/slurm/gpu."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from helpers.runs import FAST_TRAIN, compose_train, run_train_script
from helpers.runs import wandb_env as wandb_env_vars


@pytest.fixture
def wandb_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Offline, silent wandb with every wandb directory under tmp_path (never the user's home config)."""
    root = tmp_path / "wandb_home"
    for key, value in wandb_env_vars(root).items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    return root


@pytest.fixture
def train_cfg():
    return compose_train


@pytest.fixture
def train_script():
    return run_train_script


def pytest_configure(config: pytest.Config) -> None:
    """Two xdist workers share two cores: one torch thread each, or their intra-op pools oversubscribe the cores and
    every in-process test slows down (the subprocesses a test starts keep torch's own choice)."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch

        torch.set_num_threads(1)


@pytest.fixture(scope="session")
def finished_wandb_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One real end-to-end digits run (wandb offline, parts timed), trained ONCE per test session and shared by every
    test that only reads what a run wrote (results.json, the wandb files), whichever xdist worker runs it: the first
    worker to get here trains it under a file lock, the others read the finished run."""
    from filelock import FileLock

    from models.train.records import read_results
    from models.train.run import train

    session = tmp_path_factory.getbasetemp()
    base = (session.parent if os.environ.get("PYTEST_XDIST_WORKER") else session) / "shared_e2e"  # this session's
    base.mkdir(exist_ok=True)
    run_dir = base / "run"
    overrides = ["experiment=digits_quick", *FAST_TRAIN, "logger=wandb", "measure.parts=true", f"run_dir={run_dir}"]
    cfg = compose_train(overrides)
    with FileLock(str(base / "lock")):
        record = read_results(run_dir)
        if not record or record.get("status") != "finished":
            env = wandb_env_vars(base)
            saved = {k: os.environ.get(k) for k in env}
            os.environ.update(env)
            try:
                record = train(cfg, overrides=overrides)
            finally:
                for k, v in saved.items():
                    if v is None:
                        os.environ.pop(k, None)
                    else:
                        os.environ[k] = v
    return {"run_dir": run_dir, "record": record, "cfg": cfg}


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory):
    """A real single-node SLURM cluster (tests/helpers/slurm.py), started once per test session by the xdist
    worker that runs tests/integration/test_slurm.py (`make test` hands out whole files), stopped by PID. The Debian
    packages are installed when missing; the tests skip only where that is impossible."""
    from helpers.slurm import LocalSlurm, install_packages

    problem = install_packages()
    if problem:
        pytest.skip(f"no SLURM: {problem}")
    with LocalSlurm(tmp_path_factory.mktemp("slurm")) as cluster:
        yield cluster
