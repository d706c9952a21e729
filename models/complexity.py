"""Exact complexity accounting: params, MACs, FLOPs and where they live (stem / stages / head, per layer), and per
layer how often each weight is reused (MACs per parameter), the bytes a layer moves and its arithmetic intensity.

Units. MACs = multiply-accumulates of conv and linear weights, forward pass, one image; this equals torchvision's
"GFLOPS" column and He et al.'s "FLOPs (multiply-adds)". FLOPs = 2 x MACs. Bias additions are not MACs: they are
reported separately (`bias_adds`).

The count is the sum of the per-layer MACs computed from each conv/linear layer's shapes. `profile(check=True)`
(what the tests do for every preset and every knob combination) also demands that two independent counters agree:
  1. ptflops with its `aten` backend (passed explicitly: the default `pytorch` backend also counts ReLU/pooling),
     which includes bias additions, minus our exact bias-add count;
  2. `torch.utils.flop_counter.FlopCounterMode` (2 FLOPs per MAC, no bias) / 2.
Counting needs shapes only: build the network on the meta device (`counting_copy`) and nothing is allocated or
initialised. Counting runs on a deep copy, so the caller's model keeps its training flag, hooks and buffers.

Traffic (unfused, what a layer must read and write at least once): its weights once per batch plus its input and
output activations per image, at the run's element size (4 bytes fp32, 2 bf16/fp16). Arithmetic intensity = FLOPs /
bytes moved. A conv weight is reused at every output pixel (VGG-16's conv1_1: 224 x 224 = 50,176 MACs per weight), an
FC weight about once per image: the reason VGG's head holds 89% of its parameters and 0.8% of its MACs.
"""

from __future__ import annotations

import copy
import io
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from models.network import model_parts

GROUPS = ("stem", "stages", "head")  # stage1..N are summed into "stages" for share columns and figures


def in_group(part: str, group: str) -> bool:
    """Whether a part (stem, stage1..N, head) belongs to a group of GROUPS (stage1..N are "stages")."""
    return part.startswith("stage") if group == "stages" else part == group


def group_totals(per_part: Mapping[str, float]) -> dict[str, float]:
    """{stem, stages, head} totals of a {part name: value} mapping (stage1..N summed)."""
    return {g: sum(v for name, v in per_part.items() if in_group(name, g)) for g in GROUPS}


def _traffic(layers: list[LayerStats], element_bytes: int, batch: int) -> tuple[int, float | None]:
    """(bytes moved, FLOPs per byte) of some layers: the sums over them (unfused); None when nothing moves."""
    moved = sum(layer.bytes_moved(element_bytes, batch) for layer in layers)
    return moved, (2 * batch * sum(layer.macs for layer in layers) / moved if moved else None)


@dataclass(frozen=True)
class LayerStats:
    name: str
    kind: str  # module class name
    part: str  # stem, stage1..N, head (or "model" for networks without parts)
    params: int
    macs: int
    activations: int  # output elements per image
    output_shape: tuple[int, ...]
    input_elements: int = 0  # input elements per image
    weights: int = 0  # parameters that multiply (conv kernel / linear matrix), biases excluded

    @property
    def macs_per_param(self) -> float | None:
        """Weight reuse: multiply-accumulates per parameter per image (None for layers without parameters)."""
        return self.macs / self.params if self.params else None

    @property
    def macs_per_weight(self) -> float | None:
        """The same per multiplying weight (biases excluded): a conv's output pixels, 1 for a linear layer."""
        return self.macs / self.weights if self.weights else None

    def bytes_moved(self, element_bytes: int = 4, batch: int = 1) -> int:
        """Weights once, input and output activations of every image of the batch."""
        return element_bytes * (self.params + batch * (self.input_elements + self.activations))

    def intensity(self, element_bytes: int = 4, batch: int = 1) -> float:
        """Arithmetic intensity: FLOPs (2 x MACs) per byte moved."""
        moved = self.bytes_moved(element_bytes, batch)
        return 2 * self.macs * batch / moved if moved else 0.0


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

    def part_traffic(self, name: str, element_bytes: int = 4, batch: int = 1) -> tuple[int, float]:
        """(bytes moved, FLOPs per byte) of a part: the sums over all its layers (unfused)."""
        moved, intensity = _traffic([layer for layer in self.layers if layer.part == name], element_bytes, batch)
        return moved, intensity or 0.0

    def group_reuse(self, group: str) -> float | None:
        """MACs per parameter of stem / stages / head (None: no parameters there)."""
        params = self.groups("params")[group]
        return self.groups("macs")[group] / params if params else None

    def group_intensity(self, group: str, element_bytes: int = 4, batch: int = 1) -> float | None:
        """FLOPs per byte moved (unfused) by the conv/linear layers of stem / stages / head (None: none there)."""
        own = [layer for layer in self.layers if layer.macs and in_group(layer.part, group)]
        return _traffic(own, element_bytes, batch)[1]

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


