"""Measurement built into every run, and the SIGTERM checkpoint.

`RunMeter`: training and evaluation images/s after warm-up, the share of training time spent waiting for data,
epoch time, peak memory and model FLOP utilisation:

    MFU = 3 x forward FLOPs/image x training images/s  /  (device peak FLOP/s x devices)

3x: the backward pass costs about twice the forward. The peak comes from Lightning's table of dense GPU peaks for
the run's precision, or on CPU from a short measured torch.mm ceiling (the same cores every process shares, so it
is not multiplied by the number of CPU "devices").

Timing is host wall-clock between Lightning's batch hooks: "data wait" = batch_end -> next batch_start (fetching
and host-to-device), "compute" = batch_start -> batch_end. On CUDA kernels run asynchronously, so the split is
indicative; the images/s figures synchronise the device at the ends of each measured window and are exact.
"""

from __future__ import annotations

import contextlib
import resource
import sys
import time
from collections.abc import Iterator
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.utilities.exceptions import SIGTERMException

from models.utils.system import device_name, gpu_peak, matmul_peak


def synced_now(trainer: pl.Trainer) -> float:
    """perf_counter once the run's device has finished what it was given (a CUDA sync; nothing on a CPU)."""
    if trainer.strategy.root_device.type == "cuda":
        torch.cuda.synchronize(trainer.strategy.root_device)
    return time.perf_counter()


def device_peak_flops(device: torch.device, precision: str) -> tuple[float | None, str]:
    """(peak FLOP/s of one device, where the number comes from)."""
    if device.type == "cuda":
        from lightning.fabric.utilities.throughput import get_available_flops

        name = device_name(device)
        ours = gpu_peak(name, precision)
        if ours:
            return ours, f"table:{name}:{precision}"
        dtype = torch.bfloat16 if "bf16" in precision else torch.float16 if "16" in precision else torch.float32
        flops = get_available_flops(device, dtype)
        return (float(flops), f"lightning-table:{name}:{dtype}") if flops else (None, "unknown")
    return matmul_peak("cpu"), f"measured:cpu_mm_fp32x{torch.get_num_threads()}threads"


