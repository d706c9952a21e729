"""Why network A costs what it does versus network B, one design choice at a time: the roadmap (A, then one choice
changed at a time, to B) and each choice's Shapley value for params, MACs and training memory (and measured time),
summing exactly to B - A. See configs/explain.yaml for the options and models/analysis/explain.py for the method.

    python scripts/explain.py a=vgg16 b=resnet34
    python scripts/explain.py a=vgg16_cifar b=resnet20 measure=true out=reports/explain_cifar
"""

from __future__ import annotations

import sys

import _cli  # noqa: F401  (repo on sys.path; one-line errors)
import hydra
from omegaconf import DictConfig, OmegaConf

from models.errors import ConfigError


def _entry(cfg: DictConfig, key: str) -> object:
    if OmegaConf.is_missing(cfg, key):
        raise ConfigError(f"{key} is not set: name the two networks, e.g. python scripts/explain.py a=vgg16 b=resnet34")
    value = cfg[key]
    return OmegaConf.to_container(value) if isinstance(value, DictConfig) else str(value)


def _time_options(cfg: DictConfig) -> dict | None:
    if cfg.measure in (False, None, "false"):
        return None
    if cfg.measure not in (True, "true", "all"):
        raise ConfigError(f"measure={cfg.measure!r} is not valid: choose false, true (the roadmap) or all")
    from models.timing import resolve_device, resolve_precision

    resolve_precision(cfg.precision, resolve_device(str(cfg.device)))
    return {"device": str(cfg.device), "precision": str(cfg.precision), "batch_size": int(cfg.batch_size),
            "repeats": int(cfg.repeats), "all": cfg.measure == "all"}


@hydra.main(config_path="../configs", config_name="explain", version_base="1.3")
def main(cfg: DictConfig) -> None:
    from models.analysis.explain import explain
    from models.analysis.explain_grid import write_grid
    from models.analysis.explain_report import markdown_text, write

    if isinstance(cfg.memory_batch, bool) or not isinstance(cfg.memory_batch, int) or cfg.memory_batch < 1:
        raise ConfigError(f"memory_batch={cfg.memory_batch!r} must be a positive integer")
    order = [str(o) for o in cfg.order] if cfg.order else None
    e = explain(_entry(cfg, "a"), _entry(cfg, "b"), cfg.input_size, cfg.num_classes, order, int(cfg.memory_batch),
                _time_options(cfg))
    print(markdown_text(e))
    out = cfg.out or f"reports/explain/{e.a.label}_{e.b.label}".replace(" ", "_")
    for path in write(e, out).values():
        print(f"wrote {path}")
    if cfg.grid:
        for path in write_grid(e, str(cfg.grid), str(cfg.grid_base or "_sweep"), _entry(cfg, "a")):
            print(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(main())
