"""`train(cfg)`: one whole run, from a composed Hydra config to `<run dir>/results.json`.

seed -> datamodule -> network (classes/channels from the data, input size checked) -> complexity at the run's input
size -> loggers, callbacks, Trainer (all from cfg) -> fit (resuming from last.ckpt if present) -> test on best.ckpt
(`test/*`) and on last.ckpt (`test_last/*`) -> results.json, written atomically by rank 0.

A results.json with status `running` is written when fitting starts, so an interrupted run is visible as such.
Re-running in the same run dir: `finished`/`diverged` runs are returned as recorded; `running`/`failed` ones resume.
"""

from __future__ import annotations

import inspect
import os
import platform
import secrets
import string
import time
from pathlib import Path
from typing import Any

import hydra
import lightning
import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities.exceptions import SIGTERMException
from lightning.pytorch.utilities.rank_zero import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from models.callbacks import FiniteGuard, RunMeter, SaveOnSigterm
from models.complexity import Complexity, profile
from models.errors import ConfigError
from models.lightning import Classifier
from models.records import Diverged
from models.network import Net
from models.presets import get_spec
from models.records import DONE, RESULTS, AtomicCheckpointIO, atomic_write_json, load_checkpoint, read_results
from models.spec import NetSpec

CKPT_DIR = "checkpoints"
WANDB_ID_FILE = "wandb_id.txt"
EXIT_SIGTERM = 143  # what SLURM and shells expect from a job that stopped on SIGTERM; the run stays resumable


# ---------------------------------------------------------------------------------------------- building blocks
def resolve_run_dir(cfg: DictConfig) -> Path:
    if cfg.get("run_dir"):
        return Path(str(cfg.run_dir)).expanduser()
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        return Path(HydraConfig.get().runtime.output_dir)
    raise ConfigError("run_dir is not set: pass run_dir=<dir> (or run through scripts/train.py, which uses hydra.run.dir)")


def hydra_overrides() -> list[str]:
    from hydra.core.hydra_config import HydraConfig

    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def build_datamodule(data_cfg: DictConfig) -> pl.LightningDataModule:
    """Instantiate `data._target_`; keys its constructor does not take are an error, not silently ignored."""
    target = data_cfg.get("_target_")
    if not target:
        raise ConfigError("data._target_ is missing: pick a dataset with data=<digits|cifar10|cifar100|imagefolder|...>")
    cls = hydra.utils.get_class(target)
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self"}
    unknown = sorted(set(data_cfg) - accepted - {"_target_"})
    if unknown:
        raise ConfigError(f"data.{unknown[0]} is not an option of this dataset ({cls.__name__}): valid keys are "
                          f"{', '.join(sorted(accepted))}")
    kwargs = OmegaConf.to_container(data_cfg, resolve=True)
    kwargs.pop("_target_")
    return cls(**kwargs)  # called directly, not via hydra.utils.instantiate: its ConfigErrors stay unwrapped


def build_spec(model_cfg: DictConfig, dm: pl.LightningDataModule) -> tuple[str, NetSpec]:
    knobs = OmegaConf.to_container(model_cfg, resolve=True)
    assert isinstance(knobs, dict)
    name = knobs.get("name")
    requested = knobs.pop("num_classes", None)
    data_name = getattr(dm, "name", type(dm).__name__)
    if requested is not None and requested != dm.num_classes:
        raise ConfigError(f"model.num_classes={requested} but data={data_name} has {dm.num_classes} classes: drop the "
                          "override or pick another dataset")
    knobs["in_channels"] = int(getattr(dm, "in_channels", knobs.get("in_channels", 3)))
    spec = get_spec(knobs, num_classes=int(dm.num_classes))
    spec.check_input_size(int(dm.image_size))
    return str(name or "custom"), spec


