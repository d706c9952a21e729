"""`train(cfg)`: one whole run, from a composed Hydra config to `<run dir>/results.json`.

The run reads as its stages: stop if already done -> build (datamodule, spec, module, callbacks, loggers, trainer;
`models.train.build`) -> begin (record `running`, config, wandb) -> fit (resuming from last.ckpt if present) -> test on
best.ckpt (`test/*`) and on last.ckpt (`test_last/*`) -> write the record (atomically, rank 0 only).

Re-running in the same run dir: `finished`/`diverged` runs are returned as recorded; `running`/`failed` ones resume.
SIGTERM writes a resumable checkpoint and exits 143; a NaN/inf loss ends the run as `diverged`. Under SLURM
(submitit) the time-limit signal does the same, then submitit requeues the job (`models.train.preempt`).
"""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf

from data.checks import UnreadableImages
from models.errors import ConfigError
from models.train import console
from models.train.build import Built, build
from models.train.config import check_same_config, config_hash, hydra_overrides, resolve_run_dir
from models.train.console import log
from models.train.keys import check_keys
from models.train.loggers import wandb_finish, wandb_start
from models.train.preempt import SIGINT_REASON, Preemption
from models.train.recorder import Recorder
from models.train.records import DONE, Diverged, read_results, write_failure
from models.utils.locks import DirLock
from models.utils.provenance import CODE_KEYS, code_label, code_version, same_code
from models.utils.system import machine, threads_from_scheduler

EXIT_SIGTERM = 143  # what SLURM and shells expect from a job that stopped on SIGTERM; the run stays resumable
EXIT_SIGINT = 130  # 128 + SIGINT: what shells expect after Ctrl-C; the run stays resumable too


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


def code_record(previous: dict[str, Any]) -> dict[str, Any]:
    """code/* of this invocation; a resume running other code than the run started with says so in one line and
    keeps the first code in code/first."""
    now = code_version()
    first = previous.get("code/first") or ({k: previous.get(k) for k in CODE_KEYS} if "code/commit" in previous
                                           else None)
    if first is None or same_code(first, now):
        return {**now, **({"code/first": first} if previous.get("code/first") else {})}
    log.warning(f"warning: resuming with other code than this run started with (started with {code_label(first)}, "
                f"now {code_label(now)}): both are recorded (code/first, code/*) and reports show it")
    return {**now, "code/first": first}


def begin(run: Recorder, parts: Built) -> None:
    """Record the run as `running` (where and how it runs, which code), save its config, start the wandb run."""
    trainer, cfg = parts.trainer, run.cfg
    stop = unclean_stop(run.previous, parts.resumed, parts.resume)
    run.is_zero = trainer.is_global_zero
    run.flops_per_image = float(parts.complexity.flops)
    run.update({**machine(trainer.strategy.root_device, trainer.world_size), **code_record(run.previous),
                "config_hash": config_hash(cfg), "precision": str(trainer.precision),
                "channels_last": parts.channels_last, "compile": parts.compile or False,
                "resumed_from": str(parts.resume) if parts.resume else None,
                "interruptions": [*run.data["interruptions"], *([stop] if stop else [])]})
    if not run.is_zero:
        return
    for tmp in run.dir.glob("**/.*.tmp"):  # leftovers of a write killed mid-way (the target is intact)
        tmp.unlink(missing_ok=True)
    OmegaConf.save(cfg, run.dir / "config.yaml", resolve=True)
    save_hydra_files(run.dir, cfg)
    run.update(parts.timing.summary() if parts.timing else {})
    run.update({"wandb_dir": wandb_start(parts.loggers, {
        **run.data, "optim": OmegaConf.to_container(cfg.optim, resolve=True),
        "sched": OmegaConf.to_container(cfg.sched, resolve=True)}, parts.complexity, parts.timing)})
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


def fit(run: Recorder, parts: Built, preemption: Preemption) -> None:
    """trainer.fit, resuming from last.ckpt when there is one; divergence and SIGTERM are outcomes, not errors."""
    trainer = parts.trainer
    try:
        with parts.watch:
            trainer.fit(parts.module, datamodule=parts.dm, ckpt_path=str(parts.resume) if parts.resume else None,
                        weights_only=True)
    except Diverged as e:
        run.update({"status": "diverged", "diverged_at_step": e.step, "error": str(e)})
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
        stop = {"by": by, "at_step": trainer.global_step, "checkpoint": saved, "at": time.time(),
                "invocation": run.data["invocations"]}
        run.update({"status": "running", "interrupted": by, "interrupted_at_step": trainer.global_step,
                    "resume_from": saved, "interruptions": [*run.data["interruptions"], stop]})
    run.update({"epochs": trainer.current_epoch, "steps": trainer.global_step, **parts.meter.summary(trainer),
                **parts.watch.summary(), "sched/total_steps": getattr(parts.module, "total_steps", None),
                **run.compute(trainer), **compile_used(parts)})
    val = {k: trainer.callback_metrics.get(k) for k in ("val/acc", "val/acc_top5", "val/loss", "val/acc_best",
                                                         "val/images")}
    run.update({k: float(v) for k, v in val.items() if v is not None})
    if "val" in parts.module.evaluated:
        run.update({"val/images": int(val["val/images"]), "val/images_per_class": parts.module.evaluated["val"]})
        warn_missing_classes(run.data, "val", parts.dm.split_size("val"))


