"""`Classifier`: the LightningModule around any network of the zoo (or any nn.Module mapping images to logits).

Loss: cross-entropy with optional label smoothing. Metrics: loss and top-1/top-5 accuracy per split, summed on the
device (`models.train.accuracy.SplitCounts`: no host sync per batch), and `val/acc_best` (a buffer). Optimizer and
schedule: `models.train.optim`. A non-finite loss stops the run within the step that produced it (`Diverged`), before
backward touches the weights; on a GPU, within `check_finite_every` steps (the first bad step is still named).
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterator
from dataclasses import asdict
from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import nn

from models.train.accuracy import LossWatch, SplitCounts
from models.train.optim import LRSchedule, OptimConfig, make_optimizer
from models.train.records import Diverged
from models.utils.declare import check

log = logging.getLogger("models.train")


def compiler_error(error: BaseException) -> bool:
    """An error of torch.compile itself (Dynamo, AOTAutograd, Inductor, the C++/Triton compiler), not of the model."""
    names = [type(e).__module__ + "." + type(e).__name__ for e in (error, error.__cause__) if e is not None]
    return any(n.startswith(("torch._dynamo", "torch._inductor", "torch._functorch")) or "CompileError" in n
               or "BackendCompilerFailed" in n for n in names)


def label_smoothing_hint() -> Any:
    import typing

    from models.train.keys import Train

    return typing.get_type_hints(Train, include_extras=True)["label_smoothing"]


class Classifier(pl.LightningModule):
    def __init__(
        self,
        net: nn.Module,
        num_classes: int,
        optim: dict[str, Any] | None = None,
        sched: dict[str, Any] | None = None,
        label_smoothing: float = 0.0,
        channels_last: bool = False,
        compile: str | None = None,
        model_knobs: dict[str, Any] | None = None,
        cuda_graphs: bool = False,
        check_finite_every: int = 1,
    ) -> None:
        super().__init__()
        self.net = net
        self.optim_cfg = OptimConfig(**(optim or {}))
        self.sched_cfg = dict(sched or {})
        LRSchedule(**self.sched_cfg)  # validate now, not when fit starts
        check("label_smoothing", label_smoothing, label_smoothing_hint())  # its one declaration: keys.Train
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
        # The compiled network is kept outside the module tree (a list, not a submodule): checkpoint keys stay those
        # of the plain network, and a compiler failure can fall back to it (see forward).
        self._compiled = [torch.compile(self.net, mode=compile)] if compile else []
        self.compile_fallback: str | None = None  # the compiler's reason, when the run went on eager
        self.cuda_graphs = cuda_graphs  # each step starts a new CUDA-graph replay (models.train.graphs)
        self.check_finite_every = max(1, int(check_finite_every))
        self._losses = LossWatch(self.check_finite_every)  # the deferred finite watch's device buffer
        # Each split's loss and accuracy sums, on the device (no per-step self.log: see training_step)
        self.counts = nn.ModuleDict({f"{split}_counts": SplitCounts(num_classes, (1, 5), per_class=split != "train")
                                     for split in ("train", "val", "test")})
        # best val/acc so far (0 before any: accuracies are >= 0, and every buffer must stay finite: FiniteGuard);
        # not in the state dict (checkpoints of earlier versions lack it): models.train.history saves it
        self.register_buffer("val_acc_best", torch.tensor(0.0), persistent=False)
        self._train_images = 0  # this rank's images of the epoch so far, on the host
        self._epoch_row: dict[str, float] | None = None  # the last epoch's train/*, while not yet written
        self._test_prefix = "test"  # see evaluating_as()
        self.evaluated: dict[str, list[int]] = {}  # split prefix -> images evaluated per class (last loop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if self._compiled and self.compile_fallback is None:
            try:
                return self._compiled[0](x)
            except Exception as e:  # a compiler failure: the run goes on eager, from this very step
                if not compiler_error(e):
                    raise
                self.fall_back(e)
        return self.net(x)

    def fall_back(self, error: BaseException) -> None:
        """Stop using the compiled network (one warning line with the compiler's reason; recorded by the run)."""
        first = next((line.strip() for line in str(error).splitlines() if line.strip()), type(error).__name__)
        self.compile_fallback = f"{type(error).__name__}: {first}"[:300]
        self.cuda_graphs = False
        log.warning(f"warning: compile={self.hparams.get('compile')} failed at step {self.global_step} "
                    f"({self.compile_fallback}): the run goes on eager from this step (results.json "
                    "compile/fallback)")

    def _step(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Loss, logits and labels of a batch; a padded evaluation batch (x, y, n) counts its first n images only."""
        if self.cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()
        x, y = batch[0], batch[1]
        logits = self(x)
        if len(batch) > 2:  # static shapes for CUDA graphs: the padding never reaches a metric
            logits, y = logits[: batch[2]], y[: batch[2]]
        loss = F.cross_entropy(logits, y, label_smoothing=self.label_smoothing)
        return loss, logits, y

    def _watch_finite(self, loss: torch.Tensor) -> None:
        """Stop on a non-finite loss. Every step (check_finite_every=1: a host sync per step, detection within the
        step, before backward) or every N steps (CUDA: no per-step sync; the step's loss goes into a device buffer,
        and FiniteGuard checks the weights before any checkpoint). All ranks decide together: DDP never hangs."""
        if self.check_finite_every == 1:
            bad = not bool(torch.isfinite(loss.detach()))
            if self.trainer.strategy.reduce_boolean_decision(bad, all=False):
                raise Diverged(self.global_step, f"training loss is {float(loss.detach())}")
            return
        if self._losses.full(self.global_step):
            self.raise_if_diverged()
        self._losses.add(self.global_step, loss)

    def raise_if_diverged(self) -> None:
        """The deferred check (one host sync): Diverged at the first step whose loss was not finite."""
        first = self._losses.first_bad()
        if self.trainer.strategy.reduce_boolean_decision(first >= 0, all=False):
            raise Diverged(first if first >= 0 else self.global_step, "training loss was not finite")

    # ------------------------------------------------------------------ train
    # Speed: each self.log() costs ~1 ms of Python on every step (Lightning moves its result object to the device),
    # and logging a torchmetrics object also copies its state. So per step we only add to the split's device-side
    # sums (models.train.accuracy: a few kernels, no host sync); step values go to the loggers on the steps they
    # actually write (log_every_n_steps), epoch values once at epoch end. Logged keys are unchanged:
    # train/loss_step, train/loss_epoch, train/acc, train/acc_top5, train/lr.
    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        loss, logits, y = self._step(batch)
        self._watch_finite(loss)
        with torch.no_grad():
            loss_d = loss.detach()
            self.counts["train_counts"].update(logits.detach(), y, loss_d)
            self._train_images += y.numel()
        if self.logs_this_step():
            self._log_step_row(loss_d)
        return loss

    def logs_this_step(self) -> bool:
        """Whether the loggers write this training step: Lightning's own rule (`log_every_n_steps`, counted in steps
        that stepped the optimizer, plus the last step and fast_dev_run), from its public attributes."""
        trainer, every = self.trainer, self.trainer.log_every_n_steps
        due = every > 0 and ((trainer.global_step + 1) % every == 0 or trainer.should_stop)
        return due or bool(trainer.fast_dev_run)

    def _log_step_row(self, loss: torch.Tensor) -> None:
        """train/loss_step and train/lr of this step straight to the loggers, now, at the (epoch, step) Lightning
        would use: a checkpoint taken at the end of this batch then covers the row (a self.log'ged step value
        reaches the loggers only after the batch-end callbacks, i.e. after that checkpoint, and a resume from it
        would lose the row)."""
        row = {"train/loss_step": float(loss), "train/lr": float(self.optimizers().param_groups[0]["lr"]),
               "epoch": self.current_epoch}
        for logger in self.trainer.loggers:
            logger.log_metrics(row, step=self.global_step)

    def on_train_start(self) -> None:
        if not self.trainer.ckpt_path:  # a resumed run keeps its best-so-far
            self.val_acc_best.zero_()

    def _train_epoch_metrics(self) -> dict[str, torch.Tensor]:
        """The epoch's train/* (summed across ranks by compute(): exact per-image means)."""
        counts = self.counts["train_counts"].compute()
        return {"train/loss_epoch": counts["loss"], "train/acc": counts["acc"], "train/acc_top5": counts["acc_top5"]}

    def reset_train_sums(self) -> None:
        self.counts["train_counts"].reset()
        self._train_images = 0

    def on_train_epoch_start(self) -> None:
        self._epoch_row = None  # the previous epoch's row has reached the loggers by now

    def on_train_epoch_end(self) -> None:
        if self._train_images:
            metrics = self._train_epoch_metrics()  # already reduced across ranks
            for key, value in metrics.items():
                # sync_dist: the value is the same on every rank already (a mean of equal values, and no warning)
                self.log(key, value, on_step=False, on_epoch=True, prog_bar=key == "train/loss_epoch", sync_dist=True)
            self._epoch_row = {k: float(v) for k, v in metrics.items()}  # until Lightning writes it (see saving)
        self.reset_train_sums()

    def on_train_end(self) -> None:
        self._epoch_row = None

    # ------------------------------------------------------------------ eval
    # Same pattern: per batch only the split's sums (exact per-image means across uneven batches and ranks), one log
    # per key at epoch end.
    def validation_step(self, batch: Any, batch_idx: int) -> None:
        loss, logits, y = self._step(batch)
        self.counts["val_counts"].update(logits, y, loss)

    def on_validation_epoch_end(self) -> None:
        counts = self._log_split("val", "val_counts")
        if self.trainer.sanity_checking:
            return
        torch.maximum(self.val_acc_best, counts["acc"].to(self.val_acc_best.dtype), out=self.val_acc_best)
        self.log("val/acc_best", self.val_acc_best.clone(), sync_dist=True, prog_bar=True)

    @contextlib.contextmanager
    def evaluating_as(self, prefix: str) -> Iterator[None]:
        """`with module.evaluating_as("test_last"): trainer.test(...)`: test metrics logged as <prefix>/*."""
        saved, self._test_prefix = self._test_prefix, prefix
        try:
            yield
        finally:
            self._test_prefix = saved

    def test_step(self, batch: Any, batch_idx: int) -> None:
        loss, logits, y = self._step(batch)
        self.counts["test_counts"].update(logits, y, loss)

    def on_test_epoch_end(self) -> None:
        self._log_split(self._test_prefix, "test_counts")

    def _log_split(self, prefix: str, name: str) -> dict[str, torch.Tensor]:
        """<prefix>/loss, /acc, /acc_top5 and /images of an evaluation loop (summed across ranks by compute()); the
        images of each class go to `evaluated[prefix]` (a list; one host sync per loop); sums reset."""
        counts = self.counts[name].compute()
        self.evaluated[prefix] = counts.pop("per_class").tolist()
        for key, value in counts.items():  # sync_dist: the values are the same on every rank already
            self.log(f"{prefix}/{key}", value, on_step=False, on_epoch=True, sync_dist=True,
                     prog_bar=prefix == "val" and key != "acc_top5")
        self.counts[name].reset()
        return counts

    # ------------------------------------------------------------------ optim
    def configure_optimizers(self) -> dict[str, Any]:
        opt = make_optimizer(self.net, self.optim_cfg, fused=self.device.type == "cuda")
        steps = self.trainer.estimated_stepping_batches  # infinite only for open-ended runs on a constant schedule
        self.total_steps = int(steps) if math.isfinite(steps) else None  # (config.check_run_length refuses others)
        schedule = LRSchedule(**self.sched_cfg, total_steps=self.total_steps or 1)
        scheduler = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": scheduler, "interval": "step", "frequency": 1}}

    # ----------------------------------------------------------- the epoch sums (models.train.history saves them)
    def train_sums(self) -> dict[str, torch.Tensor]:
        """This rank's running sums of the epoch as tensors (loss, correct at each rank, images)."""
        return {f"counts/{k}": v for k, v in self.counts["train_counts"].sums().items()}

    def load_train_sums(self, state: dict[str, torch.Tensor]) -> None:
        """Continue the epoch from `train_sums()` of an earlier process (same rank). Sums saved by code that counted
        accuracy differently are dropped whole (the epoch is then counted from the restart, loss and accuracy alike)."""
        if not set(self.train_sums()) <= set(state):
            return
        counts = self.counts["train_counts"]
        counts.load_sums({k.split("/", 1)[1]: v for k, v in state.items() if k.startswith("counts/")})
        self._train_images = int(counts.images)

    @property
    def unwritten_epoch_row(self) -> dict[str, float] | None:
        """The epoch's train/* row while the loggers have not written it yet (it was logged in the epoch-end hook);
        computed now when the epoch's last batch is done but its end hook has not run."""
        last_batch = self.trainer.fit_loop.epoch_loop.batch_progress.is_last_batch
        if self._epoch_row is None and self._train_images and last_batch:
            return {k: float(v) for k, v in self._train_epoch_metrics().items()}
        return self._epoch_row

    def epoch_train_loss(self) -> float | None:
        """The epoch's mean training loss so far, over every rank (a collective: call it on every rank)."""
        return float(self._train_epoch_metrics()["train/loss_epoch"]) if self._train_images else None

