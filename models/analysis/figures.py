"""Every figure the project draws (matplotlib, Agg): accuracy vs cost with the Pareto front, error vs depth (only
where plain and residual twins of one family were trained), where parameters and MACs live, the roadmap and its
waterfalls, and the measured per-layer and roofline views. Each figure carries a footnote saying what the numbers
come from, and its layout verdict (`models.utils.plotting.finish`)."""

from __future__ import annotations

import itertools
import math
import statistics
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from models.analysis.runs import ACC, Configuration, config_without, context
from models.complexity import GROUPS
from models.utils.plotting import finish, keep_labels_inside, log_axis, pyplot, separate_labels, wrap


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both cost (lower) and accuracy (higher), by increasing cost."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], -math.inf
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def plot_tradeoff(rows: Sequence[Configuration], cost: str, path: str | Path, title: str = "") -> Path | None:
    """Test top-1 vs `cost` ("macs" or "params"), log x, error bars = std, point area ~ params, Pareto front marked."""
    pts = [(r, r.value(cost), *r.stat(ACC)) for r in rows]
    pts = [(r, c, m, s) for r, c, m, s, _ in pts if c and m is not None]
    if not pts:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 5))
    biggest = max(r.value("params") or 1 for r, *_ in pts)
    sizes = [30 + 400 * math.sqrt((r.value("params") or 0) / biggest) for r, *_ in pts]
    xs, ys = [c for _, c, _, _ in pts], [100 * m for _, _, m, _ in pts]
    ax.errorbar(xs, ys, yerr=[100 * (s or 0) for *_, s in pts], fmt="none", ecolor="grey", alpha=0.6, zorder=1)
    ax.scatter(xs, ys, s=sizes, alpha=0.6, color="#4c72b0", edgecolor="k", zorder=2)
    front = pareto_front(list(zip(xs, ys)))
    ax.plot([xs[i] for i in front], [ys[i] for i in front], "--", color="#c44e52", zorder=3, label="Pareto front")
    ax.scatter([xs[i] for i in front], [ys[i] for i in front], s=12, color="#c44e52", zorder=4)
    labels = [ax.annotate(text, (x, y), textcoords="offset points", xytext=(6, 4), fontsize=8)
              for text, x, y in point_labels([r.label or str(r.config.get("model")) for r, *_ in pts], xs, ys)]
    ax.set_xscale("log")
    log_axis(ax.xaxis, xs)
    ax.margins(x=0.08, y=0.08)
    ax.set_xlabel("MACs per image (FLOPs = 2 x MACs)" if cost == "macs" else "parameters")
    ax.set_ylabel("test top-1 (%, mean over seeds)")
    ax.set_title(title or f"accuracy vs {cost} (point area ~ params)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="best")
    fig.tight_layout()
    keep_labels_inside(ax, labels)
    separate_labels(ax, labels)
    return finish(fig, path, context(rows))


def point_labels(names: Sequence[str], xs: Sequence[float], ys: Sequence[float]) -> list[tuple[str, float, float]]:
    """One label per distinct point: runs at the same cost and accuracy (e.g. two presets that are the same net)
    share one label, "a / b", instead of printing on top of each other."""
    merged: dict[tuple[float, float], list[str]] = {}
    for name, x, y in zip(names, xs, ys):
        merged.setdefault((round(x, 9), round(y, 6)), []).append(name)
    return [(" / ".join(group), x, y) for (x, y), group in merged.items()]


def plot_parts(bars: Sequence[tuple], path: str | Path, title: str, note: str = "") -> Path:
    """Stacked bars: where the parameters and the MACs live (and, when every bar has it, the measured time).
    `bars`: (label, params by group, MACs by group[, time shares by group]) per model, groups = stem / stages / head
    (`models.complexity.group_totals`)."""
    plt = pyplot()
    colors = {"stem": "#4c72b0", "stages": "#55a868", "head": "#c44e52"}
    # counts as drawn, with engineering suffixes (k, M, G); shares as percentages
    panels = [(1, "parameters", 1.0), (2, "MACs per image (FLOPs = 2 x MACs)", 1.0)]
    if bars and all(len(bar) > 3 for bar in bars):
        panels.append((3, "share of measured fwd+bwd time", 1.0))
    from matplotlib.ticker import EngFormatter, PercentFormatter

    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels) + 2.5, 0.5 * len(bars) + 2.5), squeeze=False,
                             sharey=True)
    axes = axes[0]
    labels = ["\n".join(textwrap.wrap(bar[0], 30)) or bar[0] for bar in bars]  # long names wrap (even within words)
    for ax, (index, xlabel, scale) in zip(axes, panels):
        # no offset text ("1e7") to collide with the label
        ax.xaxis.set_major_formatter(PercentFormatter(1.0) if index == 3 else EngFormatter(sep=""))
        left = [0.0] * len(bars)
        for g in GROUPS:
            values = [bar[index].get(g, 0) / scale for bar in bars]
            ax.barh(labels, values, left=left, color=colors[g], label=g)
            left = [a + b for a, b in zip(left, values)]
        ax.set_xlabel(xlabel)
        ax.grid(axis="x", alpha=0.3)
        if index == 3:
            ax.set_xlim(0, 1)  # shares: the whole is 100%
    axes[0].invert_yaxis()  # shared by every panel: the first bar on top
    axes[-1].legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)  # beside the bars, never on them
    fig.suptitle(wrap(title, int(14 * fig.get_figwidth())))
    return finish(fig, path, note)


