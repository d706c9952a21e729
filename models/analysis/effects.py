"""Paired effects: for each ablation axis of a grid, what switching that knob does with everything else equal.

Two configurations are a pair for a knob when their configurations differ in that knob only (and in what follows
from it: the preset name, the derived depth or width). Their runs are paired by seed; the effect is the mean of the
per-seed differences (B - A), with a 95% confidence interval from Student's t over the n pairs
(`scipy.stats.t`; "n too small" under 2 pairs). Costs (params, MACs, memory) do not vary with the seed: their
interval is zero wide, their difference exact.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from models.analysis.runs import ACC, Configuration, config_without, varied_columns

METRICS = (("test top-1", ACC), ("params", "params"), ("MACs", "macs"), ("train memory GiB", "memory/peak_bytes"),
           ("fwd+bwd ms/image", "time/total/fwdbwd_ms"), ("train img/s", "train/images_per_s"))
FOLLOWS = {"model/depth": ("model/depths",), "model/width": ("model/widths",), "model/depths": ("model/depth",),
           "model/widths": ("model/width",)}  # knobs that change together with the axis
SCALE = {"memory/peak_bytes": 2**30}
FORMATS = {"test top-1": "{:+.3f}", "params": "{:+,.0f}", "MACs": "{:+,.0f}", "train memory GiB": "{:+.4f}",
           "fwd+bwd ms/image": "{:+.3g}", "train img/s": "{:+,.0f}"}


@dataclass
class Effect:
    axis: str
    a: Any  # the axis value switched from
    b: Any  # ... to
    pair: str  # which pair of configurations (their labels)
    metric: str
    mean: float | None
    low: float | None
    high: float | None
    n: int

    def interval(self, fmt: str | None = None) -> str:
        """`+0.030 [+0.005, +0.055]`; an exact difference (a cost: the same for every seed) without an interval."""
        fmt = fmt or FORMATS.get(self.metric, "{:+.3g}")
        if self.mean is None:
            return "–"
        if self.low is not None and self.low == self.high:
            return fmt.format(self.mean)
        if self.n < 2:
            return fmt.format(self.mean) + " (n too small)"
        return f"{fmt.format(self.mean)} [{fmt.format(self.low)}, {fmt.format(self.high)}]"


def paired(differences: Sequence[float], level: float = 0.95) -> tuple[float | None, float | None, float | None]:
    """(mean, low, high) of a Student-t interval over paired differences (low/high None under 2 pairs)."""
    from scipy import stats

    if not differences:
        return None, None, None
    mean = statistics.fmean(differences)
    if len(differences) < 2:
        return mean, None, None
    sem = statistics.stdev(differences) / math.sqrt(len(differences))
    half = stats.t.ppf(0.5 + level / 2, len(differences) - 1) * sem
    return mean, mean - half, mean + half


def _by_seed(row: Configuration, key: str) -> dict[Any, float]:
    return {run.get("seed"): float(run[key]) / SCALE.get(key, 1) for run in row.finished()
            if isinstance(run.get(key), (int, float)) and not isinstance(run.get(key), bool)}


def _rest(row: Configuration, axis: str) -> str:
    return config_without(row, {axis, "model", "model/name", *FOLLOWS.get(axis, ())})


def effects(rows: Sequence[Configuration]) -> list[Effect]:
    """Every paired effect of the grid's varied knobs (the first value seen is the baseline A)."""
    out = []
    for axis in [k for k in varied_columns(rows) if k != "model"]:
        values = list(dict.fromkeys(r.config.get(axis) for r in rows if r.config.get(axis) is not None))
        groups: dict[str, dict[Any, Configuration]] = {}
        for r in rows:
            groups.setdefault(_rest(r, axis), {})[repr(r.config.get(axis))] = r
        for group in groups.values():
            base = group.get(repr(values[0]))
            for value in values[1:]:
                other = group.get(repr(value))
                if base is None or other is None:
                    continue
                for name, key in METRICS:
                    a, b = _by_seed(base, key), _by_seed(other, key)
                    seeds = sorted(set(a) & set(b), key=str)
                    mean, low, high = paired([b[s] - a[s] for s in seeds])
                    if mean is not None:
                        out.append(Effect(axis, values[0], value, f"{base.label} -> {other.label}", name, mean, low,
                                          high, len(seeds)))
    return out
