"""What a run may be started with: its run directory, validated Trainer settings, and a checkpoint it may resume.

Everything here raises `ConfigError` (one line naming the key and the fix) before any training starts.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field, fields
from datetime import timedelta
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from models.errors import ConfigError


def resolve_run_dir(cfg: DictConfig) -> Path:
    """`run_dir` if set, else Hydra's output dir; created, and checked to be writable."""
    if cfg.get("run_dir"):
        run_dir = Path(str(cfg.run_dir)).expanduser()
    else:
        from hydra.core.hydra_config import HydraConfig

        if not HydraConfig.initialized():
            raise ConfigError("run_dir is not set: pass run_dir=<dir> (or run through scripts/train.py, which uses "
                              "hydra.run.dir)")
        run_dir = Path(HydraConfig.get().runtime.output_dir)
    run_dir = run_dir.resolve()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write_test"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise ConfigError(f"run directory {run_dir} is not writable ({e.strerror}): set hydra.run.dir to a writable "
                          "path") from None
    return run_dir


# Keys that say where and how a run executes, not what it trains: changing them keeps a run directory's identity.
IDENTITY_NOISE = ("run_dir", "logger", "tags", "summary", "verbose", "measure", "ddp_timeout_s", "checkpoint",
                  "experiment", "ablation", "channels_last", "compile", "hydra", "data.root", "data.download",
                  "data.verify", "data.num_workers", "data.cache", "data.cache_dir", "data.device_resident",
                  "trainer.accelerator", "trainer.devices", "trainer.num_nodes", "trainer.strategy",
                  "trainer.enable_progress_bar", "trainer.enable_model_summary", "trainer.log_every_n_steps",
                  "trainer.benchmark", "trainer.num_sanity_val_steps", "trainer.profiler", "trainer.detect_anomaly")


