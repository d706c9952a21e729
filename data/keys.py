"""Every `data.<key>` each datamodule takes, declared once (types from models.utils.declare, checked by pydantic).

One dataclass per datamodule: its fields are the constructor's keyword arguments, their hints what each accepts,
their defaults the constructor's. The datamodules check their arguments against it (`check_args`) and the run's
config walk (models/train/keys.py) checks `data.*` against the declaration of `data._target_`, before torch loads:
this module imports neither torch nor a datamodule. A datamodule of your own declares nothing here; its keys pass
through to it, and the ones every datamodule shares (`Common`) are still checked.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, fields
from typing import Any, Literal

from models.errors import ConfigError
from models.utils.declare import Count, Positive, Text, check, interval

Auto = Literal["auto"]
LAYOUTS = ("imagefolder", "tinyimagenet", "imagenette")
IMAGENETTE_SIZES = ("160px", "320px", "full")


@dataclass
class Common:
    """What every datamodule takes (pad_eval is the run's own setting, not a key)."""

    image_size: Positive = 32  # the model says how small it can go (NetSpec.check_input_size)
    batch_size: Positive = 64  # per device
    num_workers: Count | Auto = "auto"
    seed: Count = 0
    device_resident: bool | Auto = "auto"


@dataclass
class Digits(Common):
    val_size: Positive = 270
    test_size: Positive = 270
    augment: bool = False


@dataclass
class CIFAR(Common):
    name: Literal["cifar10", "cifar100"] = "cifar10"
    root: Text | None = None
    download: bool = False
    verify: bool = True
    val_size: Count = 5000  # images of train held out for validation (0: the test split validates)
    augment: bool = True
    batch_size: Positive = 128


@dataclass
class Folder(Common):
    root: Text | None = None
    layout: Literal[LAYOUTS] = "imagefolder"  # type: ignore[valid-type]
    classes: list[Text] | None = None
    num_classes_subset: Positive | None = None
    val_size: Positive | interval(gt=0, lt=1) | Auto | Literal[0] = "auto"  # type: ignore[valid-type]
    download: bool = False
    verify: bool = True
    cache: bool = False
    cache_dir: Text | None = None
    imagenette_size: Literal[IMAGENETTE_SIZES] = "160px"  # type: ignore[valid-type]
    name: Text | None = None
    image_size: Positive = 224


DECLARED: dict[str, type] = {"data.digits.DigitsDataModule": Digits, "data.cifar.CIFARDataModule": CIFAR,
                             "data.folder.ImageFolderDataModule": Folder}


def declaration(target: str | None) -> type:
    """The declaration of a datamodule class (its dotted path); `Common` for one declared elsewhere."""
    return DECLARED.get(str(target), Common)


def hints(declared: type) -> dict[str, Any]:
    return typing.get_type_hints(declared, include_extras=True)


def names(declared: type) -> list[str]:
    return [f.name for f in fields(declared)]


def unknown_key(key: str, target: str) -> ConfigError:
    """The one message for a data key the datamodule does not take."""
    taken = ", ".join(sorted(names(declaration(target))))
    return ConfigError(f"data.{key} is not a setting of this dataset (data._target_={target}): drop it; it takes "
                       f"{taken}")


def check_args(declared: type, values: dict[str, Any]) -> None:
    """Check a datamodule's constructor arguments (its `locals()`) against its declaration, one line per failure."""
    types_ = hints(declared)
    for name in names(declared):
        if name in values:
            check(f"data.{name}", values[name], types_[name])
