"""Exact complexity accounting: params, MACs, FLOPs and where they live (stem / stages / head, per layer).

Units. MACs = multiply-accumulates of conv and linear weights, forward pass, one image; this equals torchvision's
"GFLOPS" column and He et al.'s "FLOPs (multiply-adds)". FLOPs = 2 x MACs. Bias additions are not MACs: they are
reported separately (`bias_adds`).

Three independent counts must agree, or `profile` raises:
  1. ptflops with its `aten` backend (passed explicitly: the default `pytorch` backend also counts ReLU/pooling),
     which includes bias additions, minus our exact bias-add count;
  2. `torch.utils.flop_counter.FlopCounterMode` (2 FLOPs per MAC, no bias) / 2;
  3. the sum of the per-layer MACs computed from each conv/linear layer's shapes.
Counting runs on a deep copy, so the caller's model keeps its training flag, hooks and buffers.
"""

from __future__ import annotations

import copy
import io
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from ptflops import get_model_complexity_info
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

GROUPS = ("stem", "stages", "head")  # stage1..N are summed into "stages" for share columns and figures


def group_totals(per_part: Mapping[str, float]) -> dict[str, float]:
    """{stem, stages, head} totals of a {part name: value} mapping (stage1..N summed)."""
    return {g: sum(v for name, v in per_part.items() if (name.startswith("stage") if g == "stages" else name == g))
            for g in GROUPS}


@dataclass(frozen=True)
class LayerStats:
    name: str
    kind: str  # module class name
    part: str  # stem, stage1..N, head (or "model" for networks without parts)
    params: int
    macs: int
    activations: int  # output elements per image
    output_shape: tuple[int, ...]


@dataclass(frozen=True)
class PartStats:
    name: str
    params: int
    macs: int
    activations: int  # elements of the part's output, per image


@dataclass
class Complexity:
    input_size: tuple[int, int]
    params: int
    trainable_params: int
    macs: int
    bias_adds: int
    parts: list[PartStats] = field(default_factory=list)
    layers: list[LayerStats] = field(default_factory=list)

    @property
    def flops(self) -> int:
        return 2 * self.macs

    def part(self, name: str) -> PartStats:
        return next(p for p in self.parts if p.name == name)

    def groups(self, key: str) -> dict[str, float]:
        """params or macs of stem / stages (all stages) / head."""
        return group_totals({p.name: getattr(p, key) for p in self.parts})

    def share(self, key: str, group: str) -> float:
        total = getattr(self, key)
        return self.groups(key)[group] / total if total else 0.0

    def summary(self) -> dict[str, Any]:
        """Flat keys for run records and dashboards: params, macs, flops, params/<part>, macs_share/<part>, ..."""
        out: dict[str, Any] = dict(params=self.params, trainable_params=self.trainable_params, macs=self.macs,
                                   flops=self.flops, bias_adds=self.bias_adds, input_size=self.input_size[0])
        for p in self.parts:
            out[f"params/{p.name}"] = p.params
            out[f"macs/{p.name}"] = p.macs
            out[f"activations/{p.name}"] = p.activations
            out[f"params_share/{p.name}"] = p.params / self.params if self.params else 0.0
            out[f"macs_share/{p.name}"] = p.macs / self.macs if self.macs else 0.0
        return out

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["flops"] = self.flops
        return d


def count_params(model: nn.Module) -> tuple[int, int]:
    """(total, trainable) parameter counts."""
    params = list(model.parameters())
    return sum(p.numel() for p in params), sum(p.numel() for p in params if p.requires_grad)


def _layer_macs(module: nn.Module, inputs: tuple, output: torch.Tensor) -> tuple[int, int]:
    """(MACs, bias adds) of one conv/linear call, per image."""
    if isinstance(module, nn.Conv2d):
        per_output = module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
    elif isinstance(module, nn.Linear):
        per_output = module.in_features
    else:
        return 0, 0
    outputs = output[0].numel()
    return outputs * per_output, outputs if module.bias is not None else 0


def _parts(model: nn.Module) -> dict[str, nn.Module]:
    return model.parts() if hasattr(model, "parts") else {"model": model}


def profile(model: nn.Module, input_size: int | tuple[int, int], in_channels: int | None = None) -> Complexity:
    """Count params, MACs (batch 1, forward) and the per-part / per-layer breakdown at `input_size`."""
    h, w = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
    if in_channels is None:
        in_channels = getattr(getattr(model, "spec", None), "in_channels", 3)
    total, trainable = count_params(model)
    work = copy.deepcopy(model).eval()
    first = next(work.parameters(), None)
    x = torch.zeros(1, in_channels, h, w, dtype=first.dtype if first is not None else torch.float32,
                    device=first.device if first is not None else "cpu")

    part_of: dict[nn.Module, str] = {}
    for part, module in _parts(work).items():
        for sub in module.modules():
            part_of.setdefault(sub, part)
    layers: list[LayerStats] = []
    part_out: dict[str, int] = {}
    bias_adds = 0

    def leaf_hook(name: str):
        def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            nonlocal bias_adds
            macs, adds = _layer_macs(module, inputs, output)
            bias_adds += adds
            params = sum(p.numel() for p in module.parameters(recurse=False))
            layers.append(LayerStats(name, type(module).__name__, part_of.get(module, "model"), params, macs,
                                     output[0].numel(), tuple(output.shape[1:])))
        return hook

    def part_hook(name: str):
        def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            part_out[name] = output[0].numel()
        return hook

    handles = [m.register_forward_hook(leaf_hook(n)) for n, m in work.named_modules()
               if not list(m.children()) and n]
    handles += [m.register_forward_hook(part_hook(n)) for n, m in _parts(work).items()]
    with torch.no_grad(), FlopCounterMode(display=False) as torch_counter:
        work(x)
    for handle in handles:
        handle.remove()

    with torch.no_grad():
        aten_macs, _ = get_model_complexity_info(work, (in_channels, h, w), as_strings=False, backend="aten",
                                                 print_per_layer_stat=False, ost=io.StringIO())
    layer_macs = sum(layer.macs for layer in layers)
    torch_macs = torch_counter.get_total_flops() // 2
    if aten_macs is None or not (aten_macs - bias_adds == torch_macs == layer_macs):
        raise RuntimeError(
            f"MAC counts disagree at {h}x{w}: ptflops(aten) {aten_macs} - bias adds {bias_adds}, "
            f"FlopCounterMode/2 {torch_macs}, per-layer sum {layer_macs}; the model uses an op one of them misses"
        )

    parts = []
    for name, module in _parts(model).items():
        own = [layer for layer in layers if layer.part == name]
        parts.append(PartStats(name, sum(p.numel() for p in module.parameters()), sum(layer.macs for layer in own),
                               part_out.get(name, 0)))
    return Complexity((h, w), total, trainable, torch_macs, bias_adds, parts, layers)
