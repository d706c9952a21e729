"""`Classifier`: the LightningModule around any network of the zoo (or any nn.Module mapping images to logits).

Loss: cross-entropy with optional label smoothing. Metrics: top-1/top-5 accuracy (torchmetrics) per split, and
`val/acc_best` (MaxMetric). Optimizer and schedule: `models.train.optim`. A non-finite loss stops the run within the
step that produced it (`Diverged`), before backward touches the weights.
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MaxMetric, MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from models.errors import ConfigError
from models.train.optim import LRSchedule, OptimConfig, make_optimizer
from models.train.records import Diverged


def _accuracy(num_classes: int, k: int) -> MulticlassAccuracy:
    # validate_args=False: inputs are our own logits/labels; the checks cost host syncs on every batch
    return MulticlassAccuracy(num_classes=num_classes, top_k=min(k, num_classes), average="micro", validate_args=False)


def _metric_state(metric: Any) -> dict[str, Any]:
    """A torchmetrics Metric's accumulated state as CPU tensors (plus its update count)."""
    state = {k: v.detach().cpu().clone() for k, v in metric.metric_state.items() if isinstance(v, torch.Tensor)}
    return {"state": state, "update_count": int(metric._update_count)}


def _set_metric_state(metric: Any, saved: dict[str, Any]) -> None:
    for k, v in saved["state"].items():
        setattr(metric, k, v.to(metric.device))
    metric._update_count = int(saved["update_count"])
    metric._computed = None


