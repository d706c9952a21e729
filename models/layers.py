"""The parts the generic network is built from: stems, blocks (with their shortcuts) and heads.

Module and attribute order mirrors torchvision's `resnet.py` / `vgg.py`, so their state dicts load into ours in order.
The SE gate (`model.se`) and pre-activation (`model.preact`) are further attributes of the same blocks: a network
without them has exactly torchvision's modules.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.spec import NetSpec


def _norm(spec: NetSpec, channels: int) -> nn.Module:
    return nn.BatchNorm2d(channels) if spec.batch_norm else nn.Identity()


def _conv(spec: NetSpec, cin: int, cout: int, kernel: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=spec.conv_bias)


# ---------------------------------------------------------------- stems
class Stem(nn.Module):
    """vgg: no layers (VGG's first convs run at full resolution); resnet: 7x7/2 conv + 3x3/2 max-pool (4x fewer
    pixels for every later layer); cifar: one 3x3/1 conv."""

    def __init__(self, spec: NetSpec) -> None:
        super().__init__()
        self.out_channels = spec.in_channels if spec.stem == "vgg" else spec.stem_width
        if spec.stem == "vgg":
            return
        kernel, stride = (7, 2) if spec.stem == "resnet" else (3, 1)
        self.conv = _conv(spec, spec.in_channels, spec.stem_width, kernel, stride)
        if not spec.preact:  # pre-activation: the first block's BN-ReLU acts on the stem's conv (He et al. 2016)
            self.bn = _norm(spec, spec.stem_width)
            self.relu = nn.ReLU(inplace=True)
        if spec.stem == "resnet":
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.children():
            x = layer(x)
        return x


# ---------------------------------------------------------------- blocks
class PadShortcut(nn.Module):
    """Option A (He et al. CIFAR): subsample spatially, zero-pad the new channels. No parameters."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.pad, self.stride = cout - cin, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2)) if self.pad else x