def warn_missing_classes(record: dict[str, Any], split: str, size: int) -> None:
    """One line when a limited evaluation (trainer.limit_<split>_batches) left classes out: its accuracy then
    speaks for some classes only. Evaluation splits are served class-interleaved (data.splits.interleaved_order),
    so this takes a limit below about one image per class."""
    counts, images = record.get(f"{split}/images_per_class"), record.get(f"{split}/images")
    if not counts or images is None or images >= size or min(counts) > 0:
        return
    missing = [str(c) for c, n in enumerate(counts) if n == 0]
    shown = ", ".join(missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
    log.warning(f"warning: the {split} evaluation covered {images:,} of {size:,} images and no image of "
                f"{len(missing)} of {len(counts)} classes ({shown}): raise trainer.limit_{split}_batches")


def compile_used(parts: Built) -> dict[str, Any]:
    """The torch.compile mode the run really trained with, and the compiler's reason when it fell back to eager."""
    fallback = parts.module.compile_fallback
    return {"compile/used": "eager" if fallback or not parts.compile else parts.compile,
            **({"compile/fallback": fallback} if fallback else {})}


def test(run: Recorder, parts: Built) -> None:
    """Test the best and the last checkpoint; the run is `finished` after this."""
    trainer, module = parts.trainer, parts.module
    trainer.save_checkpoint(parts.last, weights_only=False)  # final weights even when max_steps stopped mid-epoch
    best = parts.best.best_model_path or str(parts.last)
    for prefix, path in (("test", best), ("test_last", str(parts.last))):
        with parts.watch, module.evaluating_as(prefix):
            out = trainer.test(module, datamodule=parts.dm, ckpt_path=path, weights_only=True, verbose=False)
        run.update({k: float(v) for k, v in (out[0] if out else {}).items()})
        if prefix in module.evaluated:
            run.update({f"{prefix}/images": int(run.data[f"{prefix}/images"]),
                        f"{prefix}/images_per_class": module.evaluated[prefix]})
    warn_missing_classes(run.data, "test", parts.dm.split_size("test"))
    run.update({"best_checkpoint": best, **parts.watch.summary(), **compile_used(parts), "status": "finished",
                **{k: v for k, v in parts.meter.summary(trainer).items() if k == "eval/images_per_s"}})
    run.update({f"data/{k}": v for k, v in parts.dm.describe().items()
                if isinstance(v, (int, float, str, bool)) and f"data/{k}" not in run.data})


def fail(run: Recorder, error: BaseException, parts: Built | None) -> None:
    """Record the failure (one line) and stop every rank process this one started."""
    if parts is not None:
        _stop_launched_ranks(parts.trainer)
    disk = write_failure(error)
    if disk is not None:
        write_failed(run, disk, parts)
        raise ConfigError(disk) from None
    message = str(error) if isinstance(error, ConfigError) else " ".join(f"{type(error).__name__}: {error}".split())
    run.update({"status": "failed", "error": message[:500]})
    files = getattr(error, "files", None)  # e.g. every unreadable image, where the message names the first few
    if files and run.is_zero:
        (run.dir / UnreadableImages.LIST).write_text("\n".join(files) + "\n")
        run.update({"data/unreadable_images": list(files)})
        log.info("unreadable images:\n" + "\n".join(files), extra={"file_only": True})
    run.stop_clock()
    run.write()
    wandb_finish(parts.loggers if parts else [], run.data)
    log.info(f"failed: {message}", extra={"file_only": True}, exc_info=error)


def write_failed(run: Recorder, line: str, parts: Built | None) -> None:
    """A write the disk refused (full, read-only, ...): not the run's fault and not a result, so the run stays
    `running` (the same command resumes from the last checkpoint, which atomic writes never tear) and the
    interruption is recorded, if the disk still takes that much."""
    step = parts.trainer.global_step if parts is not None else None
    run.update({"status": "running", "interrupted": "write error", "interrupted_at_step": step,
                "interruptions": [*run.data["interruptions"], {"by": f"write error: {line}", "at_step": step,
                                                               "at": time.time(), "invocation": run.data["invocations"],
                                                               "checkpoint": None}]})
    run.stop_clock()
    try:
        run.write()
        wandb_finish(parts.loggers if parts else [], run.data)
    except OSError:
        pass  # the previous record stays, readable: it says `running` too
    log.info(f"stopped: {line}", extra={"file_only": True})


def stopped_at_once(run: Recorder, parts: Built | None) -> None:
    """Ctrl-C that could not wait for the end of a step (pressed twice, or before training began): the run stays
    resumable from its last checkpoint (none: it starts over), the interruption is recorded, and the user is told."""
    checkpoint = parts.last if parts is not None and parts.last.is_file() else None
    step = parts.trainer.global_step if parts is not None else None
    run.update({"status": "running", "interrupted": SIGINT_REASON, "interrupted_at_step": step,
                "interruptions": [*run.data["interruptions"], {
                    "by": f"{SIGINT_REASON}, at once", "at_step": step, "at": time.time(),
                    "checkpoint": str(checkpoint) if checkpoint else None, "invocation": run.data["invocations"]}]})
    run.stop_clock()
    run.write()
    wandb_finish(parts.loggers if parts else [], run.data)
    since = f"from {checkpoint}" if checkpoint else "from the start (no checkpoint yet)"
    log.info(f"stopped by Ctrl-C at step {step if step is not None else 0}. Re-run the same command (same "
             f"hydra.run.dir) to resume {since}.")


def done(run_dir: Path, previous: dict[str, Any], cfg: DictConfig) -> dict[str, Any]:
    console.setup(None, bool(cfg.get("verbose", False)))  # nothing is written into a finished run's directory
    log.info(f"{run_dir}: already {previous['status']} (results.json); not training again. Use a new hydra.run.dir "
             "for a new run.")
    console.report(previous, bool(cfg.get("summary", True)))
    return previous


def train(cfg: DictConfig, overrides: list[str] | None = None, callbacks: Sequence[Callback] = ()
          ) -> dict[str, Any]:
    """One run, in stages: stop if done -> build -> begin -> fit -> test -> finish (or fail); returns its record.
    `callbacks`: extra Lightning callbacks for the run's Trainer (what a caller watches the run with, e.g. the
    benchmark's step clock); they never change what the run computes."""
    run_dir = resolve_run_dir(cfg)
    check_same_config(run_dir, cfg)  # before anything is written into it
    with run_lock(run_dir):  # one writer per run dir; a second invocation is refused here, having changed nothing
        previous = read_results(run_dir)  # read once the lock is held: a requeued task may have waited for it
        if previous and previous.get("status") in DONE:
            return done(run_dir, previous, cfg)
        return _train(cfg, run_dir, previous, overrides, callbacks)


def run_lock(run_dir: Path) -> contextlib.AbstractContextManager:
    """The run directory's lock, taken by rank 0 (DDP ranks > 0 run inside rank 0's directory and lock)."""
    from lightning.pytorch.utilities.rank_zero import rank_zero_only

    return DirLock(run_dir, "this run directory") if rank_zero_only.rank == 0 else contextlib.nullcontext()


def _train(cfg: DictConfig, run_dir: Path, previous: dict[str, Any] | None, overrides: list[str] | None,
           callbacks: Sequence[Callback]) -> dict[str, Any]:
    console.setup(run_dir, bool(cfg.get("verbose", False)))
    threads_from_scheduler()
    run = Recorder(cfg, run_dir, hydra_overrides() if overrides is None else list(overrides), previous)
    parts: Built | None = None
    with Preemption() as preemption:
        try:
            check_keys(cfg)  # every key's value on its own (models.train.keys), before anything uses one
            pl.seed_everything(int(cfg.seed), workers=True, verbose=False)
            parts = build(cfg, run_dir, run, [run, preemption, *callbacks])
            begin(run, parts)
            fit(run, parts, preemption)
            if run.data["status"] == "running" and "interrupted" not in run.data:
                test(run, parts)
        except BaseException as e:
            if KeyboardInterrupt in (type(e), type(e.__context__)):  # Lightning turns Ctrl-C into exit(1)
                stopped_at_once(run, parts)  # Ctrl-C twice, or outside the training loop
                console.close_log_file()
                raise SystemExit(EXIT_SIGINT) from None
            fail(run, e, parts)
            console.close_log_file()
            raise
        try:
            return finish(run, parts, preemption)
        finally:
            console.close_log_file()


def finish(run: Recorder, parts: Built, preemption: Preemption) -> dict[str, Any]:
    run.stop_clock()
    run.write()
    if run.is_zero:
        wandb_finish(parts.loggers, run.data)
    if run.data["status"] == "running":  # interrupted: the job (and a sweep) stops with 128 + the signal
        log.info(f"interrupted by {run.data['interrupted']} at step {parts.trainer.global_step}; checkpoint "
                 f"{parts.last} saved. Re-run the same command (same hydra.run.dir) to resume.")
        preemption.hand_back()  # under SLURM: submitit requeues the job and exits
        raise SystemExit(EXIT_SIGINT if run.data["interrupted"] == SIGINT_REASON else EXIT_SIGTERM)
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
