"""`train(cfg)`: one whole run, from a composed Hydra config to `<run dir>/results.json`.

The run reads as its stages: stop if already done -> build (datamodule, spec, module, callbacks, loggers, trainer;
`models.train.build`) -> begin (record `running`, config, wandb) -> fit (resuming from last.ckpt if present) -> test on
best.ckpt (`test/*`) and on last.ckpt (`test_last/*`) -> write the record (atomically, rank 0 only).

Re-running in the same run dir: `finished`/`diverged` runs are returned as recorded; `running`/`failed` ones resume.
SIGTERM writes a resumable checkpoint and exits 143; a NaN/inf loss ends the run as `diverged`. Under SLURM
(submitit) the time-limit signal does the same, then submitit requeues the job (`models.train.preempt`).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities.exceptions import SIGTERMException
from lightning.pytorch.utilities.rank_zero import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from data.checks import UnreadableImages
from models.errors import ConfigError
from models.train import console
from models.train.build import Built, build
from models.train.config import check_same_config, hydra_overrides, resolve_run_dir
from models.train.console import log
from models.train.loggers import ResumableCSVLogger, wandb_finish, wandb_start
from models.train.preempt import Preemption
from models.train.records import DONE, RESULTS, Diverged, atomic_write_json, read_results
from models.utils.system import PACKED_ENV, machine, threads_from_scheduler

EXIT_SIGTERM = 143  # what SLURM and shells expect from a job that stopped on SIGTERM; the run stays resumable


class RunRecord:
    """The results.json of one run as it is being written: its keys, its clock, and who may write it.

    Wall time adds up every invocation of the run directory: the previous record's total (an invocation killed by
    SIGKILL counts until its last checkpoint, when the record was last written) plus this one's."""

    def __init__(self, cfg: DictConfig, run_dir: Path, overrides: list[str], previous: dict[str, Any] | None) -> None:
        self.cfg, self.dir, self.t0 = cfg, run_dir, time.perf_counter()
        self.is_zero = rank_zero_only.rank == 0  # DDP ranks > 0 never write the record
        previous = previous or {}
        self.previous = previous
        self.earlier_s = float(previous.get("wall_time_s") or 0.0)
        self.data: dict[str, Any] = {
            "status": "running", "run_dir": str(run_dir), "experiment": str(cfg.experiment),
            "ablation": cfg.get("ablation"), "tags": list(cfg.get("tags") or []), "seed": int(cfg.seed),
            "overrides": overrides, "invocations": int(previous.get("invocations") or 0) + 1,
            "packed_jobs": int(os.environ.get(PACKED_ENV) or 1), "started_at": time.time(),
            "interruptions": list(previous.get("interruptions") or [])}  # every stop this run resumed from

    def write(self) -> None:
        if self.is_zero and self.dir.exists():
            atomic_write_json(self.dir / RESULTS, self.data)

    def stop_clock(self) -> None:
        last = time.perf_counter() - self.t0
        self.data.update({"wall_time_s": self.earlier_s + last, "wall_time_s/last": last, "ended_at": time.time()})


class Bookkeeper(Callback):
    """What every checkpoint records besides the weights, so that a resume continues the run's records exactly: the
    CSV rows written so far (the history up to it) and the wall time; results.json is rewritten with that time."""

    def __init__(self, run: RunRecord) -> None:
        self.run = run

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        if not trainer.is_global_zero:
            return
        for logger in trainer.loggers:
            if isinstance(logger, ResumableCSVLogger):
                checkpoint["csv_rows"] = logger.rows_written()
        self.run.stop_clock()
        checkpoint["wall_time_s"] = self.run.data["wall_time_s"]
        self.run.write()


def unclean_stop(previous: dict[str, Any], resumed: dict[str, Any] | None, checkpoint: Path | None
                 ) -> dict[str, Any] | None:
    """The interruption of an invocation that never ended cleanly (SIGKILL, out of memory, power loss): it left its
    record `running` without saying why. It stopped somewhere after the checkpoint this invocation resumes from."""
    invocation = int(previous.get("invocations") or 0)
    said = any(i.get("invocation") == invocation for i in previous.get("interruptions") or [])
    if previous.get("status") != "running" or not invocation or said:
        return None
    return {"by": "unclean stop (killed, out of memory or power loss: no signal handled)",
            "at_step": (resumed or {}).get("global_step"), "checkpoint": str(checkpoint) if checkpoint else None,
            "at": previous.get("ended_at") or previous.get("started_at"), "invocation": invocation}


