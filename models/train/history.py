"""What a checkpoint carries besides weights, optimizer and loop state, so that a resumed run continues its records
exactly as an uninterrupted one would (`ResumeState`, a callback every run installs):

* the RNG states (torch, CUDA, Python, NumPy), as tensors and tuples so that `weights_only` loading accepts them;
* the best validation accuracy so far (`val/acc_best`);
* EVERY rank's training sums of the epoch the checkpoint was taken in (loss sum, correct counts, image count;
  gathered on rank 0's checkpoint: a collective, fine because every rank saves), so the resumed epoch's train/*
  counts the batches before the interruption;
* the epoch's train/* row when the checkpoint was taken after the epoch's last batch but before the loggers wrote
  the row (ModelCheckpoint saves in on_train_epoch_end, before Lightning writes what was logged there; SIGTERM stops
  before the epoch end). Lightning resumes such a checkpoint in the next epoch without the epoch hooks, so the
  resumed run writes that row itself (on fit start), at the (epoch, step) Lightning would have used.

The classifier only exposes its sums (`train_sums`, `load_train_sums`, `unwritten_epoch_row`, `reset_train_sums`);
everything about checkpoints and loggers lives here.
"""

from __future__ import annotations

import random
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback

from models.train.module import Classifier


def rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "python": random.getstate(),
            "numpy": (np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:])}


def set_rng_state(rng: dict[str, Any]) -> None:
    torch.set_rng_state(rng["torch"])
    if rng["cuda"] and torch.cuda.is_available() and len(rng["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(rng["cuda"])
    random.setstate(rng["python"])
    name, keys, *rest = rng["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))


def _gather(trainer: pl.Trainer, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Every rank's `state`, stacked along a leading rank dimension, on the CPU."""
    if trainer.world_size == 1:
        return {k: v.unsqueeze(0).cpu() for k, v in state.items()}
    gathered = {}
    for key, value in state.items():  # torch's all_gather: Lightning's goes through a deprecated one (a warning)
        parts = [torch.empty_like(value) for _ in range(trainer.world_size)]
        torch.distributed.all_gather(parts, value.contiguous())
        gathered[key] = torch.stack(parts).cpu()
    return gathered


def _val_best(saved: dict[str, Any]) -> torch.Tensor:
    """The saved best val/acc: {"max_value": t} (earlier versions, a MaxMetric's state, nest it under "state")."""
    return torch.as_tensor(saved.get("state", saved)["max_value"]).float()


class ResumeState(Callback):
    """Saves and restores the run's records state with every checkpoint (see the module docstring)."""

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        checkpoint["rng"] = rng_state()
        if not isinstance(pl_module, Classifier):
            return
        checkpoint["metric_state"] = {"val_acc_best": {"max_value": pl_module.val_acc_best.cpu()}}
        checkpoint["train_epoch_state"] = _gather(trainer, pl_module.train_sums())
        row = pl_module.unwritten_epoch_row
        if row is not None:
            checkpoint["train_epoch_pending"] = {"metrics": row, "epoch": trainer.current_epoch,
                                                 "step": trainer.global_step - 1}

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        if checkpoint.get("rng"):
            set_rng_state(checkpoint["rng"])
        if not isinstance(pl_module, Classifier):
            return
        state = checkpoint.get("metric_state")
        if state:
            pl_module.val_acc_best.fill_(max(0.0, _val_best(state["val_acc_best"]).item()))  # MaxMetric's was -inf
        sums = checkpoint.get("train_epoch_state")
        if sums and next(iter(sums.values())).shape[0] == trainer.world_size:  # else: counted from the restart
            pl_module.load_train_sums({k: v[trainer.global_rank] for k, v in sums.items()})
        self._pending = checkpoint.get("train_epoch_pending")

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        pending, self._pending = self._pending, None  # after the checkpoint is restored (or nothing to train)
        if pending and isinstance(pl_module, Classifier):  # the interrupted epoch's row, then a clean start
            for logger in trainer.loggers:
                logger.log_metrics({**pending["metrics"], "epoch": pending["epoch"]}, step=pending["step"])
            pl_module.reset_train_sums()
