"""Datamodules: the built-in digits set, CIFAR-10/100, and image folders (ImageFolder, Tiny-ImageNet, Imagenette).

`build_datamodule(cfg)` is the one factory: `cfg` is a `configs/data/<name>.yaml` mapping (`_target_` plus the
constructor's keyword arguments, `data.<key>` overrides included).
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping
from typing import Any

from models.errors import ConfigError


def _target_class(target: str) -> type:
    module, _, name = target.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        raise ConfigError(f"data._target_={target!r} is not a datamodule class: pick a dataset with "
                          "data=<digits|cifar10|cifar100|imagefolder|tinyimagenet|imagenette>") from None


def build_datamodule(cfg: Mapping[str, Any], **settings: Any) -> Any:
    """Instantiate `cfg["_target_"]`; keys its constructor does not take are an error, not silently ignored.
    `settings`: what the run decides rather than the user (e.g. `pad_eval` for CUDA graphs), on top of `cfg`."""
    from omegaconf import DictConfig, OmegaConf

    if isinstance(cfg, DictConfig):
        missing = sorted(k for k in cfg if OmegaConf.is_missing(cfg, k))
        if missing:
            key = missing[0]
            what = "<folder holding train/ and val/>, e.g. data.root=/data/imagenette2-160" if key == "root" else \
                "<value>"
            raise ConfigError(f"data.{key} is not set: add data.{key}={what} to the command")
        cfg = OmegaConf.to_container(cfg, resolve=True)
    kwargs = {**dict(cfg), **settings}
    target = kwargs.pop("_target_", None)
    if not target:
        raise ConfigError("data._target_ is missing: pick a dataset with "
                          "data=<digits|cifar10|cifar100|imagefolder|...>")
    cls = _target_class(str(target))
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self"}
    unknown = sorted(set(kwargs) - accepted)
    if unknown:
        from data.keys import unknown_key

        raise unknown_key(unknown[0], str(target))
    return cls(**kwargs)  # called directly, not via hydra.utils.instantiate: its ConfigErrors stay unwrapped


__all__ = ["build_datamodule"]
