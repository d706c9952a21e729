"""FLOPs are not time: measured forward and forward+backward time of the whole network, of every part (stem,
stage1..N, head) and of every layer, on the chosen device, batch size and precision.

Each part and each layer is timed on its own, on the very input it receives in the full network (captured once with
forward hooks, which are then removed). The whole network, the parts and the layers are timed INTERLEAVED, round after
round (total, stem, stage1, ..., head, total, stem, ...), so that drift on a shared machine hits all of them alike;
at least `repeats` rounds, more (up to `max_rounds`) while the spread is still too wide. Each reported time is the
median over the rounds, with its interquartile range (IQR). CUDA events on a GPU, `time.perf_counter` on a CPU.
Training conditions: train mode (BatchNorm batch statistics), autograd on, the input of every part but the first
requiring a gradient, bf16/fp16 autocast when asked, channels_last when asked.

Units: `Timed` holds milliseconds per BATCH; every record key (`ModelTiming.summary()`: `time/<part>/fwd_ms`, ...)
and every table is per IMAGE (divided by the batch size).

Consistency, checked on every measurement (`ModelTiming.problems`; `reliable` is False when any is found):
  * spread: known (>= 3 rounds), and IQR / median <= SPREAD_LIMIT for the whole network and for every part holding
    >= 5% of the time;
  * forward <= forward+backward (within FWD_SLACK) for every part holding >= 1% of the time;
  * the parts add up to the whole: |sum of parts / whole - 1| <= PARTS_TOLERANCE (forward+backward).

The model is timed IN PLACE (no copy): its buffers (BatchNorm running statistics), gradients, training flag, device,
memory format and the global RNG state are restored afterwards, so a run that times its parts trains exactly as one
that does not.
"""

from __future__ import annotations

import contextlib
import math
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from models.errors import ConfigError
from models.network import model_parts

PRECISIONS = {"32": torch.float32, "32-true": torch.float32, "fp32": torch.float32,
              "bf16": torch.bfloat16, "bf16-mixed": torch.bfloat16, "16": torch.float16, "16-mixed": torch.float16,
              "fp16": torch.float16}
SPREAD_LIMIT = 0.25  # IQR / median above this: the machine was too busy for the number to mean much
FWD_SLACK = 1.10  # forward alone may exceed forward+backward by 10% before it is called a contradiction
PARTS_TOLERANCE = 0.25  # parts timed one by one vs the whole network (separate launches, separate backward calls)
MIN_ROUNDS_FOR_SPREAD = 3  # fewer samples give no interquartile range worth the name


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


def _iqr(samples: list[float]) -> float:
    if len(samples) < MIN_ROUNDS_FOR_SPREAD:
        return float("nan")
    q = statistics.quantiles(samples, n=4, method="inclusive")
    return q[2] - q[0]


@dataclass(frozen=True)
class Timed:
    """Milliseconds of one module for the whole BATCH: medians over the rounds, and their interquartile ranges."""

    name: str
    part: str
    kind: str
    fwd_ms: float
    fwdbwd_ms: float
    fwd_iqr_ms: float = float("nan")
    fwdbwd_iqr_ms: float = float("nan")

    @property
    def spread(self) -> float:
        """Relative spread of forward+backward: IQR / median."""
        return self.fwdbwd_iqr_ms / self.fwdbwd_ms if self.fwdbwd_ms > 0 else float("nan")


