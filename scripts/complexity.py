"""Params, MACs and FLOPs of one model or a comparison, with the share held by stem / stages / head; with
measure=true also the measured time of every part and layer (FLOPs are not time) and two figures.

Units: MACs = multiply-accumulates (= torchvision "GFLOPS", = He et al. "FLOPs"), FLOPs = 2 x MACs.
See configs/complexity.yaml for the options.
"""

from __future__ import annotations

import sys

import _cli  # noqa: F401  (repo on sys.path; one-line errors)
import hydra
from omegaconf import DictConfig, OmegaConf

from models.errors import ConfigError


def check_options(cfg: DictConfig) -> None:
    """Refuse a bad device, precision, batch size or memory budget before anything is counted or timed."""
    from models.timing import resolve_device, resolve_precision

    if cfg.measure:
        resolve_precision(cfg.precision, resolve_device(str(cfg.device)))
    for key in ("batch_size", "repeats", "memory_batch"):
        value = cfg.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{key}={value!r} must be a positive integer")
    if isinstance(cfg.gib, bool) or not isinstance(cfg.gib, (int, float)) or cfg.gib <= 0:
        raise ConfigError(f"gib={cfg.gib!r} must be a positive number of GiB")


@hydra.main(config_path="../configs", config_name="complexity", version_base="1.3")
def main(cfg: DictConfig) -> None:
    from models.analysis.compare import (
        compare,
        complexity_markdown,
        costs_markdown,
        layer_markdown,
        measure_rows,
        write_outputs,
    )

    check_options(cfg)
    entries = [OmegaConf.to_container(cfg.model)] if cfg.get("model") else OmegaConf.to_container(cfg.models)
    rows = compare(entries, cfg.input_size, cfg.num_classes)
    if cfg.measure:
        measure_rows(rows, cfg.batch_size, str(cfg.device), str(cfg.precision), bool(cfg.channels_last),
                     cfg.repeats, cfg.warmup, log=lambda m: print(m, file=sys.stderr, flush=True))
    print(complexity_markdown(rows))
    print(costs_markdown(rows, int(cfg.memory_batch), float(cfg.gib), str(cfg.precision)))
    if cfg.layers:
        for row in rows:
            print(layer_markdown(row))
    out = cfg.out or ("reports/complexity" if cfg.measure else None)
    if out:
        for path in write_outputs(rows, out, str(cfg.name), int(cfg.memory_batch), float(cfg.gib)):
            print(f"wrote {path}")


if __name__ == "__main__":
    main()