def peak_memory(device: torch.device) -> tuple[float, str]:
    """(MB, kind): CUDA max_memory_allocated of the device, or this process's peak RSS on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20, "cuda_max_memory_allocated"
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return rss / (2**20 if sys.platform == "darwin" else 2**10), "cpu_peak_rss"


def _batch_size(batch: Any) -> int:
    """Images in a batch: a padded evaluation batch (x, y, n) counts its n real ones."""
    if isinstance(batch, (list, tuple)) and len(batch) > 2:
        return int(batch[2])
    x = batch[0] if isinstance(batch, (list, tuple)) else batch
    return int(x.shape[0])


class _Window:
    """Accumulates images and seconds over the counted (post-warm-up) steps."""

    def __init__(self) -> None:
        self.images = 0
        self.seconds = 0.0
        self.wait = 0.0

    def rate(self) -> float | None:
        return self.images / self.seconds if self.seconds > 0 else None


class RunMeter(Callback):
    """Throughput windows: on a CPU every step is a window (its end is exact). On CUDA a step's host time is only
    the time the CPU spent queueing it, and synchronising after each step would stall the launch queue (and undo
    CUDA graphs), so windows of `sync_every` steps are synchronised at both ends: their images/s are exact."""

    def __init__(self, flops_per_image: float, warmup_steps: int = 5, eval_warmup_steps: int = 1,
                 sync_every: int = 25) -> None:
        self.flops_per_image = float(flops_per_image)
        self.warmup_steps, self.eval_warmup_steps, self.sync_every = warmup_steps, max(1, eval_warmup_steps), sync_every
        self._window_start: float | None = None  # synchronised time the current window started at
        self._pending_images = self._pending_steps = 0
        self.train, self.eval = _Window(), _Window()
        self.epoch_times: list[float] = []
        self._steps_seen = 0
        self._last_end: float | None = None
        self._start: float | None = None
        self._epoch_start = 0.0
        self._eval_last: float | None = None
        self._eval_batches = self._eval_images = 0
        self.peak: float | None = None
        self.peak_source = ""
        self.measured: tuple[float, float] | None = None  # Unix times of the first and last measured step

    def _sync(self, trainer: pl.Trainer) -> float:
        return synced_now(trainer)

    # ------------------------------------------------------------------ training
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        device = trainer.strategy.root_device
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        self.peak, self.peak_source = device_peak_flops(device, str(trainer.precision))

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._epoch_start = time.perf_counter()  # a resumed epoch gets no on_train_epoch_start from Lightning

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._epoch_start = time.perf_counter()
        self._restart()  # the first step of an epoch pays for a new iterator: never counted

    def _restart(self) -> None:
        self._last_end = self._window_start = None
        self._pending_images = self._pending_steps = 0

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        self._steps_seen += 1
        measuring = self._steps_seen > self.warmup_steps and self._window_start is not None
        if measuring:
            self._pending_images += _batch_size(batch) * trainer.world_size
            self._pending_steps += 1
            if self._start is not None and self._last_end is not None:
                self.train.wait += self._start - self._last_end
        self._last_end = time.perf_counter()
        every = self.sync_every if trainer.strategy.root_device.type == "cuda" else 1
        if not measuring or self._pending_steps >= every:  # warm-up steps move the window's start along
            self._close_window(trainer)

    def _close_window(self, trainer: pl.Trainer) -> None:
        now = self._sync(trainer)
        if self._window_start is not None and self._pending_steps:
            self.train.images += self._pending_images
            self.train.seconds += now - self._window_start
            wall = time.time() - time.perf_counter()  # perf_counter -> Unix time, to compare runs in other processes
            self.measured = (self.measured[0] if self.measured else self._window_start + wall, now + wall)
        self._window_start, self._last_end = now, now
        self._pending_images = self._pending_steps = 0

    @contextlib.contextmanager
    def paused(self, trainer: pl.Trainer) -> Iterator[None]:
        """Time spent inside (a caller's own work between two training steps) is not the run's: it is left out of
        every throughput window and of the data wait."""
        if self._pending_steps:
            self._close_window(trainer)
        try:
            yield
        finally:
            if self._window_start is not None:
                self._window_start = self._last_end = self._sync(trainer)

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.state.fn == "fit":  # validation inside fit: close the window before it
            if self._pending_steps:
                self._close_window(trainer)
            self._restart()  # the next step's time would include the validation

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Lightning 2.x runs validation before this hook: epoch time includes it.
        if self._pending_steps:  # no validation this epoch: the last window ends here
            self._close_window(trainer)
        self.epoch_times.append(time.perf_counter() - self._epoch_start)
        metrics = {f"perf/{k.replace('/', '_')}": v for k, v in self.summary(trainer).items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool)}
        metrics["perf/epoch_time_s"] = self.epoch_times[-1]  # this epoch's, not the mean
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step)

    # ------------------------------------------------------------------ evaluation (validation and test)
    # One window per evaluation loop, synchronised at its two ends only (after the warm-up batches, which on a
    # CUDA-graph run include recording the graphs, and at the loop's end): no per-batch sync stalls the queue.
    def _eval_start(self, *_: Any) -> None:
        self._eval_last, self._eval_batches, self._eval_images = None, 0, 0

    def _eval_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                        batch_idx: int, dataloader_idx: int = 0) -> None:
        if trainer.sanity_checking:
            return
        self._eval_batches += 1
        if self._eval_batches == self.eval_warmup_steps:
            self._eval_last = self._sync(trainer)
        elif self._eval_last is not None:
            self._eval_images += _batch_size(batch) * trainer.world_size

    def _eval_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or self._eval_last is None or not self._eval_images:
            return
        self.eval.images += self._eval_images
        self.eval.seconds += self._sync(trainer) - self._eval_last
        self._eval_last = None

    on_validation_epoch_start = on_test_epoch_start = _eval_start
    on_validation_batch_end = on_test_batch_end = _eval_batch_end
    on_validation_epoch_end = on_test_epoch_end = _eval_end

    # ------------------------------------------------------------------ results
    def summary(self, trainer: pl.Trainer) -> dict[str, Any]:
        train_rate = self.train.rate()
        mem, kind = peak_memory(trainer.strategy.root_device)
        devices = 1 if trainer.strategy.root_device.type == "cpu" else trainer.world_size
        mfu = (3 * self.flops_per_image * train_rate / (self.peak * devices)
               if train_rate and self.peak else None)
        return {
            "train/images_per_s": train_rate,
            "eval/images_per_s": self.eval.rate(),
            "train/data_wait_frac": self.train.wait / self.train.seconds if self.train.seconds else None,
            "epoch_time_s": sum(self.epoch_times) / len(self.epoch_times) if self.epoch_times else None,
            "peak_memory_mb": mem,
            "peak_memory_kind": kind,
            "mfu": mfu,
            "peak_flops": self.peak,
            "peak_flops_source": self.peak_source,
            "measured_train_steps": max(0, self._steps_seen - self.warmup_steps),
            "train/measured_from": self.measured[0] if self.measured else None,
            "train/measured_to": self.measured[1] if self.measured else None,
        }


class SaveOnSigterm(Callback):
    """Plain SIGTERM (SLURM's preemption notice, `kill`, k8s): Lightning stops after the current batch by raising
    SIGTERMException; we write a resumable last.ckpt before it unwinds. Re-running the command resumes there."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.saved = False

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        if isinstance(exception, SIGTERMException) and trainer.state.fn == "fit":
            trainer.save_checkpoint(self.path)
            self.saved = True


class FiniteGuard(Callback):
    """Before any checkpoint is written (Lightning runs ModelCheckpoint callbacks after all others), check that every
    weight and buffer is finite: the loss can stay finite while e.g. a BN running variance overflows. All ranks
    decide together, so a DDP job stops as one instead of hanging on a rank that quit."""

    def __init__(self, every_n_steps: int = 0) -> None:
        self.every_n_steps = every_n_steps

    def _check(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if hasattr(pl_module, "raise_if_diverged"):  # a loss check deferred on the device names the first bad step
            pl_module.raise_if_diverged()
        bad = next((name for name, t in [*pl_module.named_parameters(), *pl_module.named_buffers()]
                    if t.is_floating_point() and not torch.isfinite(t).all()), None)
        if trainer.strategy.reduce_boolean_decision(bad is not None, all=False):
            from models.train.records import Diverged

            raise Diverged(trainer.global_step, f"non-finite {bad or 'tensor on another rank'}")

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if self.every_n_steps and trainer.global_step % self.every_n_steps == 0:
            self._check(trainer, pl_module)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._check(trainer, pl_module)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._check(trainer, pl_module)


class PeriodicCheckpoint(ModelCheckpoint):
    """last.ckpt every N optimizer steps, except on a batch after which validation runs: Lightning resumes a
    checkpoint of such a batch as if its validation had already happened (it skips it), and the validation-end
    checkpoint follows within that same batch anyway."""

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        loop = trainer.fit_loop  # Lightning's own rule, private (docs/dependencies.md): a rename fails loudly here
        if loop._data_fetcher is not None and loop.epoch_loop._should_check_val_fx(loop._data_fetcher):
            return
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
