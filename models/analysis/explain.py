"""Why network A costs what it does versus network B, one design choice at a time (`scripts/explain.py`).

The knobs that differ between A and B are grouped into design choices (`CHOICES`, from each knob's declared group
in models/spec.py: knobs that only make sense together stay one choice; knobs a network does not use, e.g. the FC
head's hidden widths under a GAP head, are not
differences). Every subset of the choices switched from A's values to B's is a network; its costs are counted on the
meta device (no weights, no arithmetic): parameters, MACs (per image, forward) and training memory (the predicted peak
of a training step at `memory_batch`, `models.memory`); with `measure`, also the measured forward+backward time.

* the ROADMAP: A, then one choice changed at a time, to B (ConvNeXt's "modernising a ResNet" figure, for any two
  networks): each step's costs and the change from the step before. Default order: the largest parameter saving
  first (greedily, through valid networks only); `order=` sets it.
* the ATTRIBUTION: each choice's Shapley value (`models.analysis.shapley`): its effect averaged over every order
  of the choices, so the values add up exactly to B - A. Orders through an invalid network (residual connections on
  VGG's single-conv blocks) are left out and counted.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from models.analysis.shapley import Attribution, shapley
from models.complexity import profile
from models.errors import ConfigError
from models.memory import profile_memory
from models.network import Net
from models.presets import get_preset, get_spec, list_presets
from models.spec import NetSpec, choice_groups, knob_names, unused_knobs
from models.timing import measure

CHOICES: dict[str, tuple[str, ...]] = choice_groups()  # design choice -> its knobs, from NetSpec's declarations
COSTS = ("params", "macs", "memory")  # counted for every network; "time" when measured
INTEGER_COSTS = ("params", "macs", "memory")
_DEFAULTS = NetSpec().knobs()


def canonical(knobs: Mapping[str, Any]) -> dict[str, Any]:
    """The knobs with the ones the network does not use (each knob declares when: `unused_when` in models/spec.py)
    set to their defaults, e.g. a GAP head has no hidden widths, no residual means no shortcut type. One equivalence
    is not a matter of unused knobs: an FC head pooled to 1x1 with no hidden layer IS a GAP head."""
    out = {k: knobs[k] for k in knob_names()}
    if out["head"] == "fc" and int(out["head_pool"]) == 1 and not tuple(out["head_hidden"]):
        out["head"] = "gap"
    out.update({k: _DEFAULTS[k] for k in unused_knobs(out)})
    return {k: tuple(v) if isinstance(v, list) else v for k, v in out.items()}


@dataclass
class Network:
    """One side (A or B): its label, its knobs (canonical: what is compared), its designed input size, and its
    knobs as given (what networks are built from)."""

    label: str
    knobs: dict[str, Any]
    input_size: int
    raw: dict[str, Any] = field(default_factory=dict)


def resolve(entry: str | Mapping[str, Any], key: str, num_classes: int | None) -> Network:
    """`a=vgg16` or `a={name: vgg16, head: gap}` -> a Network (one-line errors naming `a` or `b`)."""
    knobs = {"name": entry} if isinstance(entry, str) else dict(entry)
    label = str(knobs.pop("label", "") or "")
    name = knobs.get("name")
    if name is not None and str(name) not in list_presets():
        raise ConfigError(f"{key}={name} is not a known preset: choose one of {', '.join(list_presets())}")
    if num_classes is not None:
        knobs["num_classes"] = num_classes
    try:
        spec = get_spec(knobs)
    except ConfigError as e:
        raise ConfigError(f"{key}: {e}") from None
    overrides = {k: v for k, v in knobs.items() if k != "name"}
    label = label or (str(name) if name else "custom") + "".join(f" {k}={v}" for k, v in overrides.items()
                                                               if k != "num_classes")
    size = get_preset(str(name)).input_size if name else 224
    raw = {k: v for k, v in spec.knobs().items() if k in knob_names()}
    return Network(label, canonical(spec.knobs()), size, raw)


def differing(a: Network, b: Network) -> list[str]:
    """The design choices whose knobs differ between A and B, in CHOICES order."""
    changed = [c for c, keys in CHOICES.items() if any(a.knobs[k] != b.knobs[k] for k in keys)]
    if not changed:
        raise ConfigError(f"a={a.label} and b={b.label} are the same network: pick two networks that differ")
    return changed


def spec_of(a: Network, b: Network, subset: frozenset, every: frozenset | None = None) -> NetSpec:
    """A with the knobs of the choices in `subset` taken from B (raises ConfigError when that is no network); with
    every differing choice (`every`), B itself."""
    if every is not None and subset == every:
        return NetSpec(**b.raw)
    knobs = dict(a.raw)
    for choice in subset:
        knobs.update({k: b.raw[k] for k in CHOICES[choice]})
    return NetSpec(**knobs)


@dataclass
class Costs:
    """What one network costs: counted (params, MACs, memory bytes) and, when measured, time (ms per image)."""

    values: dict[str, float] = field(default_factory=dict)
    error: str = ""


class Counter:
    """Counts the costs of the network of each subset (cached), on the meta device."""

    def __init__(self, a: Network, b: Network, input_size: int, memory_batch: int, choices: Sequence[str]) -> None:
        self.a, self.b, self.size, self.memory_batch = a, b, input_size, memory_batch
        self.every = frozenset(choices)
        self.cache: dict[frozenset, Costs] = {}

    def spec(self, subset: frozenset) -> NetSpec:
        return spec_of(self.a, self.b, subset, self.every)

    def __call__(self, subset: frozenset) -> Costs:
        if subset not in self.cache:
            self.cache[subset] = self._count(subset)
        return self.cache[subset]

    def _count(self, subset: frozenset) -> Costs:
        try:
            spec = self.spec(subset)
            spec.check_input_size(self.size, "input_size")
        except ConfigError as e:
            return Costs(error=str(e))
        with torch.device("meta"):
            net = Net(spec)
        c, m = profile(net, self.size), profile_memory(net, self.size)
        return Costs({"params": c.params, "macs": c.macs, "memory": m.peak(self.memory_batch)})


def greedy_order(choices: Sequence[str], count: Counter, cost: str = "params") -> list[str]:
    """The largest saving of `cost` first, through valid networks only."""
    order, done = [], frozenset()
    while len(order) < len(choices):
        options = [(count(done | {c}).values[cost] - count(done).values[cost], i, c)
                   for i, c in enumerate(choices) if c not in done and not count(done | {c}).error]
        if not options:
            raise ConfigError(f"no valid next step after {', '.join(order) or 'A'}: every remaining choice gives an "
                              "invalid network")
        _, _, best = min(options)
        order.append(best)
        done = done | {best}
    return order


def check_order(order: Sequence[str], choices: Sequence[str], count: Counter) -> list[str]:
    """`order=` given by the user: exactly the differing choices, through valid networks (one-line errors)."""
    order = [str(o) for o in order]
    if sorted(order) != sorted(choices):
        raise ConfigError(f"order={','.join(order)} must list each differing choice once: {', '.join(choices)}")
    done = frozenset()
    for step, choice in enumerate(order, 1):
        done = done | {choice}
        if count(done).error:
            raise ConfigError(f"order={','.join(order)} passes through an invalid network at step {step} "
                              f"({choice}): {count(done).error}; put another choice first")
    return order


@dataclass
class Explanation:
    a: Network
    b: Network
    input_size: int
    memory_batch: int
    choices: list[str]
    order: list[str]
    steps: list[dict[str, Any]]  # roadmap: step, change, costs, deltas
    attribution: Attribution
    totals: dict[str, tuple[float, float]]  # cost -> (A, B)
    timing: dict[str, Any] = field(default_factory=dict)


def explain(a_entry: str | Mapping[str, Any], b_entry: str | Mapping[str, Any], input_size: int | None = None,
            num_classes: int | None = None, order: Sequence[str] | None = None, memory_batch: int = 64,
            time_options: Mapping[str, Any] | None = None) -> Explanation:
    """The roadmap from A to B and the Shapley attribution of every cost (see the module docstring).
    `time_options` (device, precision, batch_size, repeats, all): measure time along the roadmap (all=True: every
    network, so that time gets a Shapley attribution too)."""
    a, b = resolve(a_entry, "a", num_classes), resolve(b_entry, "b", num_classes)
    if input_size is None and a.input_size != b.input_size:
        raise ConfigError(f"a={a.label} is designed for {a.input_size} px and b={b.label} for {b.input_size} px: "
                          "set input_size=<pixels>")
    size = int(input_size or a.input_size)
    choices = differing(a, b)
    count = Counter(a, b, size, memory_batch, choices)
    for side, net, subset in (("a", a, frozenset()), ("b", b, frozenset(choices))):
        if count(subset).error:
            raise ConfigError(f"{side}={net.label}: {count(subset).error}")
    chosen = check_order(order, choices, count) if order else greedy_order(choices, count)
    timed = dict(time_options or {})
    if timed:
        _time(count, chosen, timed)
    costs = [*COSTS, *(["time"] if timed.get("all") else [])]
    attribution = shapley(choices, lambda s: None if count(s).error else {k: count(s).values[k] for k in costs},
                          INTEGER_COSTS)
    steps = roadmap(count, chosen, [*COSTS, *(["time"] if timed else [])])
    totals = {k: (count(frozenset()).values[k], count(frozenset(choices)).values[k]) for k in costs}
    return Explanation(a, b, size, memory_batch, choices, chosen, steps, attribution, totals, timed)


def _time(count: Counter, order: Sequence[str], options: Mapping[str, Any]) -> None:
    """Measured forward+backward ms per image of the roadmap's networks (of every valid network with `all`)."""
    subsets = [frozenset(order[:k]) for k in range(len(order) + 1)]
    if options.get("all"):
        subsets = [s for s in count.cache if not count(s).error]
    batch = int(options.get("batch_size", 1))
    for subset in subsets:
        t = measure(Net(count.spec(subset)), count.size, batch, str(options.get("device", "cpu")),
                    str(options.get("precision", "32")), repeats=int(options.get("repeats", 5)), layers=False)
        count(subset).values["time"] = t.total.fwdbwd_ms / batch


def roadmap(count: Counter, order: Sequence[str], costs: Sequence[str]) -> list[dict[str, Any]]:
    steps, done, previous = [], frozenset(), None
    for k, change in enumerate([None, *order]):
        if change is not None:
            done = done | {change}
        values = count(done).values
        step = {"step": k, "change": change, **{c: values.get(c) for c in costs}}
        if previous is not None:
            step.update({f"delta/{c}": _minus(values.get(c), previous.get(c)) for c in costs})
        steps.append(step)
        previous = values
    return steps


def _minus(x: float | None, y: float | None) -> float | None:
    return None if x is None or y is None or (isinstance(x, float) and math.isnan(x)) else x - y