@dataclass
class ModelTiming:
    device: str
    precision: str
    batch_size: int
    channels_last: bool
    rounds: int
    total: Timed
    parts: list[Timed] = field(default_factory=list)
    layers: list[Timed] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def reliable(self) -> bool:
        return not self.problems

    def share(self, part: str, key: str = "fwdbwd_ms") -> float:
        """The part's share of the parts' summed time (shares add up to 1)."""
        total = sum(getattr(p, key) for p in self.parts)
        return getattr(next(p for p in self.parts if p.name == part), key) / total if total else 0.0

    def parts_sum_ratio(self) -> float:
        """Sum of the parts' forward+backward times over the whole network's (1: they add up)."""
        return _parts_ratio(self.total, self.parts)

    def summary(self) -> dict[str, Any]:
        """Flat record keys, PER IMAGE: time/<part>/fwd_ms, time/<part>/fwdbwd_ms, time/<part>/fwdbwd_iqr_ms,
        time_share/<part>, time/reliable and time/problems (why not), time/rounds."""
        b = self.batch_size
        out: dict[str, Any] = {"time/batch_size": b, "time/device": self.device, "time/precision": self.precision,
                               "time/rounds": self.rounds, "time/reliable": self.reliable,
                               "time/problems": "; ".join(self.problems) or None,
                               "time/parts_sum_ratio": self.parts_sum_ratio()}
        for t in (self.total, *self.parts):
            out.update({f"time/{t.name}/fwd_ms": t.fwd_ms / b, f"time/{t.name}/fwdbwd_ms": t.fwdbwd_ms / b,
                        f"time/{t.name}/fwdbwd_iqr_ms": t.fwdbwd_iqr_ms / b})
        out.update({f"time_share/{p.name}": self.share(p.name) for p in self.parts})
        return out


def _parts_ratio(total: Timed, parts: list[Timed]) -> float:
    return sum(p.fwdbwd_ms for p in parts) / total.fwdbwd_ms if total.fwdbwd_ms else float("nan")


def consistency_problems(total: Timed, parts: list[Timed]) -> list[str]:
    """What contradicts itself in one measurement (see the module docstring); [] when nothing does."""
    problems = []
    whole = total.fwdbwd_ms
    if math.isnan(total.spread):
        problems.append(f"spread unknown (fewer than {MIN_ROUNDS_FOR_SPREAD} rounds)")
    elif total.spread > SPREAD_LIMIT:
        problems.append(f"the whole network's time varied by {total.spread:.0%} (IQR/median)")
    for p in parts:
        share = p.fwdbwd_ms / whole if whole else 0.0
        if share >= 0.05 and p.spread > SPREAD_LIMIT:
            problems.append(f"{p.name}'s time varied by {p.spread:.0%} (IQR/median)")
        if share >= 0.01 and p.fwd_ms > FWD_SLACK * p.fwdbwd_ms:
            problems.append(f"{p.name}: forward {p.fwd_ms:.3g} ms > forward+backward {p.fwdbwd_ms:.3g} ms")
    ratio = _parts_ratio(total, parts)
    if parts and not abs(ratio - 1) <= PARTS_TOLERANCE:
        problems.append(f"the parts add up to {ratio:.0%} of the whole network's time")
    return problems


