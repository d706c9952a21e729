"""Every figure the project draws (matplotlib, Agg): accuracy vs cost with the Pareto front, error vs depth, and
where parameters and MACs live. Each figure carries a footnote saying what the numbers come from."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
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


def plot_parts(bars: Sequence[tuple[str, Mapping[str, float], Mapping[str, float]]], path: str | Path,
               title: str, note: str = "") -> Path:
    """Two panels of stacked bars: where the parameters and the MACs live. `bars`: (label, params by group,
    MACs by group) per model, groups = stem / stages / head (`models.complexity.group_totals`)."""
    plt = _pyplot()
    colors = {"stem": "#4c72b0", "stages": "#55a868", "head": "#c44e52"}
    fig, axes = plt.subplots(1, 2, figsize=(12, 0.5 * len(bars) + 2.5))
    labels = [label for label, _, _ in bars]
    for ax, index, xlabel, scale in ((axes[0], 1, "parameters (millions)", 1e6),
                                     (axes[1], 2, "MACs (billions; FLOPs = 2 x MACs)", 1e9)):
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
