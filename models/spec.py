"""`NetSpec`: every architectural choice of the generic network, each knob declared once.

A knob is a field of `NetSpec`: its type hint is what it takes (checked by pydantic, models.utils.declare), its
default the network it builds when unset, and its metadata a one-line help, the design choice it belongs to (what
explain.py switches as one) and when the network does not use it. Everything else is derived from these fields:
the `model.*` config schema (models/train/keys.py), explain's choice groups and canonical form, the knob table in
docs/config_keys.md, the valid-knob list of error messages, the property tests' strategies. Adding a knob is one
field here, the layer code that reads it (models/layers.py) and, for an ablation, a grid file.

VGG and ResNet are just values of these knobs (see `models.presets`); the ablation axes are the knobs themselves.
"""

from __future__ import annotations

import dataclasses
import itertools
import typing
from dataclasses import dataclass, fields
from typing import Any, Literal

from models.errors import ConfigError
from models.utils.declare import Positive, check_fields, choices, describe, interval

Stem = Literal["vgg", "resnet", "cifar"]  # vgg: none (full resolution); resnet: 7x7/2 conv + 3x3/2 max-pool; cifar: 3x3
Block = Literal["plain", "basic", "bottleneck"]  # plain = one VGG conv layer; basic/bottleneck = He et al.'s blocks
Shortcut = Literal["A", "B"]  # A: zero-padded identity (no params); B: 1x1 projection when the shape changes
Downsample = Literal["maxpool", "stride"]  # maxpool: 2x2 pool after each stage (VGG); stride: stages 2.. start strided
Head = Literal["fc", "gap"]  # fc: pool to head_pool^2, flatten, Linear-ReLU-Dropout layers, Linear; gap: GAP + Linear
STEMS, BLOCKS, SHORTCUTS, DOWNSAMPLES, HEADS = (choices(t) for t in (Stem, Block, Shortcut, Downsample, Head))


def knob(default: Any, help: str, group: str, unused_when: dict[str, Any] | None = None) -> Any:
    """A NetSpec field: its default, one line of help, its design-choice group, and the values of other knobs under
    which the network does not use it (explain.py compares networks without such knobs)."""
    return dataclasses.field(default=default, metadata={"help": help, "group": group, "unused_when": unused_when or {}})


@dataclass(frozen=True)
class NetSpec:
    """A network = stem + stages of blocks + head. Each field is one knob (`model.<field>` on the command line)."""

    stem: Stem = knob("resnet", "the layers before the first stage: vgg none, resnet 7x7/2 conv + 3x3/2 max-pool, "
                      "cifar one 3x3 conv", "stem")
    stem_width: Positive = knob(64, "output channels of the resnet or cifar stem", "stem", {"stem": "vgg"})
    block: Block = knob("basic", "plain: one 3x3 conv (VGG); basic: two 3x3 convs; bottleneck: 1x1-3x3-1x1 (x4 out)",
                        "body_layout")
    residual: bool = knob(True, "skip connections around each block (false: He et al.'s plain nets)", "residual")
    shortcut: Shortcut = knob("B", "where a block changes shape: A zero-padded identity, B 1x1 projection",
                              "residual", {"residual": False})
    downsample: Downsample = knob("stride", "maxpool: 2x2 pool after each stage (VGG); stride: stages 2.. start "
                                  "with a stride-2 block (ResNet)", "downsampling")
    depths: tuple[Positive, ...] = knob((2, 2, 2, 2), "blocks per stage (a plain block is one conv)", "body_layout")
    widths: tuple[Positive, ...] = knob((64, 128, 256, 512), "channels per stage (bottleneck outputs 4x)",
                                        "body_layout")
    head: Head = knob("gap", "fc: pool to head_pool^2, hidden Linear layers, Linear (VGG); gap: global average pool "
                      "+ one Linear (ResNet)", "head")
    head_pool: Positive = knob(7, "fc head: pool to head_pool x head_pool before flattening", "head",
                               {"head": "gap"})
    head_hidden: tuple[Positive, ...] = knob((4096, 4096), "fc head: widths of the hidden Linear layers", "head",
                                             {"head": "gap"})
    dropout: interval(ge=0, lt=1) = knob(0.5, "fc head: dropout after each hidden layer", "head",  # type: ignore
                                         {"head": "gap"})
    batch_norm: bool = knob(True, "BatchNorm after each conv", "normalisation")
    conv_bias: bool = knob(False, "convs carry a bias (torchvision's VGG keeps it even with BN; ResNet's do not)",
                           "normalisation")
    zero_init_residual: bool = knob(False, "zero the last BN gamma of each residual block (Goyal et al. 2017)",
                                    "residual", {"residual": False})
    preact: bool = knob(False, "pre-activation blocks (He et al. 2016, Identity Mappings): BN-ReLU before each conv, "
                        "no ReLU after the addition, one BN-ReLU before the head, a stem of its conv alone",
                        "preactivation")
    se: bool = knob(False, "Squeeze-and-Excitation (Hu et al. 2018) on each block's output branch, before the "
                    "addition: global pool, FC to C // se_reduction, ReLU, FC to C, sigmoid, scale",
                    "squeeze_excitation")
    se_reduction: Positive = knob(16, "SE: the squeeze width is channels // se_reduction (at least 1)",
                                  "squeeze_excitation", {"se": False})
    num_classes: Positive = knob(1000, "outputs of the classifier (the run sets it from the dataset)", "classes")
    in_channels: Positive = knob(3, "input image channels", "classes")

    def __post_init__(self) -> None:
        # Lists from YAML/CLI become tuples so specs stay hashable and comparable.
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, list):
                object.__setattr__(self, f.name, tuple(value))
        check_fields(self, "model")  # each knob against its declared type: one line naming it
        validate(self)

    @property
    def expansion(self) -> int:
        return 4 if self.block == "bottleneck" else 1

    @property
    def out_channels(self) -> int:
        """Channels of the last stage's output (what the head sees)."""
        return self.widths[-1] * self.expansion

    @property
    def depth(self) -> int:
        """Weighted layers on the main path, as in the models' names (VGG-16: 16, ResNet-20: 20); shortcuts excluded."""
        convs_per_block = {"plain": 1, "basic": 2, "bottleneck": 3}[self.block]
        stem = 0 if self.stem == "vgg" else 1
        head = 1 + (len(self.head_hidden) if self.head == "fc" else 0)
        return stem + convs_per_block * sum(self.depths) + head

    @property
    def downsampling_factor(self) -> int:
        """Total spatial reduction from input to the last stage's output."""
        stem = 4 if self.stem == "resnet" else 1
        stages = len(self.depths) if self.downsample == "maxpool" else len(self.depths) - 1
        return stem * 2**stages

    def min_input_size(self) -> int:
        """Smallest square input for which every pooling/strided layer still sees at least one pixel."""
        return self.downsampling_factor

    def check_input_size(self, size: int, key: str = "data.image_size") -> None:
        """`key` names the setting that chose the size (data.image_size for training, input_size for reports)."""
        if size < self.min_input_size():
            raise ConfigError(
                f"{key}={size} is too small for this model (stem={self.stem}, downsample={self.downsample}, "
                f"{len(self.depths)} stages reduce by {self.downsampling_factor}x): use {key}>="
                f"{self.min_input_size()} or fewer stages"
            )

    def knobs(self) -> dict[str, Any]:
        """Flat, loggable view (lists as tuples) plus the derived depth and base width."""
        out = dataclasses.asdict(self)
        out.update(depth=self.depth, width=self.widths[0])
        return out

    def config(self) -> dict[str, Any]:
        """`knobs()` with lists instead of tuples: what YAML, JSON, checkpoints and `model/<knob>` records hold."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.knobs().items()}

    def replace(self, **overrides: Any) -> NetSpec:
        unknown = sorted(set(overrides) - set(knob_names()))
        if unknown:
            raise ConfigError(f"unknown model knob {unknown[0]!r}: valid knobs are {', '.join(knob_names())}")
        return dataclasses.replace(self, **overrides)


def knob_names() -> list[str]:
    return [f.name for f in fields(NetSpec)]


def knob_help(name: str) -> dict[str, Any]:
    """A knob's declaration: its type hint, default, help, group and when it is unused."""
    f = {f.name: f for f in fields(NetSpec)}[name]
    return {"hint": typing.get_type_hints(NetSpec, include_extras=True)[name], "default": f.default,
            **f.metadata}