class _Clock:
    """Elapsed milliseconds of `fn()`: CUDA events on a GPU (the device's own clock), perf_counter on a CPU."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"

    def __call__(self, fn: Callable[[Any], None], prepare: Callable[[], Any]) -> float:
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


def _autocast(device: torch.device, dtype: torch.dtype) -> contextlib.AbstractContextManager:
    return torch.autocast(device.type, dtype=dtype) if dtype != torch.float32 else contextlib.nullcontext()


@dataclass
class _Subject:
    """One timed module: its forward and forward+backward closures and the samples gathered so far."""

    name: str
    part: str
    module: nn.Module
    x: torch.Tensor
    needs_grad: bool
    fwd: list[float] = field(default_factory=list)
    both: list[float] = field(default_factory=list)

    def fresh(self) -> torch.Tensor:  # a non-leaf clone: in-place layers (ReLU) may write into it
        return self.x.detach().requires_grad_(True).clone() if self.needs_grad else self.x.clone()

    def sample(self, clock: _Clock, cast: Callable[[], contextlib.AbstractContextManager], keep: bool) -> None:
        def forward(inp: torch.Tensor) -> None:
            with cast():
                self.module(inp)

        def forward_backward(inp: torch.Tensor) -> None:
            with cast():
                out = self.module(inp)
            if out.requires_grad:
                out.backward(torch.ones_like(out))

        fwd, both = clock(forward, self.fresh), clock(forward_backward, self.fresh)
        if keep:
            self.fwd.append(fwd)
            self.both.append(both)

    def result(self) -> Timed:
        return Timed(self.name, self.part, type(self.module).__name__, statistics.median(self.fwd),
                     statistics.median(self.both), _iqr(self.fwd), _iqr(self.both))


def _leaves(model: nn.Module) -> Iterator[tuple[str, str, nn.Module]]:
    part_of: dict[nn.Module, str] = {}
    for part, module in model_parts(model).items():
        for sub in module.modules():
            part_of.setdefault(sub, part)
    for name, module in model.named_modules():
        if name and not list(module.children()):
            yield name, part_of.get(module, "model"), module


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


def _is_channels_last(model: nn.Module) -> bool:
    weight = next((p for p in model.parameters() if p.dim() == 4), None)
    return weight is not None and weight.is_contiguous(memory_format=torch.channels_last) and \
        not weight.is_contiguous()


@contextlib.contextmanager
def preserved(model: nn.Module, device: torch.device) -> Iterator[None]:
    """Give `model` back as it was: buffers, gradients, training flag, device, memory format; and the RNG state
    (dropout and the timing input draw from a forked generator)."""
    first = next(model.parameters(), None)
    home = first.device if first is not None else torch.device("cpu")
    channels_last, training = _is_channels_last(model), model.training
    buffers = {n: b.detach().clone() for n, b in model.named_buffers()}
    grads = {n: None if p.grad is None else p.grad.detach().clone() for n, p in model.named_parameters()}
    cuda = [device.index or 0] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=cuda):
            yield
    finally:
        model.to(home, memory_format=torch.channels_last if channels_last else torch.contiguous_format)
        for n, b in model.named_buffers():
            b.copy_(buffers[n])
        for n, p in model.named_parameters():
            p.grad = grads[n]
        model.train(training)


def measure(model: nn.Module, input_size: int, batch_size: int = 1, device: str | torch.device = "cpu",
            precision: str = "32", channels_last: bool = False, repeats: int = 5, warmup: int = 1,
            layers: bool = True, max_rounds: int | None = None, budget_s: float | None = None) -> ModelTiming:
    """Time `model`'s whole forward / forward+backward, each part, and (`layers`) each leaf layer, interleaved:
    `repeats` rounds at least, then more while the measurement contradicts itself, up to `max_rounds` (default
    3 x repeats) and, when given, until `budget_s` seconds have been spent."""
    device = resolve_device(str(device)) if not isinstance(device, torch.device) else device
    dtype = resolve_precision(precision, device)
    with preserved(model, device):
        model.to(device, memory_format=torch.channels_last if channels_last else torch.contiguous_format).train()
        channels = getattr(getattr(model, "spec", None), "in_channels", 3)
        x = torch.randn(batch_size, channels, input_size, input_size, device=device)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        clock, cast = _Clock(device), (lambda: _autocast(device, dtype))
        leaves = list(_leaves(model)) if layers else []
        named_parts = model_parts(model)
        inputs = _capture_inputs(model, x, {**named_parts, **{f"layer:{n}": m for n, _, m in leaves}}, cast)
        parts = [_Subject(n, n, m, inputs[n], i > 0) for i, (n, m) in enumerate(named_parts.items()) if n in inputs]
        timed_layers = [_Subject(n, part, m, inputs[f"layer:{n}"], i > 0)  # the first layer's input is the image
                        for i, (n, part, m) in enumerate(leaves) if f"layer:{n}" in inputs]
        total = _Subject("total", "model", model, x, False)
        subjects = [total, *parts, *timed_layers]
        for _ in range(warmup):
            for s in subjects:
                s.sample(clock, cast, keep=False)
        rounds, limit, t0 = 0, max_rounds or 3 * max(1, repeats), time.perf_counter()
        while rounds < max(1, repeats) or (rounds < limit and time.perf_counter() - t0 < (budget_s or math.inf)
                                           and consistency_problems(total.result(), [p.result() for p in parts])):
            for s in subjects:
                s.sample(clock, cast, keep=True)
            rounds += 1
        result_parts = [p.result() for p in parts]
        return ModelTiming(str(device), str(precision), batch_size, channels_last, rounds, total.result(),
                           result_parts, [s.result() for s in timed_layers],
                           consistency_problems(total.result(), result_parts))
