"""Time limits and preemption under SLURM (hydra/launcher=slurm, i.e. submitit).

submitit ignores SIGTERM and, on its USR2 (sent `signal_delay_s` before the time limit, or by
`scancel --signal=USR2`), re-pickles the job, runs `scontrol requeue` and exits -- from inside the signal handler,
wherever the signal lands: mid-step, mid-checkpoint-write. That loses every step since the last periodic checkpoint
and leaves results.json claiming the run failed. `Preemption` defers it: the signal only asks Lightning to stop after
the current batch (as SIGTERM does), `SaveOnSigterm` writes last.ckpt, results.json records the interruption, and
only then does submitit's handler requeue the job; the requeued task re-runs the same command in the same run
directory and resumes from that checkpoint. `scontrol requeue` and preemption send plain SIGTERM, which Lightning
already turns into the same stop; SLURM then requeues the job itself.

DDP inside one SLURM job (`tasks_per_node=N`, one rank per task): SLURM signals every task, but each receives it at
its own moment, possibly in different batches; a rank that stops alone leaves the others blocked in the next
gradient all-reduce. So under DDP no signal stops a rank directly (Lightning's own SIGTERM handler, which even calls
a collective from inside the handler, is replaced for the fit): each signal is only noted, the ranks agree at the
end of every training batch (one all-reduce of what each one received, the strongest wins), and all stop after
that same batch, so the checkpoint is one and every rank's step is the same.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from types import FrameType
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback

log = logging.getLogger(__name__)
SIGINT_REASON = "SIGINT (Ctrl-C)"
# Outside SLURM, DDP ranks agree on a Ctrl-C every this many batches (a host sync each time; under SLURM every batch)
AGREE_EVERY = 20


def submitit_signal() -> signal.Signals | None:
    """The signal submitit checkpoints on when this process is a submitit SLURM task (None otherwise)."""
    if os.environ.get("SUBMITIT_EXECUTOR") != "slurm":
        return None
    return getattr(signal, "SIG" + os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2"), None)


class Preemption(Callback):
    """Installed for a whole run (`with Preemption() as p:`); a no-op outside a submitit SLURM task."""

    def __init__(self) -> None:
        self.signum = submitit_signal()
        self.received: int | None = None  # the submitit signal, once received (by this rank or, under DDP, another)
        self.sigterm = False  # a plain SIGTERM, noted by this rank (DDP under SLURM only, see the module docstring)
        self.sigint = False  # Ctrl-C (by this rank or, under DDP, another): stop after this batch, like SIGTERM
        self._original: Any = None
        self._sigint_original: Any = None
        self._trainer: pl.Trainer | None = None
        self._ddp = False  # ranks must agree before stopping

    @property
    def reason(self) -> str | None:
        """What interrupted the run, for results.json (None: nothing, or a plain SIGTERM)."""
        if self.received is not None:
            return f"{signal.Signals(self.received).name} (SLURM time limit or preemption)"
        return SIGINT_REASON if self.sigint else None

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
        if self._trainer is not None and not self._ddp:
            self._stop(self._trainer)

    def _note_sigterm(self, signum: int, frame: FrameType | None) -> None:
        self.sigterm = True

    def _note_sigint(self, signum: int, frame: FrameType | None) -> None:
        """Ctrl-C: the first stops after the current batch (checkpoint, record, resumable); a second one at once."""
        if self.sigint:
            self._restore_sigint()
            raise KeyboardInterrupt
        self.sigint = True
        log.warning("Ctrl-C: stopping after this step and saving a checkpoint (press Ctrl-C again to stop at once, "
                    "from the last checkpoint)")
        if self._trainer is not None and not self._ddp:
            self._stop(self._trainer)

    def _restore_sigint(self) -> None:
        if self._sigint_original is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, self._sigint_original)
        self._sigint_original = None

    @staticmethod
    def _stop(trainer: pl.Trainer) -> None:
        # the flag Lightning's own SIGTERM handler sets: the loops stop after the current batch (SIGTERMException)
        trainer._signal_connector.received_sigterm = True

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._trainer = trainer  # Lightning clears the flag when fit starts: a signal received before is re-applied
        self._ddp = trainer.world_size > 1
        main = threading.current_thread() is threading.main_thread()
        if self._ddp and self.signum is not None and main:
            signal.signal(signal.SIGTERM, self._note_sigterm)  # Lightning restores its own at the end of fit
        if main and self._sigint_original is None:  # (Lightning would turn Ctrl-C into exit status 1, run lost)
            self._sigint_original = signal.signal(signal.SIGINT, self._note_sigint)
        if (self.received is not None or self.sigint) and not self._ddp:
            self._stop(trainer)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if self._ddp and (self.signum is not None or batch_idx % AGREE_EVERY == 0):  # same batch_idx on every rank
            self._agree(trainer, pl_module.device)
        elif not self._ddp and (self.received is not None or self.sigint):
            self._stop(trainer)

    def _agree(self, trainer: pl.Trainer, device: torch.device) -> None:
        """Every rank says what it received (0 nothing, 1 Ctrl-C, 2 SIGTERM, 3 the submitit signal); the strongest
        wins on all ranks, which then stop after this same batch. (Ctrl-C reaches every rank of a terminal's job,
        each at its own moment; SIGTERM is agreed on only under SLURM: elsewhere Lightning's handler stays.)"""
        mine = 3 if self.received is not None else 2 if self.sigterm else 1 if self.sigint else 0
        code = torch.tensor(mine, device=device)
        torch.distributed.all_reduce(code, op=torch.distributed.ReduceOp.MAX)
        agreed = int(code.item())
        if agreed == 3:
            self.received = self.received or self.signum
        if agreed == 1:
            self.sigint = True
        if agreed:
            self._stop(trainer)

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._trainer = None
        if stage == "fit":
            self._restore_sigint()

    def hand_back(self) -> None:
        """After results.json is written: let submitit requeue the job (it exits, SystemExit) and, when submitit
        refuses (timed out more than max_num_timeout times), raise its error so the task is reported failed."""
        handler, signum = self._original, self.received
        self.__exit__()
        if callable(handler) and signum is not None:
            log.info("handing the signal to submitit: it requeues the job, which resumes from last.ckpt")
            handler(signum, None)
