"""The model zoo: one generic VGG/ResNet network (spec, layers, network), named presets and exact complexity
accounting. Training, analysis and speed code live in the sub-packages `models.train`, `models.analysis` and
`models.bench`; `models.utils` holds what they share.

The names below are imported lazily (PEP 562): `from models.errors import ConfigError` or `from models.spec import
knob_names` do not pull in torch, so an entry point can report a bad command line in about a second.
"""

from __future__ import annotations

import importlib
from typing import Any

from models.errors import ConfigError

_LAZY = {"Net": "models.network", "PRESETS": "models.presets", "Preset": "models.presets", "build": "models.presets",
         "get_preset": "models.presets", "get_spec": "models.presets", "list_presets": "models.presets",
         "NetSpec": "models.spec", "knob_names": "models.spec", "profile": "models.complexity"}

__all__ = [
    "PRESETS",
    "ConfigError",
    "Net",
    "NetSpec",
    "Preset",
    "build",
    "get_preset",
    "get_spec",
    "knob_names",
    "list_presets",
    "profile",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'models' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
