"""Order-free attribution of a difference to the choices that make it (Shapley values), over every order of the
choices, some of which may be impossible.

A network is A with some of the choices switched to B's values: a subset S of the choices. `value(S)` is its cost
(None when S is not a valid network). Walking an order adds the choices one at a time; a choice's marginal effect in
that order is the cost after it minus the cost before it. Its Shapley value is that marginal effect averaged over every
order, so the values add up exactly to value(all) - value(none) whatever the order. Orders that pass through an
invalid network are left out (and counted): the average runs over the valid orders only, which keeps the exact sum.
Integer costs (parameters, MACs, bytes) are shared out as integers by the largest-remainder rule, still summing
exactly to the total.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction

Value = Callable[[frozenset], Mapping[str, float] | None]


@dataclass
class Attribution:
    shapley: dict[str, dict[Hashable, float]]  # cost -> choice -> value
    valid_orders: int
    invalid_orders: int
    networks: int  # distinct valid networks evaluated


def largest_remainder(shares: Mapping[Hashable, Fraction], total: int) -> dict[Hashable, int]:
    """Integers, one per share, each within 1 of its share and summing exactly to `total` (= the shares' sum)."""
    floors = {k: math.floor(v) for k, v in shares.items()}
    left = total - sum(floors.values())
    for k in sorted(shares, key=lambda k: shares[k] - floors[k], reverse=True)[:left]:
        floors[k] += 1
    return floors


def shapley(choices: Sequence[Hashable], value: Value, integer_costs: Sequence[str] = ()) -> Attribution:
    """Shapley value of each choice for every cost `value` returns (see the module docstring)."""
    cache: dict[frozenset, Mapping[str, float] | None] = {}

    def v(subset: frozenset) -> Mapping[str, float] | None:
        if subset not in cache:
            cache[subset] = value(subset)
        return cache[subset]

    start, end = v(frozenset()), v(frozenset(choices))
    if start is None or end is None:
        raise ValueError("the two end points must be valid networks")
    costs = list(start)
    sums: dict[str, dict[Hashable, Fraction]] = {c: dict.fromkeys(choices, Fraction(0)) for c in costs}
    valid = invalid = 0
    for order in itertools.permutations(choices):
        path, before, walked = frozenset(), start, []
        for choice in order:
            path = path | {choice}
            after = v(path)
            if after is None:
                break
            walked.append((choice, before, after))
            before = after
        else:
            valid += 1
            for choice, b, a in walked:
                for c in costs:
                    sums[c][choice] += Fraction(a[c]) - Fraction(b[c])
            continue
        invalid += 1
    if not valid:
        raise ValueError("every order of the choices passes through an invalid network")
    out: dict[str, dict[Hashable, float]] = {}
    for c in costs:
        mean = {k: s / valid for k, s in sums[c].items()}
        if c in integer_costs:
            out[c] = largest_remainder(mean, int(end[c]) - int(start[c]))
        else:
            out[c] = {k: float(x) for k, x in mean.items()}
    return Attribution(out, valid, invalid, sum(x is not None for x in cache.values()))
