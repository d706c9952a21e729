"""`Recorder`: the one owner of a run's `results.json`. Every key goes through `update` (checked against the schema,
models/train/schema.py) and every write through `write` (atomic, rank 0 only): at the start of each invocation, at
each checkpoint, at each validation, after fit and test, on a failure and on a stop by signal.

As a Lightning callback it also keeps what a resume needs to continue the records exactly (the CSV rows written so
far, the wall time), and the compute clock: at every validation point the training compute so far
(`train/pflops` = 3 x forward FLOPs x images seen) and wall time (`train/wall_s`, over every invocation) go to the
loggers (wandb plots accuracy against them: `models.train.loggers.wandb_start` declares them as x-axes) and into
`curve` in results.json, which reports draw accuracy against compute from.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities.rank_zero import rank_zero_only
from omegaconf import DictConfig

from models.train import schema
from models.train.loggers import ResumableCSVLogger
from models.train.records import RESULTS, atomic_write_json
from models.utils.system import PACKED_ENV


class Recorder(Callback):
    """results.json of one run as it is being written: its keys, its clocks, and who may write it.

    Wall time adds up every invocation of the run directory: the previous record's total (an invocation killed by
    SIGKILL counts until its last checkpoint, when the record was last written) plus this one's."""

    def __init__(self, cfg: DictConfig, run_dir: Path, overrides: list[str], previous: dict[str, Any] | None) -> None:
        self.cfg, self.dir, self.t0 = cfg, run_dir, time.perf_counter()
        self.is_zero = rank_zero_only.rank == 0  # DDP ranks > 0 never write the record
        self.previous = previous or {}
        self.earlier_s = float(self.previous.get("wall_time_s") or 0.0)
        self.flops_per_image = 0.0
        self._point: dict[str, float] = {}  # train/pflops and train/wall_s of the validation in progress
        self.data: dict[str, Any] = {}
        self.update({"status": "running", "run_dir": str(run_dir), "experiment": str(cfg.experiment),
                     "ablation": cfg.get("ablation"), "tags": list(cfg.get("tags") or []), "seed": int(cfg.seed),
                     "overrides": overrides, "invocations": int(self.previous.get("invocations") or 0) + 1,
                     "packed_jobs": int(os.environ.get(PACKED_ENV) or 1), "started_at": time.time(),
                     "interruptions": list(self.previous.get("interruptions") or [])})

    def update(self, values: dict[str, Any]) -> None:
        """Set keys of the record (each one described by the schema, else KeyError: a programming error)."""
        schema.check(values)
        self.data.update(values)

    def write(self) -> None:
        if self.is_zero and self.dir.exists():
            atomic_write_json(self.dir / RESULTS, self.data)

    def wall_s(self) -> float:
        return self.earlier_s + time.perf_counter() - self.t0

    def stop_clock(self) -> None:
        last = time.perf_counter() - self.t0
        self.update({"wall_time_s": self.earlier_s + last, "wall_time_s/last": last, "ended_at": time.time()})

    # ------------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        """What every checkpoint records besides the weights: the CSV rows written so far (the history up to it)
        and the wall time; results.json is rewritten with that time."""
        if not trainer.is_global_zero:
            return
        for logger in trainer.loggers:
            if isinstance(logger, ResumableCSVLogger):
                checkpoint["csv_rows"] = logger.rows_written()
        self.stop_clock()
        checkpoint["wall_time_s"] = self.data["wall_time_s"]
        self.write()

    # ------------------------------------------------------------------ accuracy against compute
    def compute(self, trainer: pl.Trainer) -> dict[str, float]:
        """Training compute (PFLOPs) and wall time so far: what a validation point is plotted against."""
        per_step = int(getattr(trainer.datamodule, "batch_size", 0) or 0) * trainer.world_size * \
            int(trainer.accumulate_grad_batches)
        return {"train/pflops": 3 * self.flops_per_image * trainer.global_step * per_step / 1e15,
                "train/wall_s": self.wall_s()}

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """The points of earlier invocations up to the checkpoint this one resumed from are kept; those a killed
        invocation validated after it are done again. (Not on_fit_start: Lightning restores the loops' state, hence
        global_step, only after that hook, where every resumed run would read step 0 and lose its points.)"""
        step = trainer.global_step
        # a checkpoint at step s is either mid-epoch (no validation at s) or taken right after the validation at s,
        # which a resume does not run again: the point at s stays
        self.update({"curve": [p for p in self.previous.get("curve") or [] if p[0] <= step] if step else []})

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        self._point = self.compute(trainer)  # the same point goes to the loggers and into the curve
        for logger in trainer.loggers:  # before val/*: wandb puts them in the same step (define_metric, step_sync)
            logger.log_metrics(self._point, step=trainer.global_step)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        point = self._point
        acc = trainer.callback_metrics.get("val/acc")
        curve = [*self.data.get("curve", []), [trainer.global_step, trainer.current_epoch, point["train/pflops"],
                                                point["train/wall_s"], None if acc is None else float(acc)]]
        self.update({**point, "curve": curve})
