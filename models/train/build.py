"""The `build` stage of a run: datamodule, network spec, LightningModule, callbacks, loggers and Trainer from a
composed config. Nothing here trains; bad input raises `ConfigError` before the Trainer exists."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.environments import SLURMEnvironment
from lightning.pytorch.utilities.rank_zero import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from data import build_datamodule
from models.complexity import Complexity, profile
from models.errors import ConfigError
from models.memory import optimizer_buffers, profile_memory
from models.network import Net
from models.presets import get_spec
from models.spec import NetSpec
from models.timing import ModelTiming, measure, resolve_precision
from models.train.callbacks import FiniteGuard, PeriodicCheckpoint, RunMeter, SaveOnSigterm
from models.train.checkpoints import AtomicCheckpointIO
from models.train.config import TrainerSettings, check_resume
from models.train.console import Announce, ProgressBar
from models.train.graphs import CompileWatch, check_graph_settings, compile_mode, uses_cuda_graphs
from models.train.history import ResumeState
from models.train.loggers import build_loggers
from models.train.module import Classifier
from models.train.recorder import Recorder

CKPT_DIR = "checkpoints"


@dataclass
class Built:
    """Everything one run trains with."""

    dm: pl.LightningDataModule
    name: str
    spec: NetSpec
    complexity: Complexity
    module: Classifier
    trainer: pl.Trainer
    meter: RunMeter
    best: ModelCheckpoint
    sigterm: SaveOnSigterm
    last: Path
    resume: Path | None
    loggers: list[Any] = field(default_factory=list)
    channels_last: bool = False
    compile: str | None = None  # the torch.compile mode (None: eager)
    on_cuda: bool = False
    watch: CompileWatch = field(default_factory=lambda: CompileWatch(None, False))
    timing: ModelTiming | None = None  # measured time per part (rank 0, measure.parts)
    resumed: dict[str, Any] | None = None  # what the resumed checkpoint recorded (epoch, global_step, ...)


def build_spec(model_cfg: DictConfig, dm: pl.LightningDataModule) -> tuple[str, NetSpec]:
    """The preset name and spec of `model.*`, classes and channels taken from the data, input size checked."""
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


def check_finite_every(cfg: DictConfig, on_cuda: bool) -> int:
    """`check_finite_every` (null: every step on a CPU, where it costs nothing; every 50 on a GPU, where each check
    is a host sync that stalls the launch queue)."""
    value = cfg.get("check_finite_every")  # typed by models.train.keys
    return (50 if on_cuda else 1) if value is None else int(value)


def load_data(cfg: DictConfig, pad_eval: bool = False) -> pl.LightningDataModule:
    """The datamodule, with its data read now, before the Trainer exists: a missing or corrupt dataset is then a
    one-line error (not a failure inside fit). Under DDP the launched ranks find it already prepared by rank 0.
    `pad_eval`: evaluation batches padded to a static shape (CUDA graphs)."""
    dm = build_datamodule(cfg.data, pad_eval=pad_eval)
    if rank_zero_only.rank == 0:
        dm.prepare_data()
    dm.setup("fit")
    return dm


def build_callbacks(cfg: DictConfig, ckpt_dir: Path, meter: RunMeter, record: Recorder, on_cuda: bool = False
                    ) -> tuple[list[pl.Callback], ModelCheckpoint, SaveOnSigterm]:
    """The run's own callbacks, in the order Lightning must call them (ModelCheckpoint subclasses run last)."""
    ckpt_cfg = cfg.get("checkpoint") or {}
    every = int(ckpt_cfg.get("every_n_steps") or 0)
    best = ModelCheckpoint(dirpath=ckpt_dir, filename="best", monitor=str(ckpt_cfg.get("monitor", "val/acc")),
                           mode="max", save_top_k=1, save_last=True, enable_version_counter=False,
                           auto_insert_metric_name=False)
    callbacks: list[pl.Callback] = [ResumeState(), FiniteGuard(every), best]
    if every > 0:  # a second writer of last.ckpt, every N optimizer steps
        callbacks.append(PeriodicCheckpoint(dirpath=ckpt_dir, save_top_k=0, save_last=True, every_n_train_steps=every,
                                            enable_version_counter=False))
    sigterm = SaveOnSigterm(str(ckpt_dir / "last.ckpt"))
    # a bar refresh every step would stall a GPU's launch queue
    bar = [ProgressBar(refresh_rate=50 if on_cuda else 1)] if cfg.trainer.get("enable_progress_bar", True) else []
    return [*callbacks, meter, sigterm, Announce(record), *bar], best, sigterm


def build_trainer(settings: TrainerSettings, run_dir: Path, loggers: list[Any],
                  callbacks: list[pl.Callback]) -> pl.Trainer:
    plugins: list[Any] = [AtomicCheckpointIO()]
    if SLURMEnvironment.detect():  # one requeue mechanism only: submitit's (models/train/preempt.py), not
        plugins.append(SLURMEnvironment(auto_requeue=False))  # Lightning's USR1 -> hpc_ckpt_N.ckpt + requeue
    try:
        return pl.Trainer(**settings.trainer_kwargs(), logger=loggers or False, callbacks=callbacks,
                          default_root_dir=str(run_dir), plugins=plugins)
    except (ValueError, TypeError, RuntimeError) as e:  # MisconfigurationException is a ValueError
        raise ConfigError(f"trainer: {' '.join(str(e).split())[:300]} (check the trainer.* overrides)") from None


