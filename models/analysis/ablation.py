"""Named ablation grids (`configs/ablation/<name>.yaml`): their names, the jobs they expand to, where their runs live.

An ablation is a Hydra multirun: `python scripts/train.py -m +ablation=<name>`. Its grid is `hydra.sweeper.params`
(a product of overrides, seeds included); `configs/ablation/_sweep.yaml` puts every job in
`runs/ablation/<name>/<override_dirname>`, so the same command finds the same run directories again. The keys in
`hydra.job.config.override_dirname.exclude_keys` there are "noise" (paths, loggers, devices): they neither name a run
directory nor distinguish configurations in reports. The one exception is `ablation/variant`: a hand-picked
configuration (e.g. "vgg16 with a GAP head") chosen from `configs/ablation/variant/`; it is excluded there only
because its `/` would nest directories, and those ablations put the variant name first in `hydra.sweep.subdir`.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from models.errors import ConfigError
from models.utils.hydra import CONFIG_DIR

ABLATION_DIR = CONFIG_DIR / "ablation"
SHARED = "_sweep"  # the shared part of every ablation (files starting with "_" are not ablations)
SEED = "seed"
VARIANT = "ablation/variant"


def list_ablations() -> list[str]:
    return sorted(p.stem for p in ABLATION_DIR.glob("*.yaml") if not p.name.startswith("_"))


def check_name(name: str) -> str:
    if name not in list_ablations():
        raise ConfigError(f"unknown ablation {name!r}: choose one of {', '.join(list_ablations())}")
    return name


def ablation_config(name: str, overrides: Sequence[str] = ()) -> Any:
    """The composed train config of `+ablation=<name>` including the `hydra` node (sweep dir, grid, launcher)."""
    from models.utils.hydra import compose as compose_config

    check_name(name)
    return compose_config([f"+ablation={name}", *overrides], hydra_node=True)


def grid(name: str, overrides: Sequence[str] = ()) -> list[list[str]]:
    """The jobs of `python scripts/train.py -m +ablation=<name> <overrides>`, each a list of `key=value` overrides,
    in launch order: the grid's `hydra.sweeper.params` with the command line's task overrides on top, expanded
    exactly as Hydra's basic sweeper does (a command-line `seed=0` replaces the grid's seeds)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    params = ablation_config(name).hydra.sweeper.params or {}
    task = [o for o in overrides if not o.lstrip("+~").startswith("hydra")]
    parsed = OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in params.items()] + task)
    return BasicSweeper.split_arguments(parsed, None)[0]


def sweep_dir(name: str, overrides: Sequence[str] = ()) -> Path:
    return Path(str(ablation_config(name, overrides).hydra.sweep.dir))


@functools.lru_cache(maxsize=1)
def noise_keys() -> tuple[str, ...]:
    """Override keys that name neither a run dir nor a configuration (read from `_sweep.yaml`, the one source)."""
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(ABLATION_DIR / f"{SHARED}.yaml")
    keys = OmegaConf.select(cfg, "hydra.job.config.override_dirname.exclude_keys", default=[])
    return tuple(k for k in keys if k != VARIANT)


def parse_overrides(overrides: Iterable[str]) -> dict[str, str]:
    """`["+model.head=gap", "seed=0"]` -> {"model.head": "gap", "seed": "0"} (prefixes +, ++, ~ dropped)."""
    out = {}
    for item in overrides:
        key, _, value = str(item).partition("=")
        out[key.lstrip("+~")] = value
    return out


def job_identity(overrides: Iterable[str], drop_seed: bool = False) -> dict[str, str]:
    """What identifies a job of a grid: its overrides without the noise keys (and without the seed if asked)."""
    noise = set(noise_keys()) | ({SEED} if drop_seed else set())
    return {k: v for k, v in parse_overrides(overrides).items() if k not in noise}


def _num_classes(data: Any) -> int:
    """Classes a job will train on, without reading its data: the datamodule's fixed count (digits, CIFAR) or the
    configured class subset; an ImageFolder tree without one is taken as ImageNet's 1000."""
    if data.get("classes"):
        return len(data.classes)
    if data.get("num_classes_subset"):
        return int(data.num_classes_subset)
    if str(data.get("name", "")).startswith("cifar"):
        return 100 if data.name == "cifar100" else 10
    from hydra.utils import get_class

    fixed = getattr(get_class(data._target_), "num_classes", None)
    return fixed if isinstance(fixed, int) else 1000


def planned(name: str, job: Sequence[str]) -> dict[str, Any]:
    """A job that has not run, as results.json keys: its model knobs, input size and complexity from the accounting
    code (`models.complexity.profile`), so a report shows what each missing row would train."""
    from omegaconf import OmegaConf

    from models.complexity import profile
    from models.presets import build, get_spec

    cfg = ablation_config(name, job)
    knobs = OmegaConf.to_container(cfg.model, resolve=True)
    assert isinstance(knobs, dict)
    if knobs.get("num_classes") is None:
        knobs["num_classes"] = _num_classes(cfg.data)
    size = int(cfg.data.image_size)
    spec = get_spec(knobs)
    out: dict[str, Any] = {"model": knobs.get("name"), "data/image_size": size,
                           **{f"model/{k}": v for k, v in spec.config().items()}}
    if cfg.data.get("name"):
        out["data"] = str(cfg.data.name)
    try:
        spec.check_input_size(size)
    except ConfigError:  # it will fail when it runs; the report still shows its knobs
        return out
    return out | profile(build(spec), size, spec.in_channels).summary()
