"""FLOPs are not time: measured forward and forward+backward time of every part (stem, stage1..N, head) and every
layer, on the chosen device, batch size and precision.

Each part and each layer is timed on its own, on the very input it receives in the full network (captured once with
forward hooks, which are then removed): warm-up, then the median of `repeats` runs, synchronised with CUDA events on a
GPU (`time.perf_counter` on a CPU). Training conditions: train mode (BatchNorm batch statistics), autograd on, the
input of every part but the first requiring a gradient, bf16/fp16 autocast when asked, channels_last when asked.
Everything runs on a deep copy: the caller's model keeps its weights, buffers, training flag and hooks.

Shares: a part's time over the sum of the parts' times (they add up to 1). The parts run back to back in the network,
so their sum is close to the whole network's time (`total`, measured too); per-layer times leave out what is not a
layer (a residual addition), and their sum is shown beside the part's.
"""

from __future__ import annotations

import contextlib
import copy
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from models.errors import ConfigError

PRECISIONS = {"32": torch.float32, "32-true": torch.float32, "fp32": torch.float32,
              "bf16": torch.bfloat16, "bf16-mixed": torch.bfloat16, "16": torch.float16, "16-mixed": torch.float16,
              "fp16": torch.float16}


def resolve_device(name: str) -> torch.device:
    """`cpu`, `cuda` or `cuda:N`, checked against this machine (one-line errors naming the key)."""
    try:
        device = torch.device(str(name))
    except (RuntimeError, TypeError):
        raise ConfigError(f"device={name!r} is not a device: use device=cpu or device=cuda") from None
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"device={name!r} is not supported: use device=cpu or device=cuda")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={name} but this machine has no CUDA GPU: use device=cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(f"device={name} but this machine has {torch.cuda.device_count()} GPU(s): use a smaller index")
    return device


def resolve_precision(name: Any, device: torch.device) -> torch.dtype:
    dtype = PRECISIONS.get(str(name))
    if dtype is None:
        raise ConfigError(f"precision={name!r} is not valid: choose one of 32, bf16, 16 (or 32-true, bf16-mixed, "
                          "16-mixed)")
    if dtype == torch.float16 and device.type == "cpu":
        raise ConfigError("precision=16 needs device=cuda: use precision=bf16 or 32 on a CPU")
    return dtype


@dataclass(frozen=True)
class Timed:
    """Median milliseconds of one module, forward alone and forward+backward, for the whole batch."""

    name: str
    part: str
    kind: str
    fwd_ms: float
    fwdbwd_ms: float


@dataclass
class ModelTiming:
    device: str
    precision: str
    batch_size: int
    channels_last: bool
    repeats: int
    total: Timed
    parts: list[Timed] = field(default_factory=list)
    layers: list[Timed] = field(default_factory=list)

    def share(self, part: str, key: str = "fwdbwd_ms") -> float:
        """The part's share of the parts' summed time (shares add up to 1)."""
        total = sum(getattr(p, key) for p in self.parts)
        return getattr(next(p for p in self.parts if p.name == part), key) / total if total else 0.0

    def summary(self) -> dict[str, Any]:
        """Flat keys for run records: time/<part>/fwd_ms, time/<part>/fwdbwd_ms, time_share/<part>, ..."""
        out: dict[str, Any] = {"time/batch_size": self.batch_size, "time/device": self.device,
                               "time/precision": self.precision, "time/total/fwd_ms": self.total.fwd_ms,
                               "time/total/fwdbwd_ms": self.total.fwdbwd_ms}
        for p in self.parts:
            out.update({f"time/{p.name}/fwd_ms": p.fwd_ms, f"time/{p.name}/fwdbwd_ms": p.fwdbwd_ms,
                        f"time_share/{p.name}": self.share(p.name)})
        return out


