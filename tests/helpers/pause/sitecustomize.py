"""On PYTHONPATH of a SLURM test's jobs: a run pauses at optimizer step $PAUSE_AT_STEP (before its forward), writes
$PAUSE_DIR/<SLURM task id> (rank k > 0 of a DDP job: <task id>.<k>; the text: "paused at step N, pid P"), and waits
until a signal asks Lightning to stop (SIGTERM, or submitit's USR2 deferred by models/train/preempt.py; under DDP,
until this rank has noted it) -- so the test's `scancel --signal=USR2` / `scontrol requeue` lands mid-training at a
known step. $PAUSE_RANKS (e.g. "1") pauses only those ranks; every rank writes its marker at that step all the same
(the test finds each rank's pid there). Each task pauses once (the marker stays); the library has no test hooks,
this patches it from outside."""

import importlib.abc
import importlib.util
import os
import sys
import time
from pathlib import Path

TARGET = "models.train.module"


def _patch(module) -> None:
    step, marks = int(os.environ["PAUSE_AT_STEP"]), Path(os.environ["PAUSE_DIR"])
    task = os.environ.get("SLURM_ARRAY_TASK_ID") or os.environ.get("SLURM_JOB_ID", "local")
    rank = os.environ.get("SLURM_PROCID", "0")
    ranks = os.environ.get("PAUSE_RANKS", rank).split(",")
    original = module.Classifier.training_step

    def signalled(trainer) -> bool:
        noted = any(getattr(cb, "received", None) or getattr(cb, "sigterm", False) for cb in trainer.callbacks)
        return trainer.received_sigterm or noted

    def training_step(self, batch, batch_idx):
        mark = marks / (task if rank == "0" else f"{task}.{rank}")
        if self.global_step == step and not mark.exists():
            tmp = mark.parent / f"{mark.name}.{os.getpid()}.tmp"  # whole or absent: the test reads the pid at once
            tmp.write_text(f"{'paused' if rank in ranks else 'reached'} step {step}, pid {os.getpid()}")
            os.replace(tmp, mark)
            end = time.monotonic() + 120
            while rank in ranks and not signalled(self.trainer) and time.monotonic() < end:
                time.sleep(0.05)
        return original(self, batch, batch_idx)

    module.Classifier.training_step = training_step


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != TARGET:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        run = spec.loader.exec_module

        def exec_module(module):
            run(module)
            _patch(module)

        spec.loader.exec_module = exec_module
        return spec


if os.environ.get("PAUSE_AT_STEP"):
    sys.meta_path.insert(0, _Finder())
