"""Every configuration key of scripts/train.py, typed: what each accepts, checked before torch loads.

One dataclass per section (`Train` at the top), each field a key, its type hint what the key accepts: `Annotated`
with annotated-types bounds, `Literal` for choices, unions for "an integer or auto", `None` for null. `check_keys`
walks a composed config against it and raises a one-line `ConfigError` naming the first bad key and what it takes,
e.g. `seed='abc' is not valid: use an integer in [0, 4294967295]`; keys the schema does not know are refused the
same way. The cross-field checks (run length, devices, CUDA graphs, input size, ...) stay beside the code they
protect and run after this one: here a value is only judged on its own.

Why plain dataclasses and not OmegaConf structured configs merged into the composition: OmegaConf 2.3 types neither
`Literal` nor unions of values, and its errors are multi-line tracebacks raised while Hydra composes. The sections
that mirror a library's signature (`Trainer`, the datamodules, `NetSpec`) are held to it by tests
(tests/unit/test_keys.py), so a library that renames an argument fails there, not on a user's run.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, field, fields, is_dataclass, make_dataclass
from typing import Annotated, Any, Literal

import annotated_types as at
from pydantic import StringConstraints

from data import keys as data_keys
from models.errors import ConfigError
from models.spec import NetSpec
from models.train.graphs import MODES
from models.train.optim import OptimConfig, SchedSettings
from models.utils.declare import Count, Positive, Says, Text, arms, check, describe, interval

Seconds = interval(gt=0)
Fraction = interval(ge=0, le=1)
BelowOne = interval(ge=0, lt=1)  # [0, 1)
Between = interval(gt=0, lt=1)  # (0, 1)
Auto = Literal["auto"]
NoLimit = Literal[-1]  # Lightning's "no limit"
Clock = Annotated[str, StringConstraints(pattern=r"^\d+:\d{1,2}:\d{1,2}:\d{1,2}$"),
                  Says("a time DD:HH:MM:SS (e.g. 00:12:00:00)")]
DeviceIds = Annotated[str, StringConstraints(pattern=r"^\d+(,\d+)*,?$"), Says("device indices such as '0,1'")]
PRECISIONS = Literal["32-true", "bf16-mixed", "16-mixed", "bf16-true", "16-true", "64-true", "transformer-engine",
                     "transformer-engine-float16", "64", "32", "16", "bf16", 64, 32, 16]


# ------------------------------------------------------------------ sections
Optim = OptimConfig  # optim.*: declared where the optimizer is built (models/train/optim.py)
Sched = SchedSettings  # sched.*: likewise


@dataclass
class Checkpoint:
    every_n_steps: Count = 500
    monitor: Literal["val/acc", "val/acc_top5"] = "val/acc"


@dataclass
class Measure:
    warmup_steps: Count = 5
    eval_warmup_steps: Count = 1
    parts: bool = True
    parts_budget_s: interval(ge=0) = 30  # type: ignore[valid-type]


def _config_hint(hint: Any) -> Any:
    """A knob's hint as a config value gives it: a tuple knob is a list in YAML and on the command line."""
    if typing.get_origin(hint) is tuple:
        return list[typing.get_args(hint)[0]]  # type: ignore[misc]
    return hint


# model.*: NetSpec's knobs (models/spec.py, their one declaration), plus the preset's name; num_classes may be null
# (the dataset's).
_KNOB_HINTS = typing.get_type_hints(NetSpec, include_extras=True)
Model = make_dataclass("Model", [("name", Text, field(default="resnet20")), *(
    (f.name, Positive | None if f.name == "num_classes" else _config_hint(_KNOB_HINTS[f.name]),
     field(default_factory=lambda d=f.default: list(d)) if isinstance(f.default, tuple) else field(default=f.default))
    for f in fields(NetSpec))])


@dataclass
class Data:
    """data.*: `_target_`, the datamodule class, and the keys that datamodule declares (data/keys.py)."""

    _target_: Text = "data.digits.DigitsDataModule"