def check_resume(ckpt: Path, knobs: dict[str, Any]) -> None:
    """The checkpoint must load (weights_only) and come from the same architecture."""
    saved = load_checkpoint(ckpt, mmap=True).get("hyper_parameters", {}).get("model", {})
    for key in sorted((set(saved) | set(knobs)) - {"depth", "width"}):  # real knobs, not the derived ones
        old, new = saved.get(key), knobs.get(key)
        if isinstance(old, (list, tuple)) and isinstance(new, (list, tuple)):
            old, new = list(old), list(new)
        if old != new:
            raise ConfigError(f"model.{key}={new!r} but checkpoint {ckpt} was trained with model.{key}={old!r}: "
                              "use the same model to resume, or a new hydra.run.dir for a new run")


def check_devices(accelerator: str, devices: Any) -> None:
    """Lightning happily starts 64 CPU 'devices' (processes) on a 2-core box; refuse more than there are."""
    if not isinstance(devices, int) or isinstance(devices, bool) or devices == -1:
        return
    if devices < 1:
        raise ConfigError(f"trainer.devices={devices} must be >= 1 (or -1 / auto for all)")
    on_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    available = torch.cuda.device_count() if on_gpu else (os.cpu_count() or 1)
    kind = "GPUs" if on_gpu else "CPUs"
    if devices > available:
        raise ConfigError(f"trainer.devices={devices} but this machine has {available} {kind}: use "
                          f"trainer.devices<={available}" + ("" if on_gpu else " (or trainer=gpu on a GPU box)"))


def wandb_mode(offline: bool | None) -> str:
    """Offline unless the user chose online (WANDB_MODE in the environment or logger.wandb.offline=false)."""
    if offline is not None:
        return "offline" if offline else "online"
    env = os.environ.get("WANDB_MODE", "").lower()
    return env if env in ("online", "offline", "disabled") else "offline"


def build_loggers(cfg: DictConfig, run_dir: Path, run_name: str, record: dict[str, Any]) -> list[Any]:
    loggers: list[Any] = []
    for key, lcfg in (cfg.get("logger") or {}).items():
        lcfg = OmegaConf.to_container(lcfg, resolve=True)
        target = str(lcfg.get("_target_", ""))
        if target.endswith("WandbLogger"):
            id_file = run_dir / WANDB_ID_FILE
            if not id_file.exists():  # the id survives restarts: a resumed run continues the same wandb run
                alphabet = string.ascii_lowercase + string.digits  # wandb's own id alphabet and length
                id_file.write_text("".join(secrets.choice(alphabet) for _ in range(8)))
            group = cfg.get("ablation") or cfg.experiment
            tags = sorted({str(t) for t in [cfg.experiment, *(cfg.get("tags") or []), record["model"], record["data"],
                                            *([cfg.ablation] if cfg.get("ablation") else [])]})
            # `mode` instead of Lightning's `offline`, which would set WANDB_MODE for the rest of the process.
            mode = wandb_mode(lcfg.pop("offline", None))
            loggers.append(hydra.utils.instantiate(
                lcfg, offline=False, mode=mode, save_dir=str(run_dir), id=id_file.read_text().strip(),
                name=run_name, group=str(group), tags=tags[:64], resume="allow"))
        elif target.endswith("CSVLogger"):
            loggers.append(hydra.utils.instantiate(lcfg, save_dir=str(run_dir), name=key, version=""))
        elif target:
            loggers.append(hydra.utils.instantiate(lcfg))
    return loggers


def wandb_start(loggers: list[Any], config: dict[str, Any], complexity: Complexity) -> None:
    """Flat config keys (model knobs, params, MACs, hardware), the per-layer table, val/acc summarised as max."""
    from lightning.pytorch.loggers import WandbLogger

    for logger in loggers:
        if not isinstance(logger, WandbLogger):
            continue
        import wandb

        run = logger.experiment
        run.define_metric("val/acc", summary="max")
        run.define_metric("val/acc_best", summary="max")
        run.config.update(config, allow_val_change=True)
        run.summary.update({k: v for k, v in config.items() if k in ("params", "macs", "flops", "trainable_params")})
        columns = ["name", "kind", "part", "params", "macs", "activations", "output_shape"]
        rows = [[layer.name, layer.kind, layer.part, layer.params, layer.macs, layer.activations,
                 "x".join(map(str, layer.output_shape))] for layer in complexity.layers]
        run.log({"complexity/layers": wandb.Table(columns=columns, data=rows)})


