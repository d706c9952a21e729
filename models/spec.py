"""`NetSpec`: every architectural choice of the generic network as one independent, validated knob.

VGG and ResNet are just values of these knobs (see `models.presets`); the ablation axes are the knobs themselves.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass, fields
from typing import Any

from models.errors import ConfigError

STEMS = ("vgg", "resnet", "cifar")  # vgg: none (full resolution); resnet: 7x7/2 conv + 3x3/2 max-pool; cifar: 3x3 conv
BLOCKS = ("plain", "basic", "bottleneck")  # plain = one VGG conv layer; basic/bottleneck = He et al.'s blocks
SHORTCUTS = ("A", "B")  # A: zero-padded identity (no params); B: 1x1 projection when the shape changes
DOWNSAMPLES = ("maxpool", "stride")  # maxpool: 2x2 pool after each stage (VGG); stride: stages 2.. start strided
HEADS = ("fc", "gap")  # fc: pool to head_pool^2, flatten, Linear-ReLU-Dropout layers, Linear; gap: GAP + one Linear


@dataclass(frozen=True)
class NetSpec:
    """A network = stem + stages of blocks + head. Each field is one knob (`model.<field>` on the command line)."""

    stem: str = "resnet"
    stem_width: int = 64  # output channels of the resnet/cifar stem (the vgg stem has no layers)
    block: str = "basic"
    residual: bool = True  # false: the same layers without skip connections (He et al.'s "plain" nets)
    shortcut: str = "B"
    downsample: str = "stride"
    depths: tuple[int, ...] = (2, 2, 2, 2)  # blocks per stage (a plain block is one conv)
    widths: tuple[int, ...] = (64, 128, 256, 512)  # per stage; bottleneck output is width * 4
    head: str = "gap"
    head_pool: int = 7  # fc head: adaptive average pool to head_pool x head_pool before flattening
    head_hidden: tuple[int, ...] = (4096, 4096)  # fc head: hidden Linear widths
    dropout: float = 0.5  # fc head: after each hidden layer
    batch_norm: bool = True
    conv_bias: bool = False  # VGG convs carry a bias (torchvision keeps it even with BN); ResNet convs do not
    zero_init_residual: bool = False  # zero the last BN gamma of each residual block (Goyal et al.)
    num_classes: int = 1000
    in_channels: int = 3

    def __post_init__(self) -> None:
        # Lists from YAML/CLI become tuples so specs stay hashable and comparable.
        for name in ("depths", "widths", "head_hidden"):
            value = getattr(self, name)
            if isinstance(value, int):
                value = (value,)
            try:
                object.__setattr__(self, name, tuple(int(v) for v in value))
            except (TypeError, ValueError):
                raise ConfigError(f"model.{name}={value!r} is not a list of integers: write e.g. "
                                  f"model.{name}=[2,2,2,2]") from None
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


def _choice(key: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"model.{key}={value!r} is not valid: choose one of {', '.join(choices)}")


def _bool(key: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise ConfigError(f"model.{key}={value!r} must be true or false")


def validate(spec: NetSpec) -> None:
    """Reject unknown values and impossible combinations with a message naming the key and the fix."""
    _choice("stem", spec.stem, STEMS)
    _choice("block", spec.block, BLOCKS)
    _choice("shortcut", spec.shortcut, SHORTCUTS)
    _choice("downsample", spec.downsample, DOWNSAMPLES)
    _choice("head", spec.head, HEADS)
    for key in ("residual", "batch_norm", "conv_bias", "zero_init_residual"):
        _bool(key, getattr(spec, key))
    for key in ("stem_width", "head_pool", "num_classes", "in_channels"):
        value = getattr(spec, key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"model.{key}={value!r} must be a positive integer")
    if not spec.depths or len(spec.depths) != len(spec.widths):
        raise ConfigError(
            f"model.depths={list(spec.depths)} and model.widths={list(spec.widths)} must be non-empty lists of "
            "the same length (one entry per stage)"
        )
    for key in ("depths", "widths", "head_hidden"):
        if any(v < 1 for v in getattr(spec, key)):
            raise ConfigError(f"model.{key}={list(getattr(spec, key))} must contain positive integers only")
    if not 0.0 <= float(spec.dropout) < 1.0:
        raise ConfigError(f"model.dropout={spec.dropout!r} must be in [0, 1)")
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