@dataclass
class Trainer:
    """lightning.Trainer's keyword arguments, 1:1 (logger, callbacks, plugins and default_root_dir are the run's)."""

    accelerator: Literal["cpu", "gpu", "cuda", "mps", "tpu", "auto"] = "auto"
    strategy: Text = "auto"
    devices: Positive | NoLimit | Auto | DeviceIds | list[Count] = "auto"
    num_nodes: Positive = 1
    precision: PRECISIONS | None = None
    fast_dev_run: bool | Count = False
    max_epochs: Positive | NoLimit | None = None
    min_epochs: Count | None = None
    max_steps: Positive | NoLimit = -1
    min_steps: Count | None = None
    max_time: Clock | dict[str, Count] | None = None
    limit_train_batches: Count | Fraction | None = None
    limit_val_batches: Count | Fraction | None = None
    limit_test_batches: Count | Fraction | None = None
    limit_predict_batches: Count | Fraction | None = None
    overfit_batches: Count | Fraction = 0.0
    val_check_interval: Positive | interval(gt=0, le=1) | Clock | None = None  # type: ignore[valid-type]
    check_val_every_n_epoch: Positive | None = 1
    num_sanity_val_steps: Annotated[int, at.Ge(-1)] | None = None
    log_every_n_steps: Positive | None = None
    enable_checkpointing: bool | None = None
    enable_progress_bar: bool | None = None
    enable_model_summary: bool | None = None
    accumulate_grad_batches: Positive = 1
    gradient_clip_val: interval(ge=0) | None = None  # type: ignore[valid-type]
    gradient_clip_algorithm: Literal["norm", "value"] | None = None
    deterministic: bool | Literal["warn"] | None = None
    benchmark: bool | None = None
    inference_mode: bool = True
    use_distributed_sampler: bool = True
    profiler: Literal["simple", "advanced", "pytorch", "xla"] | None = None
    detect_anomaly: bool = False
    barebones: bool = False
    sync_batchnorm: bool = False
    reload_dataloaders_every_n_epochs: Count = 0
    enable_autolog_hparams: bool = True
    model_registry: Text | None = None


@dataclass
class Wandb:
    """The keys configs/logger/wandb.yaml sets; any other WandbLogger / wandb.init argument passes through."""

    _target_: Text = "lightning.pytorch.loggers.WandbLogger"
    project: Text = "vgg-vs-resnet"
    entity: Text | None = None
    offline: bool | None = None
    log_model: bool | Literal["all"] = False
    job_type: Text | None = None
    settings: dict[str, Any] | None = None


@dataclass
class Train:
    """configs/train.yaml, every key."""

    experiment: Text = "default"
    ablation: Text | None = None
    tags: list[Text] = field(default_factory=list)
    seed: Annotated[int, at.Interval(ge=0, le=2**32 - 1)] = 0
    run_dir: Text | None = None
    optim: Optim | None = None
    sched: Sched | None = None
    label_smoothing: BelowOne = 0.0
    channels_last: bool | None = None
    compile: bool | Auto | Literal[MODES] = "auto"  # type: ignore[valid-type]
    check_finite_every: Positive | None = None
    checkpoint: Checkpoint | None = None
    measure: Measure | None = None
    ddp_timeout_s: Seconds = 1800
    summary: bool = True
    verbose: bool = False
    model: Model | None = None
    data: Data | None = None
    trainer: Trainer | None = None
    logger: dict[str, Any] | None = None  # logger name -> its settings (LOGGERS types the known ones)


LOGGERS: dict[str, type] = {"wandb": Wandb}  # csv: only its _target_
ABSENT = object()  # what schema_default returns for a key that declares no default


# ------------------------------------------------------------------ the walk
def check_keys(cfg: Any) -> None:
    """Raise a one-line ConfigError for the first key of `cfg` (a composed train config: DictConfig or dict) whose
    value its type does not accept, or that no section has. Unresolvable or missing (`???`) values are left to the
    checks that know what to say about them."""
    from omegaconf import DictConfig, OmegaConf

    plain = OmegaConf.to_container(cfg, resolve=False) if isinstance(cfg, DictConfig) else cfg
    resolved = _resolved(cfg) if isinstance(cfg, DictConfig) else cfg
    _walk(Train, resolved, plain, "")


