"""Time limits and preemption under SLURM (hydra/launcher=slurm, i.e. submitit).

submitit ignores SIGTERM and, on its USR2 (sent `signal_delay_s` before the time limit, or by
`scancel --signal=USR2`), re-pickles the job, runs `scontrol requeue` and exits -- from inside the signal handler,
wherever the signal lands: mid-step, mid-checkpoint-write. That loses every step since the last periodic checkpoint
and leaves results.json claiming the run failed. `Preemption` defers it: the signal only asks Lightning to stop after
the current batch (as SIGTERM does), `SaveOnSigterm` writes last.ckpt, results.json records the interruption, and
only then does submitit's handler requeue the job; the requeued task re-runs the same command in the same run
directory and resumes from that checkpoint. `scontrol requeue` and preemption send plain SIGTERM, which Lightning
already turns into the same stop; SLURM then requeues the job itself.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from types import FrameType
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback

log = logging.getLogger(__name__)


def submitit_signal() -> signal.Signals | None:
    """The signal submitit checkpoints on when this process is a submitit SLURM task (None otherwise)."""
    if os.environ.get("SUBMITIT_EXECUTOR") != "slurm":
        return None
    return getattr(signal, "SIG" + os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2"), None)


class Preemption(Callback):
    """Installed for a whole run (`with Preemption() as p:`); a no-op outside a submitit SLURM task."""

    def __init__(self) -> None:
        self.signum = submitit_signal()
        self.received: int | None = None
        self._original: Any = None
        self._trainer: pl.Trainer | None = None

    @property
    def reason(self) -> str | None:
        """What interrupted the run, for results.json (None: nothing, or a plain SIGTERM)."""
        if self.received is None:
            return None
        return f"{signal.Signals(self.received).name} (SLURM time limit or preemption)"

    def __enter__(self) -> Preemption:
        if self.signum is not None and threading.current_thread() is threading.main_thread():
            self._original = signal.getsignal(self.signum)
            signal.signal(self.signum, self._defer)
        return self

    def __exit__(self, *_: object) -> None:
        if self._original is not None:
            signal.signal(self.signum, self._original)  # type: ignore[arg-type]
            self._original = None

    def _defer(self, signum: int, frame: FrameType | None) -> None:
        self.received = signum
        if self._trainer is not None:
            self._stop(self._trainer)

    @staticmethod
    def _stop(trainer: pl.Trainer) -> None:
        # the flag Lightning's own SIGTERM handler sets: the loops stop after the current batch (SIGTERMException)
        trainer._signal_connector.received_sigterm = True

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._trainer = trainer  # Lightning clears the flag when fit starts: a signal received before is re-applied
        if self.received is not None:
            self._stop(trainer)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if self.received is not None:
            self._stop(trainer)

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._trainer = None

    def hand_back(self) -> None:
        """After results.json is written: let submitit requeue the job (it exits, SystemExit) and, when submitit
        refuses (timed out more than max_num_timeout times), raise its error so the task is reported failed."""
        handler, signum = self._original, self.received
        self.__exit__()
        if callable(handler) and signum is not None:
            log.info("handing the signal to submitit: it requeues the job, which resumes from last.ckpt")
            handler(signum, None)