TWIN_KNOBS = ("model", "model/name", "model/residual", "model/shortcut", "model/zero_init_residual", "model/depth",
              "model/depths")  # what may differ between a plain net and its residual twin of the same depth


def residual_twins(rows: Sequence[Configuration]) -> list[tuple[int, Configuration, Configuration]]:
    """(depth, plain, residual) pairs of rows that differ ONLY in the skip connections (He et al.'s plain-n vs
    ResNet-n: same layers, same everything else)."""
    pairs = []
    for plain in (r for r in rows if r.config.get("model/residual") is False):
        for res in (r for r in rows if r.config.get("model/residual") is True):
            twins = plain.config.get("model/depths") == res.config.get("model/depths") and \
                config_without(plain, TWIN_KNOBS) == config_without(res, TWIN_KNOBS)
            if twins and plain.stat(ACC)[0] is not None and res.stat(ACC)[0] is not None:
                pairs.append((int(plain.config.get("model/depth") or 0), plain, res))
    return sorted(pairs, key=lambda p: p[0])


def plot_error_vs_depth(rows: Sequence[Configuration], path: str | Path) -> Path | None:
    """He et al. Fig. 6: test error vs depth for plain nets and their residual twins. Drawn only where that premise
    holds: at least two depths with a plain net and a residual net differing in nothing but the skip connections."""
    twins = residual_twins(rows)
    if len({depth for depth, *_ in twins}) < 2:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for index, (name, color) in ((1, ("plain-n", "#c44e52")), (2, ("ResNet-n", "#4c72b0"))):
        stats = [(depth, *pair[index - 1].stat(ACC)) for depth, *pair in twins]
        ax.errorbar([d for d, *_ in stats], [100 * (1 - m) for _, m, _, _ in stats],
                    yerr=[100 * (s or 0) for *_, s, _ in stats], marker="o", capsize=3, color=color, label=name)
    ax.set_xlabel("depth (weighted layers)")
    ax.set_ylabel("test error (%)")
    ax.set_title("test error vs depth: plain vs residual twins (cf. He et al. 2016, Fig. 6)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend()
    return finish(fig, path, context(rows))


def plot_error_per_epoch(rows: Sequence[Configuration], path: str | Path) -> Path | None:
    """He et al. 2016 Fig. 6 from the runs' CSV histories: training error (dashed) and held-out error (solid) per
    epoch, plain nets on the left and their residual twins on the right (one panel when the grid has no twins), the
    mean over each configuration's finished seeds. Held out = the validation split (test is evaluated once, at the
    end, on the checkpoint that split selected)."""
    from models.analysis.runs import epoch_history

    curves = []
    for r in rows:
        histories = [h for h in (epoch_history(run) for run in r.finished()) if h]
        if not histories:
            continue
        epochs = min(len(h) for h in histories)
        mean = [(histories[0][i][0] + 1, *(statistics.fmean(h[i][k] for h in histories if h[i][k] is not None)
                                         for k in (1, 2))) for i in range(epochs)]
        curves.append((r, mean))
    if not curves:
        return None
    plt = pyplot()
    split = any(r.config.get("model/residual") is False for r, _ in curves) and \
        any(r.config.get("model/residual") is True for r, _ in curves)
    panels = [("plain", False), ("residual", True)] if split else [("", None)]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.5), squeeze=False, sharey=True)
    colors = itertools.cycle(("#4c72b0", "#c44e52", "#55a868", "#8172b2", "#ccb974", "#64b5cd"))
    by_depth: dict[Any, str] = {}
    for ax, (name, residual) in zip(axes[0], panels):
        for r, mean in curves:
            if residual is not None and r.config.get("model/residual") is not residual:
                continue
            color = by_depth.setdefault(r.config.get("model/depth") if split else id(r), next(colors))
            label = r.label or str(r.config.get("model"))
            xs = [e for e, _, _ in mean]
            ax.plot(xs, [100 * (1 - t) for _, t, _ in mean], "--", lw=1, color=color, label=f"{label} train")
            ax.plot(xs, [100 * (1 - v) for _, _, v in mean], "-", lw=2, color=color, label=f"{label} held out")
        ax.set_xlabel("epoch")
        ax.set_title(f"{name} nets" if name else "error per epoch", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper right")
    axes[0][0].set_ylabel("error (%): dashed training, solid held out")
    note = (context(rows) + "; training error = running error over each epoch's augmented batches; held out = the "
            "validation split (the test split is evaluated once, at the end)")
    return finish(fig, path, note)


def _weighted_layers(row: Any) -> list[tuple[Any, Any]]:
    """(layer stats, layer timing) of the conv/linear layers of a measured comparison row, in network order."""
    timed = {t.name: t for t in row.timing.layers}
    return [(layer, timed[layer.name]) for layer in row.complexity.layers if layer.macs and layer.name in timed]


def plot_layer_profile(rows: Sequence[Any], path: str | Path) -> Path:
    """Per weighted layer along depth, for each compared model: its share of the model's parameters, of its MACs and
    of its measured forward+backward time (log scale): VGG's head holds the parameters, its early convs the MACs."""
    plt = pyplot()
    fig, axes = plt.subplots(len(rows), 1, figsize=(12, 2.4 * len(rows) + 0.8), squeeze=False)
    for ax, row in zip(axes[:, 0], rows):
        layers = _weighted_layers(row)
        total_ms = row.timing.total.fwdbwd_ms
        shares = {"params": [s.params / row.complexity.params for s, _ in layers],
                  "MACs": [s.macs / row.complexity.macs for s, _ in layers],
                  "time (fwd+bwd)": [t.fwdbwd_ms / total_ms for _, t in layers]}
        x = list(range(len(layers)))
        for k, (label, values) in enumerate(shares.items()):
            ax.bar([i + (k - 1) * 0.28 for i in x], values, width=0.28, label=label,
                   color=("#c44e52", "#4c72b0", "#55a868")[k])
        ax.set_yscale("log")
        ax.set_ylim(1e-5, 1.5)
        ax.set_ylabel("share of model")
        ax.set_title(row.label, fontsize=9, loc="left")
        starts = [i for i, (s, _) in enumerate(layers) if i == 0 or layers[i - 1][0].part != s.part]
        ax.set_xticks(starts)  # each part's first layer, named by its part (all its layers follow in order)
        ax.set_xticklabels([layers[i][0].part for i in starts], fontsize=8)
        for i in starts[1:]:
            ax.axvline(i - 0.5, color="grey", lw=0.5, alpha=0.5)
        ax.grid(axis="y", alpha=0.3)
    axes[0, 0].legend(loc="upper right", ncol=3, fontsize=8)
    axes[-1, 0].set_xlabel("conv / linear layers in network order; ticks mark where each part starts")
    t = rows[0].timing
    note = f"time: {t.device}, precision {t.precision}, batch {t.batch_size}, median of {t.rounds} runs"
    return finish(fig, path, note)


def plot_roofline(rows: Sequence[Any], path: str | Path) -> Path:
    """Every conv/linear layer's arithmetic intensity (FLOPs per byte moved, unfused) against the FLOP/s it reached
    (forward), under the device's measured ceilings: a large matrix product and a large copy."""
    import torch

    from models.timing import resolve_precision
    from models.utils.system import copy_bandwidth, matmul_peak

    t = rows[0].timing
    device = t.device
    dtype = resolve_precision(t.precision, torch.device(device))
    element_bytes = dtype.itemsize  # activations and weights at the run's precision
    peak, bandwidth = matmul_peak(device, dtype), copy_bandwidth(device)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 5.5))
    every_x, above = [], 0
    for row in rows:
        layers = _weighted_layers(row)
        xs = [s.intensity(element_bytes, t.batch_size) for s, _ in layers]
        ys = [2 * s.macs * t.batch_size / (lt.fwd_ms / 1e3) for s, lt in layers]
        ax.scatter(xs, ys, s=14, alpha=0.7, label=row.label)
        every_x += xs
        above += sum(y > min(peak, bandwidth * x) for x, y in zip(xs, ys))
    lo, hi = min([*every_x, peak / bandwidth]) / 3, max([*every_x, peak / bandwidth]) * 3
    grid = [lo * (hi / lo) ** (i / 200) for i in range(201)]
    ax.plot(grid, [min(peak, bandwidth * x) for x in grid], "k--", lw=1,
            label=f"ceilings: {peak / 1e9:,.0f} GFLOP/s, {bandwidth / 1e9:,.1f} GB/s (measured)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (FLOPs per byte moved, weights + activations, unfused)")
    ax.set_ylabel("achieved FLOP/s (forward, per layer)")
    ax.set_title("Roofline: where each layer's time goes")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="lower right")
    note = f"{device}, precision {t.precision}, batch {t.batch_size}; ceilings: torch.mm and a tensor copy"
    if above:  # the ceilings are one large matmul and one large copy: small layers that stay in cache beat them
        note += (f". {above} layer(s) sit above the measured ceilings: those are one large torch.mm and one large "
                 "copy (data from main memory); a small layer whose weights and activations stay in cache can beat "
                 "them, so read the ceilings as typical, not absolute, limits")
    return finish(fig, path, note)


