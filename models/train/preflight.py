"""The checks of a composed config that need neither torch nor the data: scripts/train.py runs them before torch and
Lightning load (~7 s of imports on a 2-core box), so a bad number on the command line is one line in about a second.
They are the same functions `train()` calls while building the run; checks that need the data (its classes, its
files) or a GPU query run there only."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf

from models.spec import NetSpec
from models.train.config import TrainerSettings
from models.train.graphs import check_graph_settings
from models.train.keys import check_keys
from models.train.optim import OptimConfig


def preflight(cfg: DictConfig) -> None:
    """Raise the ConfigError `train(cfg)` would raise for any key's value (models.train.keys), then for the
    trainer, optimizer and model settings together."""
    check_keys(cfg)
    settings = TrainerSettings.from_cfg(cfg)
    check_graph_settings(cfg.get("compile", False), settings.kwargs, settings.on_cuda)
    OptimConfig(**_plain(cfg.get("optim")))
    knobs = _plain(cfg.get("model"))
    spec = NetSpec().replace(**{k: v for k, v in knobs.items() if k not in ("name", "num_classes")})
    size = (cfg.get("data") or {}).get("image_size")
    if isinstance(size, int) and not isinstance(size, bool):
        spec.check_input_size(size)


def _plain(node: Any) -> dict[str, Any]:
    out = OmegaConf.to_container(node, resolve=True) if node is not None else {}
    assert isinstance(out, dict)
    return out
