"""Named presets: VGG and ResNet as values of the generic network's knobs.

ImageNet presets (224x224, 1000 classes) equal torchvision's models to the parameter and the multiply-add
(`tests/test_presets.py` checks them against torchvision and copies its weights in to compare outputs):

    model      params        MACs (= torchvision "GFLOPS", He et al. "FLOPs")
    vgg16      138,357,544   15,470,264,320   (Simonyan & Zisserman 2015: 138M)
    vgg19      143,667,240   19,632,062,464   (He et al. 2016, Table 1 / Fig. 3: 19.6 billion FLOPs)
    resnet18    11,689,512    1,814,073,344   (He et al. Table 1: 1.8 x 10^9)
    resnet34    21,797,672    3,663,761,408   (3.6 x 10^9)
    resnet50    25,557,032    4,089,184,256   (3.8 x 10^9 in the paper: stride on the 1x1 conv; torchvision's v1.5
                                               puts it on the 3x3, as here)

CIFAR presets (32x32, 10 classes) follow He et al. Sec. 4.2: 6n+2 layers, widths 16/32/64, option A shortcuts.
Table 6 gives 0.27M / 0.46M / 0.66M / 0.85M / 1.7M params for ResNet-20/32/44/56/110 (we count 269,722 / 464,154 /
658,586 / 853,018 / 1,727,962) and test errors 8.75 / 7.51 / 7.17 / 6.97 / 6.43 %. `vgg*_cifar` are the VGGs of
common CIFAR repos: conv with bias + BN, five 2x2 max-pools down to 1x1, one Linear 512 -> classes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from torch import nn

from models.errors import ConfigError
from models.network import Net
from models.spec import NetSpec


@dataclass(frozen=True)
class Preset:
    spec: NetSpec
    input_size: int  # the resolution the preset is designed for (224 ImageNet, 32 CIFAR)
    reference: str  # where its numbers come from; "torchvision.models.<fn>" where torchvision has it


VGG_DEPTHS = {11: (1, 1, 2, 2, 2), 13: (2, 2, 2, 2, 2), 16: (2, 2, 3, 3, 3), 19: (2, 2, 4, 4, 4)}
RESNET_DEPTHS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}
CIFAR_DEPTHS = (20, 32, 44, 56, 110)

_VGG = dict(stem="vgg", block="plain", residual=False, downsample="maxpool", widths=(64, 128, 256, 512, 512),
            conv_bias=True)
_IMAGENET_VGG = dict(_VGG, head="fc", head_pool=7, head_hidden=(4096, 4096))
_CIFAR_VGG = dict(_VGG, head="fc", head_pool=1, head_hidden=(), batch_norm=True, num_classes=10)
_RESNET = dict(stem="resnet", stem_width=64, shortcut="B", downsample="stride", widths=(64, 128, 256, 512), head="gap")
# CIFAR ResNets: if switched to head=fc, the classic CIFAR-VGG classifier (two hidden layers of 512).
_CIFAR_RESNET = dict(stem="cifar", stem_width=16, block="basic", shortcut="A", downsample="stride",
                     widths=(16, 32, 64), head="gap", head_pool=1, head_hidden=(512, 512), num_classes=10)


def _presets() -> dict[str, Preset]:
    out: dict[str, Preset] = {}
    for d, depths in VGG_DEPTHS.items():
        for bn in (False, True):
            name = f"vgg{d}" + ("_bn" if bn else "")
            spec = NetSpec(**_IMAGENET_VGG, depths=depths, batch_norm=bn)
            out[name] = Preset(spec, 224, f"torchvision.models.{name}")
    for d, depths in RESNET_DEPTHS.items():
        block = "basic" if d < 50 else "bottleneck"
        out[f"resnet{d}"] = Preset(NetSpec(**_RESNET, block=block, depths=depths), 224, f"torchvision.models.resnet{d}")
    for d in (18, 34):  # He et al. Table 2 / Fig. 4: the same layers without shortcuts
        out[f"plain{d}"] = Preset(NetSpec(**_RESNET, block="basic", depths=RESNET_DEPTHS[d], residual=False), 224,
                                  "He et al. 2016 Table 2 (resnet without shortcuts)")
    for d in CIFAR_DEPTHS:
        n = (d - 2) // 6
        for residual, family in ((True, "resnet"), (False, "plain")):
            out[f"{family}{d}"] = Preset(NetSpec(**_CIFAR_RESNET, depths=(n, n, n), residual=residual), 32,
                                         "He et al. 2016 Sec. 4.2, Table 6 / Fig. 6")
    # He et al. 2016b ("Identity Mappings in Deep Residual Networks"): ResNet-164, the CIFAR bottleneck net (18 blocks
    # a stage, outputs 64/128/256, projections where the shape changes), and both CIFAR nets with pre-activation
    out["resnet164"] = Preset(NetSpec(**{**_CIFAR_RESNET, "block": "bottleneck", "shortcut": "B"}, depths=(18, 18, 18)),
                              32, "He et al. 2016b Table 3 (ResNet-164, original units)")
    for d in (110, 164):
        out[f"preact_resnet{d}"] = Preset(out[f"resnet{d}"].spec.replace(preact=True), 32,
                                          f"He et al. 2016b Table 3 (pre-activation ResNet-{d})")
    for d, depths in VGG_DEPTHS.items():
        out[f"vgg{d}_cifar"] = Preset(NetSpec(**_CIFAR_VGG, depths=depths), 32, "common CIFAR VGG (conv+bias+BN, 1 FC)")
    return out


PRESETS: dict[str, Preset] = _presets()


def list_presets() -> list[str]:
    return list(PRESETS)


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise ConfigError(f"unknown model preset {name!r}: choose one of {', '.join(PRESETS)}")
    return PRESETS[name]


def get_spec(name_or_spec: str | NetSpec | Mapping[str, Any], **overrides: Any) -> NetSpec:
    """A preset name, a spec, or a mapping (optionally with `name`: a preset to start from) plus knob overrides."""
    if isinstance(name_or_spec, NetSpec):
        return name_or_spec.replace(**overrides)
    if isinstance(name_or_spec, str):
        return get_preset(name_or_spec).spec.replace(**overrides)
    if isinstance(name_or_spec, Mapping):
        knobs = dict(name_or_spec)
        base = knobs.pop("name", None)
        knobs.update(overrides)
        return (get_preset(base).spec if base else NetSpec()).replace(**knobs)
    raise ConfigError("model must be a preset name, a NetSpec or a mapping of knobs, not "
                      f"{type(name_or_spec).__name__}")


def build(name_or_spec: str | NetSpec | Mapping[str, Any], **overrides: Any) -> nn.Module:
    """Build a network: `build("resnet34", head="fc")`, `build("vgg16", stem="resnet", num_classes=10)`."""
    return Net(get_spec(name_or_spec, **overrides))


KNOBS_CONFIG = "_knobs"  # configs/model/_knobs.yaml: every knob at its NetSpec default, under every preset


def knobs_config() -> dict[str, Any]:
    """`model/_knobs.yaml`: every knob at its default (so any `model.<knob>=...` overrides any preset), num_classes
    null (the dataset's)."""
    knobs = {k: v for k, v in NetSpec().config().items() if k not in ("depth", "width")}
    return {**knobs, "num_classes": None}


def preset_config(name: str) -> dict[str, Any]:
    """The Hydra `model/<name>.yaml` content: the preset's name plus the knobs where it differs from the defaults
    (`_knobs.yaml` below it holds the rest), so that a new knob with a default touches no preset file."""
    defaults = knobs_config()
    knobs = {k: v for k, v in get_preset(name).spec.config().items()
             if k not in ("depth", "width", "num_classes") and v != defaults[k]}
    return {"name": name, **knobs}


def preset_texts() -> dict[str, str]:
    """file name -> content of every configs/model/*.yaml (what `make regen` writes)."""
    import yaml

    def value(v: Any) -> str:  # lists inline ([3, 3, 3]); scalars as YAML writes them (null, true, quoted strings)
        return "[" + ", ".join(map(str, v)) + "]" if isinstance(v, list) else yaml.safe_dump(v).splitlines()[0]

    def dump(values: dict[str, Any]) -> str:  # one key per line
        return "".join(f"{k}: {value(v)}\n" for k, v in values.items())

    out = {f"{KNOBS_CONFIG}.yaml": "# Generated from models/spec.py by `make regen`: every knob at its NetSpec "
           "default, under every preset\n# (configs/model/<preset>.yaml lists only what differs). Edit NetSpec, not "
           "this.\n" + dump(knobs_config())}
    for name, preset in PRESETS.items():
        out[f"{name}.yaml"] = (f"# Generated from models/presets.py by `make regen`; edit the preset, not this.\n"
                               f"# Designed input size: {preset.input_size}. Reference: {preset.reference}.\n"
                               f"# The knobs it leaves out are at their defaults (_knobs.yaml).\n"
                               "defaults:\n  - _knobs\n  - _self_\n\n" + dump(preset_config(name)))
    return out


def write_preset_configs(directory: str) -> list[str]:
    """Regenerate configs/model/*.yaml from PRESETS and NetSpec (a test checks the committed files are current)."""
    import pathlib

    out = pathlib.Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in preset_texts().items():
        (out / name).write_text(text)
        written.append(str(out / name))
    return written


if __name__ == "__main__":
    import sys

    print("\n".join(write_preset_configs(sys.argv[1] if len(sys.argv) > 1 else "configs/model")))