class SqueezeExcitation(nn.Module):
    """Hu et al. 2018: each channel scaled by a gate computed from the whole image: global average pool, FC to
    channels // reduction (at least 1), ReLU, FC back, sigmoid. Both FCs carry biases, as in the paper."""

    def __init__(self, channels: int, reduction: int) -> None:
        super().__init__()
        squeeze = max(1, channels // reduction)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Linear(channels, squeeze)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Linear(squeeze, channels)
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.gate(self.fc2(self.relu(self.fc1(torch.flatten(self.pool(x), 1)))))
        return x * s[:, :, None, None]


def _se(spec: NetSpec, channels: int) -> nn.Module | None:
    return SqueezeExcitation(channels, spec.se_reduction) if spec.se else None


def _shortcut(spec: NetSpec, cin: int, cout: int, stride: int) -> nn.Module | None:
    if not spec.residual:
        return None
    if stride == 1 and cin == cout:
        return nn.Identity()
    if spec.shortcut == "A":
        return PadShortcut(cin, cout, stride)
    return nn.Sequential(_conv(spec, cin, cout, 1, stride), _norm(spec, cout))  # option B projection


class PlainBlock(nn.Module):
    """One VGG layer: 3x3 conv, optional BN, ReLU (then the SE gate, on the layer's output)."""

    def __init__(self, spec: NetSpec, cin: int, width: int, stride: int) -> None:
        super().__init__()
        self.conv = _conv(spec, cin, width, 3, stride)
        self.bn = _norm(spec, width)
        self.relu = nn.ReLU(inplace=True)
        self.se = _se(spec, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn(self.conv(x)))
        return self.se(out) if self.se is not None else out


class BasicBlock(nn.Module):
    """Two 3x3 convs (ResNet-18/34, CIFAR ResNets); with residual=false the skip is simply absent. Pre-activation
    (He et al. 2016): BN-ReLU before each conv, the shortcut taken from the pre-activated input where it projects,
    nothing after the addition."""

    def __init__(self, spec: NetSpec, cin: int, width: int, stride: int) -> None:
        super().__init__()
        self.preact = spec.preact
        self.conv1 = _conv(spec, cin, width, 3, stride)
        self.bn1 = _norm(spec, cin if spec.preact else width)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv(spec, width, width, 3)
        self.bn2 = _norm(spec, width)
        self.se = _se(spec, width)
        self.shortcut = _shortcut(spec, cin, width, stride)

    def last_norm(self) -> nn.Module:
        return self.bn2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.preact:
            act = self.relu(self.bn1(x))
            out = self.conv2(self.relu(self.bn2(self.conv1(act))))
            skip = x if isinstance(self.shortcut, nn.Identity) else act
        else:
            out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
            skip = x
        if self.se is not None:
            out = self.se(out)
        if self.shortcut is not None:
            out = out + self.shortcut(skip)
        return out if self.preact else self.relu(out)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3, 1x1 expand (x4). Stride on the 3x3 conv: torchvision's "ResNet v1.5"."""

    expansion = 4

    def __init__(self, spec: NetSpec, cin: int, width: int, stride: int) -> None:
        super().__init__()
        cout = width * self.expansion
        self.preact = spec.preact
        self.conv1 = _conv(spec, cin, width, 1)
        self.bn1 = _norm(spec, cin if spec.preact else width)
        self.conv2 = _conv(spec, width, width, 3, stride)
        self.bn2 = _norm(spec, width)
        self.conv3 = _conv(spec, width, cout, 1)
        self.bn3 = _norm(spec, width if spec.preact else cout)
        self.relu = nn.ReLU(inplace=True)
        self.se = _se(spec, cout)
        self.shortcut = _shortcut(spec, cin, cout, stride)

    def last_norm(self) -> nn.Module:
        return self.bn3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.preact:  # BN-ReLU-conv three times (He et al. 2016)
            act = self.relu(self.bn1(x))
            out = self.conv2(self.relu(self.bn2(self.conv1(act))))
            out = self.conv3(self.relu(self.bn3(out)))
            skip = x if isinstance(self.shortcut, nn.Identity) else act
        else:
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.relu(self.bn2(self.conv2(out)))
            out = self.bn3(self.conv3(out))
            skip = x
        if self.se is not None:
            out = self.se(out)
        if self.shortcut is not None:
            out = out + self.shortcut(skip)
        return out if self.preact else self.relu(out)


BLOCK_TYPES: dict[str, type[nn.Module]] = {"plain": PlainBlock, "basic": BasicBlock, "bottleneck": Bottleneck}


def make_stage(spec: NetSpec, index: int, cin: int) -> tuple[nn.Sequential, int]:
    """Stage `index` (0-based): its blocks, then a 2x2 max-pool when downsampling by pooling."""
    block, width = BLOCK_TYPES[spec.block], spec.widths[index]
    first_stride = 2 if spec.downsample == "stride" and index > 0 else 1
    layers: list[nn.Module] = []
    for i in range(spec.depths[index]):
        layers.append(block(spec, cin, width, first_stride if i == 0 else 1))
        cin = width * spec.expansion
    if spec.downsample == "maxpool":
        layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
    return nn.Sequential(*layers), cin


# ---------------------------------------------------------------- head
class Head(nn.Module):
    """fc: VGG's classifier (pool to head_pool^2, flatten, [Linear-ReLU-Dropout] x hidden, Linear);
    gap: global average pool + one Linear (ResNet)."""

    def __init__(self, spec: NetSpec, cin: int) -> None:
        super().__init__()
        if spec.preact:  # the last block ends in a conv: one BN-ReLU before the classifier (He et al. 2016)
            self.norm = _norm(spec, cin)
            self.relu = nn.ReLU(inplace=True)
        pool = spec.head_pool if spec.head == "fc" else 1
        hidden = spec.head_hidden if spec.head == "fc" else ()
        self.pool = nn.AdaptiveAvgPool2d((pool, pool))
        layers: list[nn.Module] = []
        width = cin * pool * pool
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU(inplace=True), nn.Dropout(p=spec.dropout)]
            width = h
        layers.append(nn.Linear(width, spec.num_classes))
        self.classifier = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if hasattr(self, "norm"):
            x = self.relu(self.norm(x))
        return self.classifier(torch.flatten(self.pool(x), 1))