def time_parts(cfg: DictConfig, net: Net, dm: pl.LightningDataModule, settings: TrainerSettings,
               channels_last: bool) -> ModelTiming | None:
    """Measured forward / forward+backward time of each part, on the run's own network (left as it was) before it is
    compiled, on the run's device, batch size and precision: time shares to set beside the MAC shares. Rank 0 only;
    `measure.parts=false` skips it."""
    options = cfg.get("measure") or {}
    if not options.get("parts", True) or rank_zero_only.rank != 0:
        return None
    device = torch.device("cuda", torch.cuda.current_device()) if settings.on_cuda else torch.device("cpu")
    precision = str(settings.kwargs.get("precision", "32-true"))
    try:
        resolve_precision(precision, device)
    except ConfigError:  # e.g. 64-true: not a timed precision
        return None
    timing = measure(net, int(dm.image_size), int(dm.batch_size), device, precision, channels_last, layers=False,
                     budget_s=float(options.get("parts_budget_s", 30)))
    return timing  # unreliable times: one short warning after the start line (console.Announce)


def run_name(preset: str, data: str, seed: int) -> str:
    """The wandb run name: `resnet20-cifar10-s0`, plus, for a job of a grid, its value of every other axis the grid
    varies (`model.head=fc`), so that the runs of one grid differ by name on the dashboard."""
    from hydra.core.hydra_config import HydraConfig

    base = f"{preset}-{data}-s{seed}"
    if not HydraConfig.initialized() or HydraConfig.get().mode.name != "MULTIRUN":
        return base
    hydra_cfg = HydraConfig.get()
    axes = [k for k, v in (hydra_cfg.sweeper.get("params") or {}).items()
            if "," in str(v) and k not in ("model", "seed", "data")]
    mine = dict(o.lstrip("+").split("=", 1) for o in hydra_cfg.overrides.task if "=" in o)
    return " ".join([base, *(f"{k}={mine[k]}" for k in axes if k in mine)])


def split_counts(dm: Any) -> dict[str, Any]:
    """data/<split>_size and data/<split>_per_class (images of each class) of the run's three splits."""
    out: dict[str, Any] = {}
    for split in ("train", "val", "test"):
        counts = dm.class_counts(split)
        out.update({f"data/{split}_size": sum(counts), f"data/{split}_per_class": counts})
    return out


def build(cfg: DictConfig, run_dir: Path, record: Recorder, extra_callbacks: Sequence[pl.Callback] = ()
          ) -> Built:
    """Everything the run needs, in the order that reports bad input earliest; fills the record's config keys.
    One network is built: its complexity is counted on a weightless copy (meta device), its parts timed in place."""
    settings = TrainerSettings.from_cfg(cfg)  # cheap checks first: no data is read for a run that cannot start
    check_graph_settings(cfg.get("compile", False), settings.kwargs, settings.on_cuda)
    mode = compile_mode(cfg.get("compile", False), settings.on_cuda)
    graphs = uses_cuda_graphs(mode, settings.on_cuda)
    dm = load_data(cfg, pad_eval=graphs)  # static shapes where graphs run: evaluation pads its last batch
    name, spec = build_spec(cfg.model, dm)
    with torch.device("meta"):  # counting needs shapes only
        weightless = Net(spec)
    complexity = profile(weightless, int(dm.image_size), spec.in_channels)
    memory = profile_memory(weightless, int(dm.image_size), spec.in_channels)
    record.update({"model": name, **{f"model/{k}": v for k, v in spec.config().items()},
                   "data": str(getattr(dm, "name", cfg.data._target_)), "data/name": getattr(dm, "name", None),
                   "data/image_size": int(dm.image_size), "data/batch_size": int(dm.batch_size),
                   "data/num_classes": int(dm.num_classes), **split_counts(dm), **complexity.summary(),
                   **memory.summary(int(dm.batch_size), str(settings.kwargs.get("precision", "32-true")),
                                    optimizer_buffers(str(cfg.optim.name), float(cfg.optim.momentum)))})
    last = run_dir / CKPT_DIR / "last.ckpt"
    resume = last if last.exists() else None
    resumed = check_resume(resume, spec.config()) if resume else None
    net = Net(spec)
    channels_last = settings.on_cuda if cfg.get("channels_last") is None else bool(cfg.channels_last)
    timing = time_parts(cfg, net, dm, settings, channels_last)
    module = Classifier(net, spec.num_classes, optim=OmegaConf.to_container(cfg.optim, resolve=True),
                        sched=OmegaConf.to_container(cfg.sched, resolve=True),
                        label_smoothing=float(cfg.get("label_smoothing", 0.0)), channels_last=channels_last,
                        compile=mode, model_knobs=spec.config(), cuda_graphs=graphs,
                        check_finite_every=check_finite_every(cfg, settings.on_cuda))
    measure_cfg = OmegaConf.to_container(cfg.get("measure") or {}, resolve=True)
    for key in ("parts", "parts_budget_s"):  # timed above, not by the meter
        measure_cfg.pop(key, None)
    if graphs:  # the first evaluation batches record the CUDA graphs: not timed
        measure_cfg["eval_warmup_steps"] = int(measure_cfg.get("eval_warmup_steps", 1)) + 2
    meter = RunMeter(complexity.flops, **measure_cfg)
    callbacks, best, sigterm = build_callbacks(cfg, run_dir / CKPT_DIR, meter, record, settings.on_cuda)
    loggers = build_loggers(cfg, run_dir, run_name(name, record.data["data"], int(cfg.seed)), record.data, resumed)
    trainer = build_trainer(settings, run_dir, loggers, [*callbacks, *extra_callbacks])
    return Built(dm, name, spec, complexity, module, trainer, meter, best, sigterm, last, resume, loggers,
                 channels_last, mode, settings.on_cuda, CompileWatch(mode, settings.on_cuda), timing, resumed)