class _Recorder:
    """Forward hooks on every leaf layer and every part of `model`: what each computes, per image."""

    def __init__(self, model: nn.Module) -> None:
        self.part_of: dict[nn.Module, str] = {}
        for part, module in model_parts(model).items():
            for sub in module.modules():
                self.part_of.setdefault(sub, part)
        self.layers: list[LayerStats] = []
        self.part_out: dict[str, int] = {}
        self.bias_adds = 0
        self.handles = [m.register_forward_hook(self._leaf(n)) for n, m in model.named_modules()
                        if not list(m.children()) and n]
        self.handles += [m.register_forward_hook(self._part(n)) for n, m in model_parts(model).items()]

    def _leaf(self, name: str) -> Any:
        def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            macs, adds = _layer_macs(module, inputs, output)
            self.bias_adds += adds
            params = sum(p.numel() for p in module.parameters(recurse=False))
            weights = module.weight.numel() if macs and getattr(module, "weight", None) is not None else 0
            self.layers.append(LayerStats(name, type(module).__name__, self.part_of.get(module, "model"), params,
                                          macs, output[0].numel(), tuple(output.shape[1:]), inputs[0][0].numel(),
                                          weights))
        return hook

    def _part(self, name: str) -> Any:
        def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            self.part_out[name] = output[0].numel()
        return hook

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def profile(model: nn.Module, input_size: int | tuple[int, int], in_channels: int | None = None,
            check: bool = False) -> Complexity:
    """Count params, MACs (batch 1, forward) and the per-part / per-layer breakdown at `input_size`. `check`: also
    run the two independent counters and raise unless all three agree (see the module docstring)."""
    h, w = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
    if in_channels is None:
        in_channels = getattr(getattr(model, "spec", None), "in_channels", 3)
    total, trainable = count_params(model)
    work = copy.deepcopy(model).eval()
    first = next(work.parameters(), None)
    x = torch.zeros(1, in_channels, h, w, dtype=first.dtype if first is not None else torch.float32,
                    device=first.device if first is not None else "cpu")
    recorder = _Recorder(work)
    try:
        with torch.no_grad():
            work(x)
    finally:
        recorder.remove()
    layers, bias_adds = recorder.layers, recorder.bias_adds
    layer_macs = sum(layer.macs for layer in layers)
    if check:
        cross_check(work, x, layer_macs, bias_adds)
    parts = [PartStats(name, sum(p.numel() for p in module.parameters()),
                       sum(layer.macs for layer in layers if layer.part == name), recorder.part_out.get(name, 0))
             for name, module in model_parts(model).items()]
    return Complexity((h, w), total, trainable, layer_macs, bias_adds, parts, layers)


def cross_check(model: nn.Module, x: torch.Tensor, layer_macs: int, bias_adds: int) -> None:
    """Raise unless ptflops (aten backend, minus bias adds) and FlopCounterMode / 2 both equal the per-layer sum."""
    from ptflops import get_model_complexity_info  # a test-time dependency: runs never need it
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as torch_counter:
        model(x)
    with torch.no_grad():
        aten_macs, _ = get_model_complexity_info(model, tuple(x.shape[1:]), as_strings=False, backend="aten",
                                                 print_per_layer_stat=False, ost=io.StringIO())
    torch_macs = torch_counter.get_total_flops() // 2
    if aten_macs is None or not (aten_macs - bias_adds == torch_macs == layer_macs):
        raise RuntimeError(
            f"MAC counts disagree at {x.shape[2]}x{x.shape[3]}: ptflops(aten) {aten_macs} - bias adds {bias_adds}, "
            f"FlopCounterMode/2 {torch_macs}, per-layer sum {layer_macs}; the model uses an op one of them misses"
        )
