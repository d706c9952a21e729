"""Datamodules: the built-in digits set, CIFAR-10/100, and image folders (ImageFolder, Tiny-ImageNet, Imagenette).

``build_datamodule(name, **kwargs)`` is the entry point for configs (``data.<key>`` overrides become kwargs).
"""

from __future__ import annotations

import inspect
from typing import Any

from data.cifar import CIFARDataModule
from data.device import DeviceLoader, crop_flip
from data.digits import DigitsDataModule
from data.folder import ImageFolderDataModule
from models.errors import ConfigError

DATAMODULES: dict[str, type] = {
    "digits": DigitsDataModule,
    "cifar10": CIFARDataModule,
    "cifar100": CIFARDataModule,
    "imagefolder": ImageFolderDataModule,
    "tinyimagenet": ImageFolderDataModule,
    "imagenette": ImageFolderDataModule,
}
# The registry name fixes this constructor argument.
_NAME_ARG = {
    "cifar10": "name",
    "cifar100": "name",
    "imagefolder": "layout",
    "tinyimagenet": "layout",
    "imagenette": "layout",
}


def build_datamodule(name: str, /, **kwargs: Any) -> Any:
    """Instantiate the datamodule registered as ``name`` with config kwargs; unknown names/keys are ConfigErrors."""
    if name not in DATAMODULES:
        raise ConfigError(f"data.name={name!r} is unknown: set data.name to one of {', '.join(DATAMODULES)}")
    cls = DATAMODULES[name]
    arg = _NAME_ARG.get(name)
    if arg and kwargs.get(arg, name) != name:
        raise ConfigError(f"data.{arg}={kwargs[arg]!r} contradicts data.name={name}: remove data.{arg}")
    if arg:
        kwargs[arg] = name
    valid = [p for p in inspect.signature(cls).parameters if p != "self"]
    unknown = sorted(set(kwargs) - set(valid))
    if unknown:
        raise ConfigError(f"data.{unknown[0]} is not a setting of {name}: remove it; valid keys: {', '.join(valid)}")
    return cls(**kwargs)


__all__ = [
    "DATAMODULES",
    "CIFARDataModule",
    "DeviceLoader",
    "DigitsDataModule",
    "ImageFolderDataModule",
    "build_datamodule",
    "crop_flip",
]
