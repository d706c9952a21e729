"""Params, MACs and FLOPs of one model or a comparison, with the share held by stem / stages / head.

Units: MACs = multiply-accumulates (= torchvision "GFLOPS", = He et al. "FLOPs"), FLOPs = 2 x MACs.
See configs/complexity.yaml for the options.
"""

from __future__ import annotations

import _cli  # noqa: F401  (repo on sys.path; one-line errors)
import hydra
from omegaconf import DictConfig, OmegaConf

from models.analysis.compare import compare, write_outputs
from models.analysis.tables import complexity_markdown, layer_markdown


@hydra.main(config_path="../configs", config_name="complexity", version_base="1.3")
def main(cfg: DictConfig) -> None:
    entries = [OmegaConf.to_container(cfg.model)] if cfg.get("model") else OmegaConf.to_container(cfg.models)
    rows = compare(entries, cfg.input_size, cfg.num_classes)
    print(complexity_markdown(rows))
    if cfg.layers:
        for row in rows:
            print(layer_markdown(row))
    if cfg.out:
        for path in write_outputs(rows, cfg.out):
            print(f"wrote {path}")


if __name__ == "__main__":
    main()
