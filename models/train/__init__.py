"""The training run: `train(cfg)` (run.py) and its parts — build.py (datamodule, module, callbacks, Trainer),
keys.py (every config key, typed), config.py (run dir, Trainer settings, resume checks), preflight.py (those checks
before torch loads), module.py (the LightningModule), optim.py (optimizers and schedules), callbacks.py
(measurement, SIGTERM, finiteness), records.py / checkpoints.py (what is written to disk), loggers.py (wandb /
CSV), console.py (what is printed)."""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:  # `from models.train import train` without importing Lightning up front
    if name == "train":
        from models.train.run import train

        return train
    raise AttributeError(f"module 'models.train' has no attribute {name!r}")
