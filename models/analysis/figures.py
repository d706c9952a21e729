"""Every figure the project draws (matplotlib, Agg): accuracy vs cost with the Pareto front, error vs depth, and
where parameters and MACs live. Each figure carries a footnote saying what the numbers come from."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from models.analysis.tables import ACC, context
from models.complexity import GROUPS

if TYPE_CHECKING:
    from models.analysis.runs import Configuration


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both cost (lower) and accuracy (higher), by increasing cost."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], -math.inf
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def _finish(fig: Any, path: str | Path, note: str) -> Path:
    """Footnote with what the runs were (hardware, epochs, data), then save: a figure never travels without it."""
    fig.text(0.01, 0.005, note, fontsize=7, color="grey", va="bottom")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    fig.savefig(path, dpi=110)
    _pyplot().close(fig)
    return Path(path)


def plot_tradeoff(rows: Sequence[Configuration], cost: str, path: str | Path, title: str = "") -> Path | None:
    """Test top-1 vs `cost` ("macs" or "params"), log x, error bars = std, point area ~ params, Pareto front marked."""
    pts = [(r, r.value(cost), *r.stat(ACC)) for r in rows]
    pts = [(r, c, m, s) for r, c, m, s, _ in pts if c and m is not None]
    if not pts:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 5))
    biggest = max(r.value("params") or 1 for r, *_ in pts)
    sizes = [30 + 400 * math.sqrt((r.value("params") or 0) / biggest) for r, *_ in pts]
    xs, ys = [c for _, c, _, _ in pts], [m for _, _, m, _ in pts]
    ax.errorbar(xs, ys, yerr=[s or 0 for *_, s in pts], fmt="none", ecolor="grey", alpha=0.6, zorder=1)
    ax.scatter(xs, ys, s=sizes, alpha=0.6, color="#4c72b0", edgecolor="k", zorder=2)
    front = pareto_front(list(zip(xs, ys)))
    ax.plot([xs[i] for i in front], [ys[i] for i in front], "--", color="#c44e52", zorder=3, label="Pareto front")
    ax.scatter([xs[i] for i in front], [ys[i] for i in front], s=12, color="#c44e52", zorder=4)
    for (r, *_), x, y in zip(pts, xs, ys):
        ax.annotate(r.label or str(r.config.get("model")), (x, y), textcoords="offset points", xytext=(6, 4),
                    fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("MACs per image (FLOPs = 2 x MACs)" if cost == "macs" else "parameters")
    ax.set_ylabel("test top-1 (mean over seeds)")
    ax.set_title(title or f"accuracy vs {cost} (point area ~ params)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="best")
    return _finish(fig, path, context(rows))


def plot_parts(bars: Sequence[tuple], path: str | Path, title: str, note: str = "") -> Path:
    """Stacked bars: where the parameters and the MACs live (and, when every bar has it, the measured time).
    `bars`: (label, params by group, MACs by group[, time shares by group]) per model, groups = stem / stages / head
    (`models.complexity.group_totals`)."""
    plt = _pyplot()
    colors = {"stem": "#4c72b0", "stages": "#55a868", "head": "#c44e52"}
    panels = [(1, "parameters (millions)", 1e6), (2, "MACs (billions; FLOPs = 2 x MACs)", 1e9)]
    if bars and all(len(bar) > 3 for bar in bars):
        panels.append((3, "share of measured fwd+bwd time", 1.0))
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 0.5 * len(bars) + 2.5), squeeze=False)
    axes = axes[0]
    labels = [bar[0] for bar in bars]
    for ax, (index, xlabel, scale) in zip(axes, panels):
        left = [0.0] * len(bars)
        for g in GROUPS:
            values = [bar[index].get(g, 0) / scale for bar in bars]
            ax.barh(labels, values, left=left, color=colors[g], label=g)
            left = [a + b for a, b in zip(left, values)]
        ax.set_xlabel(xlabel)
        ax.invert_yaxis()
        ax.grid(axis="x", alpha=0.3)
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=len(GROUPS), frameon=False)
    fig.suptitle(title)
    if note:
        fig.text(0.01, 0.005, note, fontsize=7, color="grey", va="bottom")
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def plot_error_vs_depth(rows: Sequence[Configuration], path: str | Path) -> Path | None:
    """He et al. Fig. 6: test error vs depth, one line per family (residual / plain). Needs both knobs to vary."""
    pts = [(r.config.get("model/residual"), r.config.get("model/depth"), *r.stat(ACC)) for r in rows]
    pts = [p for p in pts if p[0] is not None and p[1] is not None and p[2] is not None]
    if len({p[0] for p in pts}) < 2 or len({p[1] for p in pts}) < 2:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for residual, color in ((False, "#c44e52"), (True, "#4c72b0")):
        line = sorted(p for p in pts if p[0] == residual)
        if line:
            ax.errorbar([p[1] for p in line], [100 * (1 - p[2]) for p in line], yerr=[100 * (p[3] or 0) for p in line],
                        marker="o", capsize=3, color=color, label=("ResNet" if residual else "plain") + "-n")
    ax.set_xlabel("depth (weighted layers)")
    ax.set_ylabel("test error (%)")
    ax.set_title("test error vs depth (He et al. 2016, Fig. 6)")
    ax.grid(alpha=0.3)
    ax.legend()
    return _finish(fig, path, context(rows))


def _weighted_layers(row: Any) -> list[tuple[Any, Any]]:
    """(layer stats, layer timing) of the conv/linear layers of a measured comparison row, in network order."""
    timed = {t.name: t for t in row.timing.layers}
    return [(layer, timed[layer.name]) for layer in row.complexity.layers if layer.macs and layer.name in timed]


def plot_layer_profile(rows: Sequence[Any], path: str | Path) -> Path:
    """Per weighted layer along depth, for each compared model: its share of the model's parameters, of its MACs and
    of its measured forward+backward time (log scale): VGG's head holds the parameters, its early convs the MACs."""
    plt = _pyplot()
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
        ax.set_xticks(x[:: max(1, len(x) // 20)])
        ax.grid(axis="y", alpha=0.3)
    axes[0, 0].legend(loc="upper right", ncol=3, fontsize=8)
    axes[-1, 0].set_xlabel("conv / linear layer, input to output")
    t = rows[0].timing
    note = f"time: {t.device}, precision {t.precision}, batch {t.batch_size}, median of {t.repeats} runs"
    return _finish(fig, path, note)


def plot_roofline(rows: Sequence[Any], path: str | Path) -> Path:
    """Every conv/linear layer's arithmetic intensity (FLOPs per byte moved, unfused) against the FLOP/s it reached
    (forward), under the device's measured ceilings: a large matrix product and a large copy."""
    import torch

    from models.bench.timing import resolve_precision
    from models.utils.system import copy_bandwidth, matmul_peak

    t = rows[0].timing
    device = t.device
    dtype = resolve_precision(t.precision, torch.device(device))
    element_bytes = dtype.itemsize  # activations and weights at the run's precision
    peak, bandwidth = matmul_peak(device, dtype), copy_bandwidth(device)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 5.5))
    every_x = []
    for row in rows:
        layers = _weighted_layers(row)
        xs = [s.intensity(element_bytes, t.batch_size) for s, _ in layers]
        ys = [2 * s.macs * t.batch_size / (lt.fwd_ms / 1e3) for s, lt in layers]
        ax.scatter(xs, ys, s=14, alpha=0.7, label=row.label)
        every_x += xs
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
    return _finish(fig, path, note)