class _Clock:
    """Elapsed milliseconds of `fn()`: CUDA events on a GPU (the device's own clock), perf_counter on a CPU."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"

    def __call__(self, fn: Callable[[], None], prepare: Callable[[], Any]) -> float:
        state = prepare()  # outside the measured interval (input clones)
        if self.cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn(state)
            end.record()
            end.synchronize()
            return start.elapsed_time(end)
        t0 = time.perf_counter()
        fn(state)
        return 1e3 * (time.perf_counter() - t0)


def _median(clock: _Clock, fn: Callable, prepare: Callable, warmup: int, repeats: int) -> float:
    for _ in range(warmup):
        clock(fn, prepare)
    return statistics.median(clock(fn, prepare) for _ in range(repeats))


def _autocast(device: torch.device, dtype: torch.dtype) -> contextlib.AbstractContextManager:
    return torch.autocast(device.type, dtype=dtype) if dtype != torch.float32 else contextlib.nullcontext()


def _capture_inputs(model: nn.Module, x: torch.Tensor, modules: dict[str, nn.Module],
                    cast: Callable[[], contextlib.AbstractContextManager]) -> dict[str, torch.Tensor]:
    """The input each of `modules` receives in one forward of `model` (hooks removed afterwards)."""
    seen: dict[str, torch.Tensor] = {}

    def hook(name: str) -> Callable:
        def keep(module: nn.Module, inputs: tuple, output: Any) -> None:
            seen.setdefault(name, inputs[0].detach().clone())
        return keep

    handles = [m.register_forward_hook(hook(n)) for n, m in modules.items()]
    try:
        with torch.no_grad(), cast():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    return seen


def _time_module(module: nn.Module, x: torch.Tensor, needs_grad: bool, clock: _Clock, warmup: int, repeats: int,
                 cast: Callable[[], contextlib.AbstractContextManager]) -> tuple[float, float]:
    """(forward ms, forward+backward ms) of `module` on `x` (a fresh clone per run, made outside the timing)."""
    def forward(inp: torch.Tensor) -> None:
        with cast():
            module(inp)

    def forward_backward(inp: torch.Tensor) -> None:
        with cast():
            out = module(inp)
        if out.requires_grad:
            out.backward(torch.ones_like(out))

    def fresh() -> torch.Tensor:  # a non-leaf clone: in-place layers (ReLU) may write into it
        leaf = x.detach().requires_grad_(needs_grad) if needs_grad else x
        return leaf.clone() if needs_grad else x.clone()

    fwd = _median(clock, forward, fresh, warmup, repeats)
    module.zero_grad(set_to_none=True)
    both = _median(clock, forward_backward, fresh, warmup, repeats)
    module.zero_grad(set_to_none=True)
    return fwd, both


def _parts(model: nn.Module) -> dict[str, nn.Module]:
    return model.parts() if hasattr(model, "parts") else {"model": model}


def _leaves(model: nn.Module) -> Iterator[tuple[str, str, nn.Module]]:
    part_of: dict[nn.Module, str] = {}
    for part, module in _parts(model).items():
        for sub in module.modules():
            part_of.setdefault(sub, part)
    for name, module in model.named_modules():
        if name and not list(module.children()):
            yield name, part_of.get(module, "model"), module


def measure(model: nn.Module, input_size: int, batch_size: int = 1, device: str | torch.device = "cpu",
            precision: str = "32", channels_last: bool = False, repeats: int = 3, warmup: int = 1,
            layers: bool = True) -> ModelTiming:
    """Time `model`'s whole forward / forward+backward, each part, and (`layers`) each leaf layer."""
    device = resolve_device(str(device)) if not isinstance(device, torch.device) else device
    dtype = resolve_precision(precision, device)
    work = copy.deepcopy(model).to(device).train()
    if channels_last:
        work = work.to(memory_format=torch.channels_last)
    channels = getattr(getattr(model, "spec", None), "in_channels", 3)
    x = torch.randn(batch_size, channels, input_size, input_size, device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    clock, cast = _Clock(device), (lambda: _autocast(device, dtype))
    leaves = list(_leaves(work)) if layers else []
    inputs = _capture_inputs(work, x, {**_parts(work), **{f"layer:{n}": m for n, _, m in leaves}}, cast)
    total = Timed("total", "model", type(work).__name__,
                  *_time_module(work, x, False, clock, warmup, repeats, cast))
    parts = [Timed(name, name, type(m).__name__,
                   *_time_module(m, inputs[name], i > 0, clock, warmup, repeats, cast))
             for i, (name, m) in enumerate(_parts(work).items()) if name in inputs]
    timed_layers = [Timed(n, part, type(m).__name__,  # the first layer's input is the image: no gradient
                          *_time_module(m, inputs[f"layer:{n}"], i > 0, clock, warmup, repeats, cast))
                    for i, (n, part, m) in enumerate(leaves) if f"layer:{n}" in inputs]
    return ModelTiming(str(device), str(precision), batch_size, channels_last, repeats, total, parts, timed_layers)