def _flat(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        return {k: v for key, value in node.items() for k, v in _flat(value, f"{prefix}{key}.").items()}
    return {prefix[:-1]: node}


def declared_default(key: str, cfg: DictConfig) -> Any:
    """The value a key takes where nothing sets it, from its one declaration: a model knob's NetSpec default, a
    data key's default in its datamodule's constructor, a trainer key's in Lightning's Trainer, any other key's in
    the typed schema (models/train/keys.py). `ABSENT` when no declaration gives one."""
    import inspect

    from models.train.keys import ABSENT, schema_default

    section, _, name = key.partition(".")
    if section == "model":
        from models.spec import NetSpec

        field_ = NetSpec.__dataclass_fields__.get(name)
        value = getattr(field_, "default", ABSENT) if field_ is not None else ABSENT
        return list(value) if isinstance(value, tuple) else value
    if section == "data":
        from data.keys import declaration

        found = {f.name: f.default for f in fields(declaration(cfg.data.get("_target_")))}
        return found.get(name, ABSENT)
    if section == "trainer" and name and "." not in name:
        import lightning.pytorch as pl

        param = inspect.signature(pl.Trainer.__init__).parameters.get(name)
        return ABSENT if param is None or param.default is inspect.Parameter.empty else param.default
    return schema_default(key)


def check_same_config(run_dir: Path, cfg: DictConfig) -> None:
    """A run directory belongs to the configuration that created it (its config.yaml): another one is refused,
    naming the differing keys, before anything is written. Noise keys (IDENTITY_NOISE) may differ. A key the saved
    config lacks (an option added to the project since) counts as its declared default there: the same run as long
    as it is left at that default now."""
    saved_path = run_dir / "config.yaml"
    if not saved_path.is_file():
        return
    saved = _flat(OmegaConf.to_container(OmegaConf.load(saved_path), resolve=False))
    now = _flat(OmegaConf.to_container(cfg, resolve=True))
    from models.train.keys import ABSENT

    noise = tuple(IDENTITY_NOISE)
    for key in now.keys() - saved.keys():  # added since that run started
        default = declared_default(key, cfg)
        if default is not ABSENT and not (key.startswith("hydra") or any(key == n or key.startswith(n + ".")
                                                                         for n in noise)):
            saved[key] = default
    differ = [k for k in saved if k in now and saved[k] != now[k]
              and not any(k == n or k.startswith(n + ".") for n in noise)]
    if differ:
        if "model.name" in differ:  # another preset: its knobs differ too, the name says it
            differ = [k for k in differ if k == "model.name" or not k.startswith("model.")]
        shown = ", ".join(f"{k}={saved[k]!r} (now {now[k]!r})" for k in differ[:4])
        more = f" and {len(differ) - 4} more" if len(differ) > 4 else ""
        raise ConfigError(f"run directory {run_dir} belongs to another configuration: {shown}{more}: re-run it with "
                          f"the settings of {saved_path}, or give this one its own hydra.run.dir")


def config_hash(cfg: DictConfig) -> str:
    """sha256 (16 hex digits) of the resolved configuration without the noise keys (IDENTITY_NOISE): two runs with
    the same hash trained the same thing, wherever and however they ran."""
    flat = _flat(OmegaConf.to_container(cfg, resolve=True))
    kept = {k: v for k, v in flat.items()
            if k != "seed" and not any(k == n or k.startswith(n + ".") for n in IDENTITY_NOISE)}
    return hashlib.sha256(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()[:16]


def hydra_overrides() -> list[str]:
    from hydra.core.hydra_config import HydraConfig

    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


LENGTH_SCHEDULES = ("cosine", "multistep", "onecycle")  # their lr depends on the run's total optimizer steps


def _unset(value: Any) -> bool:
    return value is None or value == -1


def check_run_length(kwargs: dict[str, Any], sched: str) -> None:
    """Every length Lightning accepts either gives the schedule the number of optimizer steps that will really run
    (Lightning's estimate covers max_epochs/max_steps, limit_train_batches, accumulation and DDP sharding) or is
    refused here, before anything trains."""
    epochs, steps, time_limit = kwargs.get("max_epochs"), kwargs.get("max_steps"), kwargs.get("max_time")
    if epochs is None and _unset(steps) and time_limit is None:
        raise ConfigError("trainer.max_epochs=null and trainer.max_steps=-1 give the run no length (Lightning would "
                          "silently train 1000 epochs): set trainer.max_epochs=N or trainer.max_steps=N")
    for low, high in (("min_epochs", "max_epochs"), ("min_steps", "max_steps")):
        lo, hi = kwargs.get(low), kwargs.get(high)
        if lo is not None and not _unset(hi) and lo > hi:
            raise ConfigError(f"trainer.{low}={lo} > trainer.{high}={hi}: the run cannot do both; lower "
                              f"trainer.{low} or raise trainer.{high}")
    if sched not in LENGTH_SCHEDULES:
        return
    if time_limit is not None:
        raise ConfigError(f"trainer.max_time={time_limit!r} stops the run by the clock, so sched.name={sched} cannot "
                          "know how many steps it spans: drop trainer.max_time (use max_epochs / max_steps) or set "
                          "sched.name=constant")
    if (epochs == -1 or epochs is None) and _unset(steps):
        raise ConfigError(f"trainer.max_epochs={epochs} (no limit) with sched.name={sched}: the schedule needs the "
                          "run's number of optimizer steps: set trainer.max_epochs=N or trainer.max_steps=N, or "
                          "sched.name=constant")


def check_devices(accelerator: str, devices: Any) -> None:
    """Lightning happily starts 64 CPU 'devices' (processes) on a 2-core box; refuse more than there are. torch is
    imported only to ask about GPUs: a CPU run is checked before torch loads (models.train.preflight)."""
    if accelerator == "cpu":
        _check_count(devices, os.cpu_count() or 1, "CPUs")
        return
    import torch

    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ConfigError(f"trainer.accelerator={accelerator} but this machine has no CUDA GPU: use trainer=cpu (or "
                          "trainer.accelerator=cpu)")
    on_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    _check_count(devices, torch.cuda.device_count() if on_gpu else (os.cpu_count() or 1), "GPUs" if on_gpu else "CPUs")


def _check_count(devices: Any, available: int, kind: str) -> None:
    if not isinstance(devices, int) or isinstance(devices, bool) or devices == -1:
        return
    if devices < 1:
        raise ConfigError(f"trainer.devices={devices} must be >= 1 (or -1 / auto for all)")
    if devices > available:
        hint = "" if kind == "GPUs" else " (or trainer=gpu on a GPU box)"
        raise ConfigError(f"trainer.devices={devices} but this machine has {available} {kind}: use "
                          f"trainer.devices<={available}{hint}")


@dataclass
class TrainerSettings:
    """`trainer.*` (Lightning Trainer keyword arguments, 1:1), validated; DDP gets the collective timeout."""

    kwargs: dict[str, Any] = field(default_factory=dict)
    ddp_timeout_s: float = 1800.0

    @classmethod
    def from_cfg(cls, cfg: DictConfig) -> TrainerSettings:
        kwargs = OmegaConf.to_container(cfg.trainer, resolve=True)
        assert isinstance(kwargs, dict)
        settings = cls(kwargs, float(cfg.get("ddp_timeout_s") or 1800))  # values typed by models.train.keys
        check_devices(settings.accelerator, kwargs.get("devices", "auto"))
        check_run_length(kwargs, str((cfg.get("sched") or {}).get("name", "constant")))
        return settings

    @property
    def accelerator(self) -> str:
        return str(self.kwargs.get("accelerator", "auto"))

    @property
    def on_cuda(self) -> bool:
        if self.accelerator in ("gpu", "cuda"):
            return True
        import torch

        return self.accelerator == "auto" and torch.cuda.is_available()

    def trainer_kwargs(self) -> dict[str, Any]:
        kwargs = dict(self.kwargs)
        if kwargs.get("strategy") == "ddp":  # the same strategy, with our collective timeout
            from lightning.pytorch.strategies import DDPStrategy

            kwargs["strategy"] = DDPStrategy(timeout=timedelta(seconds=self.ddp_timeout_s))
        return kwargs


def check_resume(ckpt: Path, knobs: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint must load (weights_only) and come from the same architecture. Returns what it recorded about
    the run besides weights (epoch, step, CSV rows, wall time)."""
    from models.spec import NetSpec
    from models.train.checkpoints import load_checkpoint

    checkpoint = load_checkpoint(ckpt, mmap=True)
    saved = checkpoint.get("hyper_parameters", {}).get("model", {})
    defaults = {f.name: f.default for f in NetSpec.__dataclass_fields__.values()}
    for key in sorted((set(saved) | set(knobs)) - {"depth", "width"}):  # real knobs, not the derived ones
        # a knob added after the checkpoint was written: that network had it at its default
        old, new = saved.get(key, defaults.get(key)), knobs.get(key)
        if isinstance(old, (list, tuple)) and isinstance(new, (list, tuple)):
            old, new = list(old), list(new)
        if old != new:
            raise ConfigError(f"model.{key}={new!r} but checkpoint {ckpt} was trained with model.{key}={old!r}: "
                              "use the same model to resume, or a new hydra.run.dir for a new run")
    return {k: checkpoint.get(k) for k in ("epoch", "global_step", "csv_rows", "wall_time_s")}