def plot_waterfall(start: tuple[str, float], steps: Sequence[tuple[str, float]], end: tuple[str, float],
                   path: str | Path, title: str, ylabel: str, note: str) -> Path:
    """A waterfall: A's value, each choice's contribution as a floating bar (red: adds, green: removes), B's value.
    The contributions add up to B - A exactly (Shapley values), so the last floating bar lands on B. Additions come
    first, then removals, so that the running level never dips below the smaller end (no negative costs drawn)."""
    steps = sorted(steps, key=lambda s: (s[1] <= 0, -abs(s[1])))
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(1.25 * (len(steps) + 2) + 2.5, 5))
    labels = [start[0], *(name for name, _ in steps), end[0]]
    level = start[1]
    ax.bar(0, start[1], color="#8c8c8c")
    for i, (_, delta) in enumerate(steps, 1):
        ax.bar(i, delta, bottom=level, color="#c44e52" if delta > 0 else "#55a868")
        ax.annotate(f"{delta:+,.3g}", (i, level + max(delta, 0)), textcoords="offset points", xytext=(0, 3),
                    ha="center", fontsize=8)
        ax.plot([i - 1.4, i + 0.4], [level, level], color="grey", lw=0.6)
        level += delta
    ax.bar(len(steps) + 1, end[1], color="#4c72b0")
    for x, value in ((0, start[1]), (len(steps) + 1, end[1])):
        ax.annotate(f"{value:,.3g}", (x, value), textcoords="offset points", xytext=(0, 3), ha="center", fontsize=8)
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels([wrap(label.replace("_", " "), 12) for label in labels], fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(wrap(title, 80), fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    ax.set_ylim(0, 1.15 * max(itertools.accumulate((delta for _, delta in steps), initial=start[1])))
    return finish(fig, path, note)


def plot_roadmap(steps: Sequence[tuple[str, float | None, float | None, int, float, float]], path: str | Path,
                 title: str, note: str) -> Path:
    """ConvNeXt's roadmap figure for any two networks: one bar per step (A, then one design choice changed at a
    time, to B), its test top-1 (mean over seeds, error bar = std), its MACs and params written beside it.
    `steps`: (label, accuracy mean, std, n seeds, MACs, params)."""
    from models.utils.tables import unit

    m_div, m_unit = unit([s[4] for s in steps], "MACs")
    p_div, p_unit = unit([s[5] for s in steps], "params")
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(9, 0.55 * len(steps) + 2.2))
    ys = list(range(len(steps)))
    means = [m if m is not None else 0.0 for _, m, *_ in steps]
    ax.barh(ys, [100 * m for m in means], xerr=[100 * (s or 0) for _, _, s, *_ in steps], color="#4c72b0",
            alpha=0.8, capsize=3)
    for y, (_, m, s, n, macs, params) in zip(ys, steps):
        acc = "not trained yet" if m is None else f"{100 * m:.1f}%" + (f" ± {100 * s:.1f}" if s else "") + f" (n={n})"
        ax.text(100 * ((m or 0) + (s or 0)) + 1.5, y, f"{acc}   {macs / m_div:,.2f} {m_unit}   "
                f"{params / p_div:,.2f} {p_unit.replace('params ', '').strip('()')} params", va="center", fontsize=8)
    ax.set_yticks(ys)
    ax.set_yticklabels([label for label, *_ in steps], fontsize=9)
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("test top-1 (%)")
    ax.set_title(wrap(title, 90), fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    return finish(fig, path, note)


def plot_effects(found: Sequence[Any], path: str | Path, note: str) -> Path | None:
    """A forest plot: each paired effect on test top-1 (percentage points) with its 95% interval, zero marked."""
    if not found:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8.5, 0.45 * len(found) + 1.8))
    ys = list(range(len(found)))
    for y, e in zip(ys, found):
        color = "#4c72b0" if e.low is not None else "#8c8c8c"
        lo = 100 * (e.mean - (e.low if e.low is not None else e.mean))
        hi = 100 * ((e.high if e.high is not None else e.mean) - e.mean)
        ax.errorbar([100 * e.mean], [y], xerr=[[lo], [hi]], fmt="o", color=color, capsize=3)
    ax.axvline(0, color="grey", lw=0.8)
    ax.set_yticks(ys)
    ax.set_yticklabels([wrap(f"{e.axis.removeprefix('model/')}: {e.a} -> {e.b} ({e.pair})"
                             + ("" if e.low is not None else ", n too small"), 48) for e in found], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("effect on test top-1 (percentage points), mean of seed pairs with 95% CI")
    ax.grid(axis="x", alpha=0.3)
    return finish(fig, path, note)


def plot_compute_curves(curves: Sequence[tuple[str, list[float], list[float]]], path: str | Path, xlabel: str,
                        note: str, x_scale: float = 1.0, unit: str = "") -> Path | None:
    """Validation top-1 against what training spent (PFLOPs or wall seconds): one curve per configuration, the
    mean over its seeds; the efficiency the step axis hides (a step of VGG-16 is not a step of ResNet-20)."""
    curves = [c for c in curves if c[1]]
    if not curves:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 5))
    for label, xs, ys in curves:
        ax.plot([x * x_scale for x in xs], [100 * y for y in ys], marker="o", ms=3, label=wrap(label, 40))
    if all(x > 0 for _, xs, _ in curves for x in xs):
        ax.set_xscale("log")
        log_axis(ax.xaxis, [x * x_scale for _, xs, _ in curves for x in xs], unit)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("validation top-1 (%)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="best")
    return finish(fig, path, note)