def wandb_finish(loggers: list[Any], record: dict[str, Any]) -> None:
    from lightning.pytorch.loggers import WandbLogger

    for logger in loggers:
        if isinstance(logger, WandbLogger) and logger._experiment is not None:
            run = logger.experiment
            # val/* stay as logged: define_metric keeps val/acc's max there, the record has the last value
            run.summary.update({k: v for k, v in record.items() if v is not None and not k.startswith("val/")
                                and isinstance(v, (int, float, str, bool))})
            run.finish(exit_code=0 if record.get("status") in ("finished", "running") else 1)


def software_hardware(trainer: pl.Trainer) -> dict[str, Any]:
    device = trainer.strategy.root_device
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = platform.processor() or platform.machine()
        try:
            name = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
        except (OSError, StopIteration):
            pass
    return {
        "hardware/device": name, "hardware/device_type": device.type, "hardware/num_devices": trainer.world_size,
        "hardware/cpu_count": os.cpu_count(), "software/torch": torch.__version__,
        "software/cuda": torch.version.cuda, "software/lightning": lightning.__version__,
        "software/python": platform.python_version(),
    }


def print_summary(record: dict[str, Any]) -> None:
    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.4f}" if abs(v) < 10 else f"{v:,.1f}"
        return f"{v:,}" if isinstance(v, int) else str(v)

    rows = [("run", record["run_dir"]), ("status", record["status"]), ("model", record["model"]),
            ("data", record["data"]), ("params", record["params"]), ("MACs", record["macs"]),
            ("val/acc_best", record.get("val/acc_best")), ("test/acc", record.get("test/acc")),
            ("test/acc_top5", record.get("test/acc_top5")), ("test_last/acc", record.get("test_last/acc")),
            ("train images/s", record.get("train/images_per_s")), ("epochs", record.get("epochs")),
            ("wall time s", record.get("wall_time_s"))]
    width = max(len(k) for k, _ in rows)
    print("\n".join(f"{k:<{width}}  {fmt(v)}" for k, v in rows if v is not None), flush=True)


# ---------------------------------------------------------------------------------------------- the run
def _stop_launched_ranks(trainer: pl.Trainer | None) -> None:
    """Rank 0 failing (e.g. a collective timed out on a hung rank): SIGKILL the rank processes it started, so that
    none is left behind, stopped or blocked. A no-op on other ranks and without DDP."""
    import signal

    from lightning.pytorch.strategies.launchers.subprocess_script import _SubprocessScriptLauncher

    launcher = getattr(getattr(trainer, "strategy", None), "launcher", None)
    if isinstance(launcher, _SubprocessScriptLauncher) and getattr(launcher, "procs", None):
        launcher.kill(signal.SIGKILL)


