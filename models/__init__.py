"""Modular VGG/ResNet networks, presets and exact complexity accounting."""

from models.errors import ConfigError
from models.network import Net
from models.presets import PRESETS, Preset, build, get_preset, get_spec, list_presets
from models.spec import NetSpec, knob_names

__all__ = ["ConfigError", "Net", "NetSpec", "PRESETS", "Preset", "build", "get_preset", "get_spec", "knob_names",
           "list_presets"]