class Classifier(pl.LightningModule):
    def __init__(
        self,
        net: nn.Module,
        num_classes: int,
        optim: dict[str, Any] | None = None,
        sched: dict[str, Any] | None = None,
        label_smoothing: float = 0.0,
        channels_last: bool = False,
        compile: bool = False,
        model_knobs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.net = net
        self.optim_cfg = OptimConfig(**(optim or {}))
        self.sched_cfg = dict(sched or {})
        LRSchedule(**self.sched_cfg)  # validate now, not when fit starts
        if not 0 <= label_smoothing < 1:
            raise ConfigError(f"label_smoothing={label_smoothing!r} must be in [0, 1)")
        self.label_smoothing = float(label_smoothing)
        self.channels_last = channels_last
        # Plain dicts only: checkpoints must load with torch.load(weights_only=True). model_knobs lets a resume
        # check that the checkpoint was trained with the same architecture.
        self.save_hyperparameters({
            "num_classes": num_classes, "optim": asdict(self.optim_cfg), "sched": self.sched_cfg,
            "label_smoothing": self.label_smoothing, "channels_last": channels_last, "compile": compile,
            "model": dict(model_knobs or {}),
        })
        if channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        if compile:
            self.net.compile()  # in place: state_dict keys stay those of the plain network
        self.metrics = nn.ModuleDict({
            f"{split}_{name}": _accuracy(num_classes, k)
            for split in ("train", "val", "test") for name, k in (("acc", 1), ("acc_top5", 5))
        })
        self.val_loss = MeanMetric()
        self.test_loss = MeanMetric()
        self.val_acc_best = MaxMetric()
        # Training loss of the epoch, accumulated on the device (no per-step self.log: see training_step)
        self._train_loss_sum: torch.Tensor | None = None
        self._train_images = 0
        self.test_prefix = "test"  # training.py sets "test_last" to evaluate the last checkpoint separately

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.net(x)

    def _step(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x, y = batch[0], batch[1]
        logits = self(x)
        loss = F.cross_entropy(logits, y, label_smoothing=self.label_smoothing)
        return loss, logits, y

    # ------------------------------------------------------------------ train
    # Speed: each self.log() costs ~1 ms of Python on every step (Lightning moves its result object to the device),
    # and logging a torchmetrics object also copies its state. So per step we only update the accuracy metrics and
    # a device-side loss sum; step values are logged on the steps the loggers actually write (log_every_n_steps),
    # epoch values once at epoch end. Logged keys are unchanged: train/loss_step, train/loss_epoch, train/acc,
    # train/acc_top5, train/lr.
    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        loss, logits, y = self._step(batch)
        # One host sync per step buys detection within the step; all ranks decide together so DDP never hangs.
        bad = not bool(torch.isfinite(loss.detach()))
        if self.trainer.strategy.reduce_boolean_decision(bad, all=False):
            raise Diverged(self.global_step, f"training loss is {float(loss.detach())}")
        with torch.no_grad():
            logits_d, loss_d = logits.detach(), loss.detach()
            self.metrics["train_acc"].update(logits_d, y)
            self.metrics["train_acc_top5"].update(logits_d, y)
            n = y.numel()
            self._train_loss_sum = loss_d * n if self._train_loss_sum is None else self._train_loss_sum + loss_d * n
            self._train_images += n
        connector = self.trainer._logger_connector
        if connector.should_update_logs or self.trainer.fast_dev_run:
            self.log("train/loss_step", loss_d, on_step=True, on_epoch=False)
            self.log("train/lr", self.optimizers().param_groups[0]["lr"], on_step=True, on_epoch=False)
        return loss

    def on_train_epoch_start(self) -> None:
        self._train_loss_sum, self._train_images = None, 0
        state, self._resumed_train_state = getattr(self, "_resumed_train_state", None), None
        # Resumed inside an epoch: continue its sums. Single process only: under DDP each rank had its own sums and
        # the checkpoint holds rank 0's, so there the resumed epoch's train/* cover the batches after the restart.
        if state and self.trainer.world_size == 1 and state["train_images"]:
            _set_metric_state(self.metrics["train_acc"], state["train_acc"])
            _set_metric_state(self.metrics["train_acc_top5"], state["train_acc_top5"])
            self._train_loss_sum = state["train_loss_sum"].to(self.device)
            self._train_images = int(state["train_images"])

    def on_train_epoch_end(self) -> None:
        if self._train_images:
            kw = {"on_step": False, "on_epoch": True, "sync_dist": True}  # acc is already synced by compute()
            self.log("train/loss_epoch", self._train_loss_sum / self._train_images, prog_bar=True, **kw)
            self.log("train/acc", self.metrics["train_acc"].compute(), **kw)
            self.log("train/acc_top5", self.metrics["train_acc_top5"].compute(), **kw)
        self.metrics["train_acc"].reset()
        self.metrics["train_acc_top5"].reset()
        self._train_loss_sum, self._train_images = None, 0

    # ------------------------------------------------------------------ eval
    # Same pattern: per batch only metric updates (exact per-image means across uneven batches and ranks), one log
    # per key at epoch end.
    def on_train_start(self) -> None:
        if not self.trainer.ckpt_path:  # a resumed run keeps its best-so-far
            self.val_acc_best.reset()

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        loss, logits, y = self._step(batch)
        self.metrics["val_acc"].update(logits, y)
        self.metrics["val_acc_top5"].update(logits, y)
        self.val_loss.update(loss, weight=y.numel())

    def on_validation_epoch_end(self) -> None:
        kw = {"on_step": False, "on_epoch": True, "sync_dist": True}  # values are already synced by compute()
        acc = self.metrics["val_acc"].compute()
        self.log("val/loss", self.val_loss.compute(), prog_bar=True, **kw)
        self.log("val/acc", acc, prog_bar=True, **kw)
        self.log("val/acc_top5", self.metrics["val_acc_top5"].compute(), **kw)
        for m in (self.val_loss, self.metrics["val_acc"], self.metrics["val_acc_top5"]):
            m.reset()
        if self.trainer.sanity_checking:
            return
        self.val_acc_best(acc)
        self.log("val/acc_best", self.val_acc_best.compute(), sync_dist=True, prog_bar=True)

    def test_step(self, batch: Any, batch_idx: int) -> None:
        loss, logits, y = self._step(batch)
        self.metrics["test_acc"].update(logits, y)
        self.metrics["test_acc_top5"].update(logits, y)
        self.test_loss.update(loss, weight=y.numel())  # exact per-image mean across uneven last batches and ranks

    def on_test_epoch_end(self) -> None:
        p, kw = self.test_prefix, {"on_step": False, "on_epoch": True, "sync_dist": True}
        self.log(f"{p}/loss", self.test_loss.compute(), **kw)
        self.log(f"{p}/acc", self.metrics["test_acc"].compute(), **kw)
        self.log(f"{p}/acc_top5", self.metrics["test_acc_top5"].compute(), **kw)
        for m in (self.test_loss, self.metrics["test_acc"], self.metrics["test_acc_top5"]):
            m.reset()

    # ------------------------------------------------------------------ optim
    def configure_optimizers(self) -> dict[str, Any]:
        opt = make_optimizer(self.net, self.optim_cfg)
        steps = self.trainer.estimated_stepping_batches  # infinite only for open-ended runs on a constant schedule
        self.total_steps = int(steps) if math.isfinite(steps) else None  # (config.check_run_length refuses others)
        schedule = LRSchedule(**self.sched_cfg, total_steps=self.total_steps or 1)
        scheduler = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": scheduler, "interval": "step", "frequency": 1}}

    # ------------------------------------------------------------------ RNG state in checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Lightning does not store RNG state; we do, as tensors/tuples so weights_only loading accepts them.
        np_state = np.random.get_state()
        checkpoint["rng"] = {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "python": random.getstate(),
            "numpy": (np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]),
        }
        # Running metric state (tensors only, weights_only-safe), so that a resumed run reports what an uninterrupted
        # one would: the best val accuracy so far, and the training sums of the epoch the checkpoint was taken in.
        checkpoint["metric_state"] = {
            "val_acc_best": _metric_state(self.val_acc_best),
            "train_acc": _metric_state(self.metrics["train_acc"]),
            "train_acc_top5": _metric_state(self.metrics["train_acc_top5"]),
            "train_loss_sum": None if self._train_loss_sum is None else self._train_loss_sum.detach().cpu(),
            "train_images": self._train_images,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("metric_state")
        if state:
            _set_metric_state(self.val_acc_best, state["val_acc_best"])
            self._resumed_train_state = state  # applied by on_train_epoch_start (which would reset it otherwise)
        rng = checkpoint.get("rng")
        if not rng:
            return
        torch.set_rng_state(rng["torch"])
        if rng["cuda"] and torch.cuda.is_available() and len(rng["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(rng["cuda"])
        random.setstate(rng["python"])
        name, keys, *rest = rng["numpy"]
        np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