def _resolved(cfg: Any) -> dict[str, Any]:
    """The config with every interpolation that resolves resolved (one that does not stays a string)."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
    except OmegaConfBaseException:
        return OmegaConf.to_container(cfg, resolve=False)  # type: ignore[return-value]


def _walk(section: type, values: dict[str, Any], raw: dict[str, Any], prefix: str) -> None:
    hints = typing.get_type_hints(section, include_extras=True)
    if section is Data:  # the keys of the datamodule data._target_ names, as it declares them
        target = str(values.get("_target_"))
        hints = {**hints, **data_keys.hints(data_keys.declaration(target))}
    names = list(hints)
    for key, value in values.items():
        path = f"{prefix}{key}"
        if key not in names:
            if section is Data and target in data_keys.DECLARED:
                raise data_keys.unknown_key(key, target)
            if section is Model or section is Data:
                continue  # NetSpec names the valid knobs (models.spec); a datamodule of yours takes its own keys
            raise ConfigError(f"unknown key {path}: check the spelling (python scripts/train.py --cfg job lists the "
                              f"keys)")
        _check(path, value, raw.get(key) if isinstance(raw, dict) else None, hints[key])


def _check(path: str, value: Any, raw: Any, hint: Any) -> None:
    if isinstance(raw, str) and ("${" in raw or raw == "???") and value == raw:
        return  # unresolved interpolation or mandatory value: reported by the code that reads it
    section = _section(hint)
    if section is not None:
        if value is None:
            return
        if not isinstance(value, dict):
            raise ConfigError(f"{path}={value!r} is not valid: {path} is a group of keys ({path}.<key>=...)")
        _walk(section, value, raw if isinstance(raw, dict) else {}, f"{path}.")
        return
    if path == "logger" and isinstance(value, dict):
        for name, settings in value.items():
            _check_logger(f"logger.{name}", settings, raw.get(name) if isinstance(raw, dict) else None)
        return
    check(path, value, hint)


def _check_logger(path: str, value: Any, raw: Any) -> None:
    """A logger: a group of keys with a _target_; the keys LOGGERS types are checked, the rest pass through."""
    if value is None or value == {}:
        return
    if not isinstance(value, dict) or not isinstance(value.get("_target_"), str):
        raise ConfigError(f"{path}={value!r} is not valid: a logger is a group of keys with a _target_ "
                          "(configs/logger/*.yaml)")
    kind = LOGGERS.get(path.split(".", 1)[1])
    if kind is not None:
        known = {f.name for f in fields(kind)}
        _walk(kind, {k: v for k, v in value.items() if k in known}, raw if isinstance(raw, dict) else {}, f"{path}.")


def _section(hint: Any) -> type | None:
    for arm in arms(hint):
        if is_dataclass(arm):
            return arm  # type: ignore[return-value]
    return None


def schema_default(key: str) -> Any:
    """The default a key of the schema declares (a dotted path), or `ABSENT`."""
    from dataclasses import MISSING

    section: Any = Train
    *parents, name = key.split(".")
    for part in parents:
        field_ = {f.name: f for f in fields(section)}.get(part)
        section = _section(typing.get_type_hints(section, include_extras=True)[part]) if field_ else None
        if section is None:
            return ABSENT
    field_ = {f.name: f for f in fields(section)}.get(name)
    if field_ is None:
        return ABSENT
    if field_.default is not MISSING:
        return field_.default
    return field_.default_factory() if field_.default_factory is not MISSING else ABSENT


def leaf_keys(section: type = Train, prefix: str = "") -> dict[str, Any]:
    """Every key the schema types (dotted path -> type hint), sections flattened: what the tests walk. A data key
    several datamodules declare differently takes any of their types here."""
    hints = typing.get_type_hints(section, include_extras=True)
    out: dict[str, Any] = {}
    if section is Data:
        merged: dict[str, list[Any]] = {"_target_": [Text]}
        for declared in data_keys.DECLARED.values():
            for name, hint in data_keys.hints(declared).items():
                merged.setdefault(name, []).append(hint)
        return {f"{prefix}{k}": hs[0] if len(set(hs)) == 1 else typing.Union[tuple(dict.fromkeys(hs))]  # noqa: UP007
                for k, hs in merged.items()}
    for f in fields(section):
        sub = _section(hints[f.name])
        if sub is not None:
            out.update(leaf_keys(sub, f"{prefix}{f.name}."))
        elif f.name == "logger" and section is Train:
            for name, kind in LOGGERS.items():
                out.update(leaf_keys(kind, f"logger.{name}."))
        else:
            out[f"{prefix}{f.name}"] = hints[f.name]
    return out


def key_table() -> str:
    """docs/config_keys.md's table: every key and what it takes."""
    lines = ["| key | takes |", "|---|---|"]
    lines += [f"| `{key}` | {describe(hint)} |" for key, hint in leaf_keys().items()]
    return "\n".join(lines)
