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


def check_measure(cfg: DictConfig) -> None:
    """Refuse a bad device, precision or batch size before anything is counted or timed."""
    from models.bench.timing import resolve_device, resolve_precision

    resolve_precision(cfg.precision, resolve_device(str(cfg.device)))
    for key in ("batch_size", "repeats"):
        value = cfg.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{key}={value!r} must be a positive integer")


@hydra.main(config_path="../configs", config_name="complexity", version_base="1.3")
def main(cfg: DictConfig) -> None:
    from models.analysis.compare import compare, measure_rows, write_outputs
    from models.analysis.tables import complexity_markdown, layer_markdown

    if cfg.measure:
        check_measure(cfg)
    entries = [OmegaConf.to_container(cfg.model)] if cfg.get("model") else OmegaConf.to_container(cfg.models)
    rows = compare(entries, cfg.input_size, cfg.num_classes)
    if cfg.measure:
        measure_rows(rows, cfg.batch_size, str(cfg.device), str(cfg.precision), bool(cfg.channels_last),
                     cfg.repeats, cfg.warmup, log=lambda m: print(m, file=sys.stderr, flush=True))
    print(complexity_markdown(rows))
    if cfg.layers:
        for row in rows:
            print(layer_markdown(row))
    out = cfg.out or ("reports/complexity" if cfg.measure else None)
    if out:
        for path in write_outputs(rows, out, str(cfg.name)):
            print(f"wrote {path}")


if __name__ == "__main__":
    main()
