"""The generic network: stem + stages of blocks + head, built from a `NetSpec` (parts in `models.layers`).

Module order mirrors torchvision's `resnet.py` / `vgg.py`, so their state dicts load into ours in order and the
presets can be checked against them weight for weight.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from models.layers import BasicBlock, Bottleneck, Head, Stem, make_stage
from models.spec import NetSpec


class Net(nn.Module):
    """stem -> stage1..stageN -> head, with timm's `forward_features` / `forward_head` split."""

    def __init__(self, spec: NetSpec) -> None:
        super().__init__()
        self.spec = spec
        self.stem = Stem(spec)
        stages, cin = OrderedDict(), self.stem.out_channels
        for i in range(len(spec.depths)):
            stages[f"stage{i + 1}"], cin = make_stage(spec, i, cin)
        self.stages = nn.Sequential(stages)
        self.head = Head(spec, cin)
        self._init_weights()

    def _init_weights(self) -> None:
        # torchvision's VGG/ResNet scheme: He init for convs, unit BN, small normal for Linear.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)
        if self.spec.zero_init_residual and self.spec.residual:
            for m in self.modules():
                if isinstance(m, (BasicBlock, Bottleneck)) and isinstance(m.last_norm(), nn.BatchNorm2d):
                    nn.init.zeros_(m.last_norm().weight)

    def parts(self) -> dict[str, nn.Module]:
        """The accounting parts: stem, stage1..N, head."""
        return {"stem": self.stem, **dict(self.stages.named_children()), "head": self.head}

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x))

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def model_parts(model: nn.Module) -> dict[str, nn.Module]:
    """The parts accounting splits a model into: a Net's stem, stages and head; any other module as one "model"."""
    return model.parts() if hasattr(model, "parts") else {"model": model}