def begin(run: RunRecord, parts: Built) -> None:
    """Record the run as `running` (with where and how it runs), save its config, start the wandb run."""
    trainer, cfg = parts.trainer, run.cfg
    stop = unclean_stop(run.previous, parts.resumed, parts.resume)
    if stop is not None:
        run.data["interruptions"].append(stop)
    run.is_zero = trainer.is_global_zero
    run.data.update(machine(trainer.strategy.root_device, trainer.world_size))
    run.data.update({"precision": str(trainer.precision), "channels_last": parts.channels_last,
                     "compile": parts.compile or False,
                     "resumed_from": str(parts.resume) if parts.resume else None})
    if not run.is_zero:
        return
    for tmp in run.dir.glob("**/.*.tmp"):  # leftovers of a write killed mid-way (the target is intact)
        tmp.unlink(missing_ok=True)
    OmegaConf.save(cfg, run.dir / "config.yaml", resolve=True)
    save_hydra_files(run.dir, cfg)
    run.data.update(parts.timing.summary() if parts.timing else {})
    run.data["wandb_dir"] = wandb_start(parts.loggers, {
        **run.data, "optim": OmegaConf.to_container(cfg.optim, resolve=True),
        "sched": OmegaConf.to_container(cfg.sched, resolve=True)}, parts.complexity, parts.timing)
    run.write()


def save_hydra_files(run_dir: Path, cfg: DictConfig) -> None:
    """What Hydra would write into .hydra/ (hydra.output_subdir is null): written by a starting or resuming run only,
    so a finished run's directory keeps the files of the command that trained it."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return
    hydra_cfg = HydraConfig.get()
    out = run_dir / ".hydra"
    out.mkdir(exist_ok=True)
    OmegaConf.save(cfg, out / "config.yaml")
    OmegaConf.save(OmegaConf.create({"hydra": hydra_cfg}), out / "hydra.yaml")
    OmegaConf.save(OmegaConf.create(list(hydra_cfg.overrides.task)), out / "overrides.yaml")


def fit(run: RunRecord, parts: Built, preemption: Preemption) -> None:
    """trainer.fit, resuming from last.ckpt when there is one; divergence and SIGTERM are outcomes, not errors."""
    trainer = parts.trainer
    try:
        with parts.watch:
            trainer.fit(parts.module, datamodule=parts.dm, ckpt_path=str(parts.resume) if parts.resume else None,
                        weights_only=True)
    except Diverged as e:
        run.data.update(status="diverged", diverged_at_step=e.step, error=str(e))
    except ValueError as e:  # Lightning checks val_check_interval against the loader only once fit starts
        if "val_check_interval" not in str(e):
            raise
        n = trainer.num_training_batches
        raise ConfigError(f"trainer.val_check_interval={trainer.val_check_interval} is more than the {n} training "
                          f"batches of an epoch: use a fraction of an epoch (e.g. 0.5), an integer <= {n}, or "
                          "trainer.check_val_every_n_epoch=null to count batches across epochs") from None
    except SIGTERMException:
        saved = str(parts.last) if parts.sigterm.saved else None
        by = preemption.reason or "SIGTERM"
        run.data.update(status="running", interrupted=by, interrupted_at_step=trainer.global_step, resume_from=saved)
        run.data["interruptions"].append({"by": by, "at_step": trainer.global_step, "checkpoint": saved,
                                          "at": time.time(), "invocation": run.data["invocations"]})
    run.data.update(epochs=trainer.current_epoch, steps=trainer.global_step, **parts.meter.summary(trainer),
                    **parts.watch.summary())
    run.data["sched/total_steps"] = getattr(parts.module, "total_steps", None)
    val = {k: trainer.callback_metrics.get(k) for k in ("val/acc", "val/acc_top5", "val/loss", "val/acc_best")}
    run.data.update({k: float(v) for k, v in val.items() if v is not None})


def test(run: RunRecord, parts: Built) -> None:
    """Test the best and the last checkpoint; the run is `finished` after this."""
    trainer, module = parts.trainer, parts.module
    trainer.save_checkpoint(parts.last, weights_only=False)  # final weights even when max_steps stopped mid-epoch
    best = parts.best.best_model_path or str(parts.last)
    for prefix, path in (("test", best), ("test_last", str(parts.last))):
        with parts.watch, module.evaluating_as(prefix):
            out = trainer.test(module, datamodule=parts.dm, ckpt_path=path, weights_only=True, verbose=False)
        run.data.update({k: float(v) for k, v in (out[0] if out else {}).items()})
    run.data["best_checkpoint"] = best
    run.data.update(parts.watch.summary())
    run.data.update({k: v for k, v in parts.meter.summary(trainer).items() if k == "eval/images_per_s"})
    run.data["status"] = "finished"
    run.data.update({f"data/{k}": v for k, v in parts.dm.describe().items()
                     if isinstance(v, (int, float, str, bool)) and f"data/{k}" not in run.data})


def fail(run: RunRecord, error: BaseException, parts: Built | None) -> None:
    """Record the failure (one line) and stop every rank process this one started."""
    if parts is not None:
        _stop_launched_ranks(parts.trainer)
    message = str(error) if isinstance(error, ConfigError) else " ".join(f"{type(error).__name__}: {error}".split())
    run.data.update(status="failed", error=message[:500])
    files = getattr(error, "files", None)  # e.g. every unreadable image, where the message names the first few
    if files and run.is_zero:
        (run.dir / UnreadableImages.LIST).write_text("\n".join(files) + "\n")
        run.data["data/unreadable_images"] = list(files)
        log.info("unreadable images:\n" + "\n".join(files), extra={"file_only": True})
    run.stop_clock()
    run.write()
    wandb_finish(parts.loggers if parts else [], run.data)
    log.info(f"failed: {message}", extra={"file_only": True}, exc_info=error)


def done(run_dir: Path, previous: dict[str, Any], cfg: DictConfig) -> dict[str, Any]:
    log.info(f"{run_dir}: already {previous['status']} (results.json); not training again. Use a new hydra.run.dir "
             "for a new run.")
    console.report(previous, bool(cfg.get("summary", True)))
    return previous


def train(cfg: DictConfig, overrides: list[str] | None = None, callbacks: Sequence[Callback] = ()
          ) -> dict[str, Any]:
    """One run; returns its record. `callbacks`: extra Lightning callbacks for the run's Trainer (what a caller
    watches the run with, e.g. the benchmark's step clock); they never change what the run computes."""
    run_dir = resolve_run_dir(cfg)
    check_same_config(run_dir, cfg)  # before anything is written into it
    previous = read_results(run_dir)
    verbose = bool(cfg.get("verbose", False))
    if previous and previous.get("status") in DONE:
        console.setup(None, verbose)  # nothing is written into a finished run's directory
        return done(run_dir, previous, cfg)
    console.setup(run_dir, verbose)
    threads_from_scheduler()
    run = RunRecord(cfg, run_dir, hydra_overrides() if overrides is None else list(overrides), previous)
    parts: Built | None = None
    with Preemption() as preemption:
        try:
            pl.seed_everything(int(cfg.seed), workers=True, verbose=False)
            parts = build(cfg, run_dir, run.data, [Bookkeeper(run), preemption, *callbacks])
            begin(run, parts)
            fit(run, parts, preemption)
            if run.data["status"] == "running" and "interrupted" not in run.data:
                test(run, parts)
        except BaseException as e:
            fail(run, e, parts)
            console.close_log_file()
            raise
        try:
            return finish(run, parts, preemption)
        finally:
            console.close_log_file()


