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

from pathlib import Path
from typing import Any, Iterable, Sequence

from models.errors import ConfigError

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
ABLATION_DIR = CONFIG_DIR / "ablation"
SHARED = "_sweep"  # the shared part of every ablation (files starting with "_" are not ablations)
SEED = "seed"
VARIANT = "ablation/variant"


def list_ablations() -> list[str]:
    return sorted(p.stem for p in ABLATION_DIR.glob("*.yaml") if not p.name.startswith("_"))


def list_variants() -> list[str]:
    return sorted(p.stem for p in (ABLATION_DIR / "variant").glob("*.yaml"))


def check_name(name: str) -> str:
    if name not in list_ablations():
        raise ConfigError(f"unknown ablation {name!r}: choose one of {', '.join(list_ablations())}")
    return name


def compose(name: str, overrides: Sequence[str] = ()) -> Any:
    """The composed train config of `+ablation=<name>` including the `hydra` node (sweep dir, grid, launcher)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    check_name(name)
    if GlobalHydra.instance().is_initialized():  # e.g. inside a running Hydra job
        GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        return hydra_compose("train", overrides=[f"+ablation={name}", *overrides], return_hydra_config=True)


def grid(name: str, overrides: Sequence[str] = ()) -> list[list[str]]:
    """The jobs of the ablation, each a list of `key=value` overrides, in launch order (Hydra's basic sweeper)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    params = compose(name, overrides).hydra.sweeper.params or {}
    parsed = OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in params.items()])
    return BasicSweeper.split_arguments(parsed, None)[0]


def sweep_dir(name: str, overrides: Sequence[str] = ()) -> Path:
    return Path(str(compose(name, overrides).hydra.sweep.dir))


def noise_keys() -> list[str]:
    """Override keys that name neither a run dir nor a configuration (read from `_sweep.yaml`, the one source)."""
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(ABLATION_DIR / f"{SHARED}.yaml")
    keys = OmegaConf.select(cfg, "hydra.job.config.override_dirname.exclude_keys", default=[])
    return [k for k in keys if k != VARIANT]


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


def pin_local_gpu(job_num: int | None = None) -> str | None:
    """Under `hydra/launcher=local_gpus` (submitit's local executor shows every job the same `gpus_per_node` GPUs),
    keep GPU `job_num % visible` only, so a batch of jobs spreads one per GPU. Call before CUDA is initialised.
    Returns the GPU kept, or None when not running under submitit's local executor."""
    import os

    visible = [g for g in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if g]
    if os.environ.get("SUBMITIT_EXECUTOR") != "local" or len(visible) < 2:
        return None
    if job_num is None:
        from hydra.core.hydra_config import HydraConfig

        job_num = int(HydraConfig.get().job.num)
    os.environ["CUDA_VISIBLE_DEVICES"] = visible[job_num % len(visible)]
    return os.environ["CUDA_VISIBLE_DEVICES"]