def choice_groups() -> dict[str, tuple[str, ...]]:
    """Design choice -> its knobs, in declaration order (what explain.py switches as one)."""
    groups: dict[str, list[str]] = {}
    for name in knob_names():
        groups.setdefault(knob_help(name)["group"], []).append(name)
    return {g: tuple(names) for g, names in groups.items()}


def unused_knobs(knobs: dict[str, Any]) -> list[str]:
    """The knobs a network with these values does not use (e.g. the FC head's widths under a GAP head)."""
    return [k for k in knob_names() if any(knobs.get(other) == value
                                           for other, value in knob_help(k)["unused_when"].items())]


def knob_table() -> str:
    """The knob table of docs/config_keys.md: every knob, what it takes, its default, its choice group, its help."""
    lines = ["| knob | takes | default | design choice | what it does |", "|---|---|---|---|---|"]
    for name in knob_names():
        k = knob_help(name)
        default = list(k["default"]) if isinstance(k["default"], tuple) else k["default"]
        unused = "; unused when " + ", ".join(f"{o}={v}" for o, v in k["unused_when"].items()) \
            if k["unused_when"] else ""
        lines.append(f"| `model.{name}` | {describe(k['hint'])} | `{default}` | {k['group']} | {k['help']}{unused} |")
    return "\n".join(lines)


def validate(spec: NetSpec) -> None:
    """Reject impossible combinations of knobs (each knob on its own: its declaration) naming the key and the fix."""
    if not spec.depths or len(spec.depths) != len(spec.widths):
        raise ConfigError(
            f"model.depths={list(spec.depths)} and model.widths={list(spec.widths)} must be non-empty lists of "
            "the same length (one entry per stage)"
        )
    if spec.preact and spec.block == "plain":
        raise ConfigError("model.preact=true needs model.block=basic or bottleneck (pre-activation reorders a "
                          "block's BN-ReLU-conv units; a plain block is one conv): set model.preact=false or change "
                          "model.block")
    if spec.preact and spec.zero_init_residual:
        raise ConfigError("model.zero_init_residual=true with model.preact=true: a pre-activation branch ends in a "
                          "conv, not a BN whose gamma could be zeroed: set one of them to false")
    if spec.block == "plain" and spec.residual:
        raise ConfigError(
            "model.residual=true needs model.block=basic or bottleneck (a plain block is a single VGG conv "
            "with no skip connection): set model.residual=false or change model.block"
        )
    if spec.block != "plain" and spec.residual and spec.shortcut == "A":
        channels = [spec.stem_width if spec.stem != "vgg" else spec.in_channels]
        channels += [w * spec.expansion for w in spec.widths]
        if any(b < a for a, b in itertools.pairwise(channels)):
            raise ConfigError(
                f"model.shortcut=A (zero-padded identity) cannot reduce channels {channels}: "
                "use model.shortcut=B or non-decreasing model.widths"
            )