def finish(run: RunRecord, parts: Built, preemption: Preemption) -> dict[str, Any]:
    run.stop_clock()
    run.write()
    if run.is_zero:
        wandb_finish(parts.loggers, run.data)
    if run.data["status"] == "running":  # interrupted: the job (and a sweep) stops with the conventional 128 + 15
        log.info(f"interrupted by {run.data['interrupted']} at step {parts.trainer.global_step}; checkpoint "
                 f"{parts.last} saved. Re-run the same command (same hydra.run.dir) to resume.")
        preemption.hand_back()  # under SLURM: submitit requeues the job and exits
        raise SystemExit(EXIT_SIGTERM)
    if run.is_zero:
        console.report(run.data, bool(run.cfg.get("summary", True)))
    return run.data


def _stop_launched_ranks(trainer: pl.Trainer | None) -> None:
    """Rank 0 failing (e.g. a collective timed out on a hung rank): SIGKILL the rank processes it started, so that
    none is left behind, stopped or blocked. A no-op on other ranks and without DDP."""
    from lightning.pytorch.strategies.launchers.subprocess_script import _SubprocessScriptLauncher

    launcher = getattr(getattr(trainer, "strategy", None), "launcher", None)
    if isinstance(launcher, _SubprocessScriptLauncher) and getattr(launcher, "procs", None):
        launcher.kill(signal.SIGKILL)
