"""Training memory, the fourth cost beside parameters, MACs and time: what one training step keeps alive.

* Activations saved for backward, MEASURED: a forward in train mode under `torch.autograd.graph.saved_tensors_hooks`
  counts every tensor autograd keeps for the backward pass, each storage once (a view, or ReLU writing in place, is
  not counted twice), parameters excluded (they are counted below), attributed to the layer whose forward saved it.
  Done at batch 2 and batch 3: saved(B) = fixed + per_image x B, exact for these networks (every saved tensor is
  either per image, like a conv's input, or per channel, like BatchNorm's batch statistics). It runs on the meta
  device: shapes only, nothing allocated, milliseconds for VGG-16.
* Parameters, their gradients and the optimizer's state (SGD with momentum: one buffer per parameter, AdamW: two),
  fp32 master copies whatever the precision.
* The PREDICTED peak of a training step at batch B and a precision:
      weights + gradients + optimizer state + saved activations(B) + the largest transient
  where the transient is the biggest layer's input and output gradients alive together at the start of its backward.
  Under bf16/fp16 autocast (`*-mixed`) floating-point activations and their gradients take 2 bytes instead of 4, and
  every conv/linear weight gets a 2-byte copy kept for the backward. On CUDA the prediction is checked against
  `torch.cuda.max_memory_allocated` (tests/gpu); allocator rounding and cuDNN workspaces are not modelled.
* "largest batch that fits in N GiB": the largest B whose predicted peak fits.

Units: bytes everywhere (`*_bytes` keys); MiB/GiB = 2**20/2**30 bytes in tables.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from models.complexity import group_totals
from models.network import model_parts

HALF = ("bf16", "bf16-mixed", "16", "16-mixed", "fp16", "bf16-true", "16-true")
GIB = 2**30


def optimizer_buffers(name: str, momentum: float = 0.9) -> int:
    """fp32 buffers the optimizer keeps per parameter: SGD one (momentum; none without), AdamW two (moments)."""
    return 2 if name == "adamw" else int(momentum > 0)


def _float_bytes(precision: str) -> int:
    return 2 if str(precision) in HALF else 4


@dataclass(frozen=True)
class LayerMemory:
    """Bytes one layer saves for backward at fp32: per image and fixed (batch-independent), floating-point tensors
    (halved under autocast) and others (max-pool indices, dropout masks); and its largest transient per image."""

    name: str
    part: str
    float_per_image: int
    float_fixed: int
    other_per_image: int
    other_fixed: int
    transient_per_image: int = 0  # fp32 bytes of its input + output gradients (alive together in its backward)

    def saved(self, batch: int, precision: str = "32") -> int:
        scale = _float_bytes(precision) / 4
        return int(scale * (self.float_fixed + batch * self.float_per_image)) + self.other_fixed + \
            batch * self.other_per_image


@dataclass
class Memory:
    params: int
    weights: int  # conv / linear weights (what autocast copies to 2 bytes)
    layers: list[LayerMemory] = field(default_factory=list)

    def saved(self, batch: int = 1, precision: str = "32") -> int:
        """Bytes of activations saved for backward at `batch` and `precision`."""
        return sum(layer.saved(batch, precision) for layer in self.layers)

    def part_saved(self, batch: int = 1, precision: str = "32") -> dict[str, int]:
        out: dict[str, int] = {}
        for layer in self.layers:
            out[layer.part] = out.get(layer.part, 0) + layer.saved(batch, precision)
        return out

    def groups(self, batch: int = 1, precision: str = "32") -> dict[str, float]:
        return group_totals(self.part_saved(batch, precision))

    def states(self, buffers: int = 1) -> int:
        """fp32 weights + gradients + `buffers` optimizer buffers per parameter (`optimizer_buffers`)."""
        return 4 * self.params * (2 + buffers)

    def transient(self, batch: int, precision: str = "32") -> int:
        largest = max((layer.transient_per_image for layer in self.layers), default=0)
        return int(batch * largest * _float_bytes(precision) / 4)

    def peak(self, batch: int, precision: str = "32", buffers: int = 1) -> int:
        """Predicted peak bytes of one training step (see the module docstring)."""
        copies = 2 * self.weights if str(precision) in HALF else 0
        return self.states(buffers) + copies + self.saved(batch, precision) + self.transient(batch, precision)

    def largest_batch(self, gib: float, precision: str = "32", buffers: int = 1) -> int:
        """The largest batch whose predicted peak fits in `gib` GiB (0: not even one image)."""
        budget = gib * GIB
        if self.peak(1, precision, buffers) > budget:
            return 0
        lo, hi = 1, 2
        while self.peak(hi, precision, buffers) <= budget:
            lo, hi = hi, hi * 2
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if self.peak(mid, precision, buffers) <= budget else (lo, mid)
        return lo

    def summary(self, batch: int, precision: str = "32", buffers: int = 1) -> dict[str, Any]:
        """Flat record keys: memory/saved_b1_bytes (fp32, batch 1), memory/saved_b1/<part>, memory_share/<part>,
        memory/states_bytes, memory/peak_bytes (predicted, at the run's batch and precision), memory/max_batch_*."""
        b1 = self.saved(1)
        out: dict[str, Any] = {"memory/saved_b1_bytes": b1, "memory/states_bytes": self.states(buffers),
                               "memory/batch": batch, "memory/precision": str(precision),
                               "memory/saved_bytes": self.saved(batch, precision),
                               "memory/peak_bytes": self.peak(batch, precision, buffers)}
        for part, value in self.part_saved(1).items():
            out[f"memory/saved_b1/{part}"] = value
            out[f"memory_share/{part}"] = value / b1 if b1 else 0.0
        for gib in (16, 80):
            out[f"memory/max_batch_{gib}gib"] = self.largest_batch(gib, precision, buffers)
        return out


class _SavedTensors:
    """Every storage autograd saves during a forward, once, attributed to the innermost module running."""

    def __init__(self, model: nn.Module, names: dict[nn.Module, str]) -> None:
        self.params = {p.untyped_storage()._cdata for p in model.parameters()}
        self.seen: set[int] = set()
        self.bytes: dict[str, list[int]] = {}  # layer -> [float bytes, other bytes]
        self.io: dict[str, int] = {}  # layer -> input + output elements per call
        self.stack: list[str] = []
        self.handles = []
        for module, name in names.items():
            self.handles.append(module.register_forward_pre_hook(lambda m, i, n=name: self.stack.append(n)))
            self.handles.append(module.register_forward_hook(lambda m, i, o, n=name: self._leave(n, i, o)))

    def _leave(self, name: str, inputs: tuple, output: Any) -> None:
        self.stack.pop()
        if isinstance(output, torch.Tensor) and inputs and isinstance(inputs[0], torch.Tensor):
            self.io[name] = inputs[0].numel() + output.numel()

    def pack(self, t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        key = storage._cdata  # the storage itself (a stable address), on meta tensors too
        if key not in self.params and key not in self.seen:
            self.seen.add(key)
            slot = self.bytes.setdefault(self.stack[-1] if self.stack else "", [0, 0])
            slot[0 if t.is_floating_point() else 1] += storage.nbytes()
        return t

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def _saved_at(model: nn.Module, batch: int, shape: tuple[int, int, int], names: dict[nn.Module, str]
              ) -> _SavedTensors:
    first = next(model.parameters(), None)
    x = torch.zeros(batch, *shape, device=first.device if first is not None else "cpu")
    counter = _SavedTensors(model, names)
    try:
        with torch.autograd.graph.saved_tensors_hooks(counter.pack, lambda t: t):
            model(x)
    finally:
        counter.remove()
    return counter


def profile_memory(model: nn.Module, input_size: int | tuple[int, int], in_channels: int | None = None
                   ) -> Memory:
    """Saved activations per layer (counted at batches 2 and 3, train mode), parameters and weights of `model`. A
    model not on the meta device is copied there first (pass one built under `torch.device("meta")` to skip it)."""
    h, w = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
    in_channels = in_channels or getattr(getattr(model, "spec", None), "in_channels", 3)
    first = next(model.parameters(), None)
    work = model if first is None or first.device.type == "meta" else copy.deepcopy(model).to("meta")
    training = work.training
    part_of = {sub: part for part, module in model_parts(work).items() for sub in module.modules()}
    names = {m: n for n, m in work.named_modules() if n and not list(m.children())}
    names.update({m: n for n, m in work.named_modules() if n and list(m.children())})  # blocks: their own ops
    try:
        work.train()
        # batches 2 and 3 (BatchNorm in train mode refuses one value per channel, e.g. a 1x1 map at batch 1)
        two, three = (_saved_at(work, b, (in_channels, h, w), names) for b in (2, 3))
    finally:
        work.train(training)
    by_name = {n: m for m, n in names.items()}
    leaves = {n for n, m in work.named_modules() if n and not list(m.children())}
    layers = []
    for name in dict.fromkeys([*two.bytes, *three.bytes]):
        (f2, o2), (f3, o3) = two.bytes.get(name, [0, 0]), three.bytes.get(name, [0, 0])
        part = part_of.get(by_name.get(name), "model")
        layers.append(LayerMemory(name or "model", part, f3 - f2, 3 * f2 - 2 * f3, o3 - o2, 3 * o2 - 2 * o3,
                                  4 * two.io.get(name, 0) // 2 if name in leaves else 0))
    weights = sum(m.weight.numel() for m in work.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
    return Memory(sum(p.numel() for p in work.parameters()), weights, layers)