def train(cfg: DictConfig, overrides: list[str] | None = None) -> dict[str, Any]:
    t0 = time.perf_counter()
    run_dir = resolve_run_dir(cfg).resolve()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write_test"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise ConfigError(f"run directory {run_dir} is not writable ({e.strerror}): set hydra.run.dir to a writable "
                          "path") from None
    previous = read_results(run_dir)
    if previous and previous.get("status") in DONE:
        print(f"{run_dir}: already {previous['status']} (results.json); not training again. "
              "Use a new hydra.run.dir for a new run.", flush=True)
        if cfg.get("summary", True):
            print_summary(previous)
        return previous

    overrides = hydra_overrides() if overrides is None else list(overrides)
    record: dict[str, Any] = {"status": "running", "run_dir": str(run_dir), "experiment": str(cfg.experiment),
                              "ablation": cfg.get("ablation"), "tags": list(cfg.get("tags") or []),
                              "seed": int(cfg.seed), "overrides": overrides}
    is_zero = rank_zero_only.rank == 0  # DDP ranks > 0 never write the record
    loggers: list[Any] = []
    trainer: pl.Trainer | None = None
    try:
        pl.seed_everything(int(cfg.seed), workers=True, verbose=False)
        dm = build_datamodule(cfg.data)
        name, spec = build_spec(cfg.model, dm)
        # Load the data now, before the Trainer exists: a missing/corrupt dataset is then a clean one-line error
        # (and not a failure inside fit). Under DDP the launched ranks find it already prepared by rank 0.
        if rank_zero_only.rank == 0:
            dm.prepare_data()
        dm.setup("fit")
        net = Net(spec)
        image_size = int(dm.image_size)
        complexity = profile(net, image_size, spec.in_channels)
        knobs = {k: list(v) if isinstance(v, tuple) else v for k, v in spec.knobs().items()}
        record.update({"model": name, **{f"model/{k}": v for k, v in knobs.items()},
                       "data": str(getattr(dm, "name", cfg.data._target_)), "data/name": getattr(dm, "name", None),
                       "data/image_size": image_size, "data/batch_size": int(dm.batch_size),
                       "data/num_classes": int(dm.num_classes), **complexity.summary()})

        trainer_kwargs = OmegaConf.to_container(cfg.trainer, resolve=True)
        assert isinstance(trainer_kwargs, dict)
        for key in ("max_epochs", "max_steps"):
            value = trainer_kwargs.get(key)
            if value is not None and value != -1 and (not isinstance(value, int) or value <= 0):
                raise ConfigError(f"trainer.{key}={value!r} must be a positive integer (or -1 / null for no limit)")
        accelerator = str(trainer_kwargs.get("accelerator", "auto"))
        check_devices(accelerator, trainer_kwargs.get("devices", "auto"))
        on_cuda = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
        channels_last = on_cuda if cfg.get("channels_last") is None else bool(cfg.channels_last)
        module = Classifier(net, spec.num_classes, optim=OmegaConf.to_container(cfg.optim, resolve=True),
                            sched=OmegaConf.to_container(cfg.sched, resolve=True),
                            label_smoothing=float(cfg.get("label_smoothing", 0.0)), channels_last=channels_last,
                            compile=bool(cfg.get("compile", False)), model_knobs=knobs)

        ckpt_dir = run_dir / CKPT_DIR
        last = ckpt_dir / "last.ckpt"
        resume = last if last.exists() else None
        if resume:
            check_resume(resume, knobs)
        ckpt_cfg = cfg.get("checkpoint") or {}
        every = int(ckpt_cfg.get("every_n_steps") or 0)
        best_cb = ModelCheckpoint(dirpath=ckpt_dir, filename="best", monitor=str(ckpt_cfg.get("monitor", "val/acc")),
                                  mode="max", save_top_k=1, save_last=True, enable_version_counter=False,
                                  auto_insert_metric_name=False)
        callbacks: list[pl.Callback] = [FiniteGuard(every), best_cb]
        if every > 0:  # a second writer of last.ckpt, every N optimizer steps
            callbacks.append(ModelCheckpoint(dirpath=ckpt_dir, save_top_k=0, save_last=True, every_n_train_steps=every,
                                             enable_version_counter=False))
        meter = RunMeter(complexity.flops, **OmegaConf.to_container(cfg.get("measure") or {}, resolve=True))
        sigterm = SaveOnSigterm(str(last))
        callbacks += [meter, sigterm]

        run_name = f"{name}-{record['data']}-s{cfg.seed}"
        loggers = build_loggers(cfg, run_dir, run_name, record)
        try:
            if trainer_kwargs.get("strategy") == "ddp":  # the same strategy, with our collective timeout
                from datetime import timedelta

                from lightning.pytorch.strategies import DDPStrategy

                timeout = cfg.get("ddp_timeout_s") or 1800
                if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or timeout <= 0:
                    raise ConfigError(f"ddp_timeout_s={timeout!r} must be a positive number of seconds")
                trainer_kwargs["strategy"] = DDPStrategy(timeout=timedelta(seconds=float(timeout)))
            trainer = pl.Trainer(**trainer_kwargs, logger=loggers or False, callbacks=callbacks,
                                 default_root_dir=str(run_dir), plugins=[AtomicCheckpointIO()])
        except (ValueError, TypeError, RuntimeError) as e:  # MisconfigurationException is a ValueError
            raise ConfigError(f"trainer: {' '.join(str(e).split())[:300]} (check the trainer.* overrides)") from None
        is_zero = trainer.is_global_zero
        record.update(software_hardware(trainer))
        record.update({"precision": str(trainer.precision), "channels_last": channels_last,
                       "compile": bool(cfg.get("compile", False)), "resumed_from": str(resume) if resume else None})
        if is_zero:
            for tmp in run_dir.glob("**/.*.tmp"):  # leftovers of a write killed mid-way (the target is intact)
                tmp.unlink(missing_ok=True)
            OmegaConf.save(cfg, run_dir / "config.yaml", resolve=True)
            atomic_write_json(run_dir / RESULTS, record)
            wandb_start(loggers, {**record, "optim": OmegaConf.to_container(cfg.optim, resolve=True),
                                  "sched": OmegaConf.to_container(cfg.sched, resolve=True)}, complexity)

        try:
            trainer.fit(module, datamodule=dm, ckpt_path=str(resume) if resume else None, weights_only=True)
        except Diverged as e:
            record.update(status="diverged", diverged_at_step=e.step, error=str(e))
        except SIGTERMException:
            record.update(status="running", interrupted="SIGTERM", interrupted_at_step=trainer.global_step,
                          resume_from=str(last) if sigterm.saved else None)
        record.update(epochs=trainer.current_epoch, steps=trainer.global_step,
                      **{k: v for k, v in meter.summary(trainer).items()})
        val = {k: trainer.callback_metrics.get(k) for k in ("val/acc", "val/acc_top5", "val/loss", "val/acc_best")}
        record.update({k: float(v) for k, v in val.items() if v is not None})

        if record["status"] == "running" and "interrupted" not in record:
            trainer.save_checkpoint(last, weights_only=False)  # final weights even when max_steps stopped mid-epoch (no val, no save)
            best = best_cb.best_model_path or str(last)
            for prefix, path in (("test", best), ("test_last", str(last))):
                module.test_prefix = prefix
                out = trainer.test(module, datamodule=dm, ckpt_path=path, weights_only=True, verbose=False)
                record.update({k: float(v) for k, v in (out[0] if out else {}).items()})
            record["best_checkpoint"] = best
            record.update({k: v for k, v in meter.summary(trainer).items() if k == "eval/images_per_s"})
            record["status"] = "finished"
            record.update({f"data/{k}": v for k, v in dm.describe().items()
                           if isinstance(v, (int, float, str, bool)) and f"data/{k}" not in record})
        if record["status"] == "running":
            print(f"interrupted by SIGTERM at step {trainer.global_step}; checkpoint {last} saved. Re-run the same "
                  "command (same hydra.run.dir) to resume.", flush=True)
    except BaseException as e:
        _stop_launched_ranks(trainer)
        record.update(status="failed", error=" ".join(f"{type(e).__name__}: {e}".split())[:500])
        if isinstance(e, ConfigError):
            record["error"] = str(e)
        record["wall_time_s"] = time.perf_counter() - t0
        if is_zero and (run_dir / ".").exists():
            atomic_write_json(run_dir / RESULTS, record)
        wandb_finish(loggers, record)
        raise
    record["wall_time_s"] = time.perf_counter() - t0
    if is_zero:
        atomic_write_json(run_dir / RESULTS, record)
        wandb_finish(loggers, record)
        if cfg.get("summary", True) and record["status"] != "running":
            print_summary(record)
    if record["status"] == "running":  # SIGTERM: the job (and a sweep) stops with the conventional 128 + 15
        raise SystemExit(EXIT_SIGTERM)
    return record


def get_spec_net(spec: NetSpec) -> torch.nn.Module:
    """The network of a spec (kept for models/benchmark.py)."""
    return Net(spec)
