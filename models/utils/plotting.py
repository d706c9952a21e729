"""What every figure shares: matplotlib (Agg), a footnote that wraps instead of running off the canvas, readable
log-scale ticks, point labels kept inside the axes, and the check that nothing overlaps or leaves the canvas
(`layout_problems`, matplotlib's own text bounding boxes: `finish` fixes what it can and writes the verdict into the
PNG, where the tests read it)."""

from __future__ import annotations

import itertools
import math
import textwrap
from pathlib import Path
from typing import Any

DPI = 110
NOTE_POINTS = 7


def pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def wrap(text: str, width: int) -> str:
    return "\n".join(textwrap.wrap(text, width, break_long_words=False)) or text


def log_axis(axis: Any, values: list[float], unit: str = "") -> None:
    """A log axis people can read: engineering labels (200k, 1.5M, 3G; with `unit`: 10 TFLOP) on a few major ticks
    (1-2-5 within two decades, decades only beyond), no minor labels. Plot values in their base unit: a value
    below one shows as milli (m), so 0.02 billion would read "20m"."""
    from matplotlib.ticker import EngFormatter, LogLocator, NullFormatter

    positive = [v for v in values if v and v > 0]
    decades = math.log10(max(positive) / min(positive)) if positive else 0.0
    if decades < 1:  # a narrow range: a few evenly spaced ticks (1-2-5 would leave one or none inside it)
        from matplotlib.ticker import MaxNLocator

        axis.set_major_locator(MaxNLocator(nbins=4))
    else:
        axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0) if decades <= 2 else (1.0,), numticks=8))
    axis.set_major_formatter(EngFormatter(unit=unit, sep=" " if unit else ""))
    axis.set_minor_formatter(NullFormatter())


def _visible_texts(fig: Any) -> list[Any]:
    from matplotlib.text import Text

    return [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip() and t.get_figure() is fig]


def _drawn_ticklabels(axis: Any) -> list[Any]:
    """The tick labels matplotlib really draws: visible, not empty, their tick inside the axes' view."""
    low, high = sorted(axis.get_view_interval())
    ticks = [*axis.get_major_ticks(), *axis.get_minor_ticks()]
    return [t.label1 for t in ticks if t.label1.get_visible() and t.label1.get_text().strip()
            and low - 1e-9 * abs(high - low) <= t.get_loc() <= high + 1e-9 * abs(high - low)]


def layout_problems(fig: Any) -> list[str]:
    """Text that leaves the canvas, and tick labels of one axis that overlap each other (drawn first)."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    width, height = fig.bbox.width, fig.bbox.height
    problems = []
    ticklabels = {id(t.label1) for ax in fig.axes for a in (ax.xaxis, ax.yaxis)
                  for t in (*a.get_major_ticks(), *a.get_minor_ticks())}
    drawn = {id(label) for ax in fig.axes for a in (ax.xaxis, ax.yaxis) for label in _drawn_ticklabels(a)}
    for t in _visible_texts(fig):
        if id(t) in ticklabels and id(t) not in drawn:
            continue
        box = t.get_window_extent(renderer)
        if box.x0 < -1 or box.y0 < -1 or box.x1 > width + 1 or box.y1 > height + 1:
            problems.append(f"outside the canvas: {t.get_text()[:50]!r}")
    for ax in fig.axes:
        notes = [t for t in ax.texts if t.get_visible() and t.get_text().strip()]  # point labels (annotate)
        boxes = [t.get_window_extent(renderer) for t in notes]
        for (i, a), (j, b) in itertools.combinations(enumerate(boxes), 2):
            if a.overlaps(b):
                problems.append(f"point labels overlap: {notes[i].get_text()!r} and {notes[j].get_text()!r}")
        for name, axis in (("x", ax.xaxis), ("y", ax.yaxis)):
            labels = _drawn_ticklabels(axis)
            boxes = [label.get_window_extent(renderer) for label in labels]
            for (i, a), (j, b) in itertools.combinations(enumerate(boxes), 2):
                if a.overlaps(b):
                    pair = f"{labels[i].get_text()!r} and {labels[j].get_text()!r}"
                    problems.append(f"{name} tick labels overlap: {pair}")
    return problems


def keep_labels_inside(ax: Any, annotations: list[Any]) -> None:
    """Point labels that would cross the axes' right edge go to the left of their point instead."""
    fig = ax.figure
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    right = ax.get_window_extent(renderer).x1
    for annotation in annotations:
        if annotation.get_window_extent(renderer).x1 > right:
            annotation.set_horizontalalignment("right")
            x, y = annotation.xyann
            annotation.xyann = (-abs(x), y)


def separate_labels(ax: Any, annotations: list[Any], gap: float = 1.0) -> None:
    """Point labels whose boxes overlap are moved apart vertically (the lower one down), so each stays legible."""
    fig = ax.figure
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    to_points = 72.0 / fig.dpi
    placed: list[Any] = []
    for annotation in sorted(annotations, key=lambda a: -a.get_window_extent(renderer).y0):
        for _ in range(len(annotations)):
            box = annotation.get_window_extent(renderer)
            clash = next((b for b in placed if box.overlaps(b)), None)
            if clash is None:
                break
            x, y = annotation.xyann
            annotation.xyann = (x, y - (box.y1 - clash.y0 + gap) * to_points)
        placed.append(annotation.get_window_extent(renderer))


def finish(fig: Any, path: str | Path, note: str) -> Path:
    """Footnote (wrapped to the figure's width) with what the numbers come from, then lay out, fix overlapping tick
    labels by turning them, and save: a figure never travels without its footnote. The PNG carries its own layout
    verdict (text chunk "Layout": "ok", or what still overlaps or leaves the canvas), which the tests read."""
    fig.set_dpi(DPI)  # measure at the resolution the PNG is written at (text widths do not scale exactly)
    bottom = 0.0
    if note:
        footer = fig.text(0.01, 0.005, note, fontsize=NOTE_POINTS, color="grey", va="bottom")
        chars = len(note)
        for _ in range(6):  # narrow the wrap until the footnote fits the canvas (measured, not guessed)
            fig.canvas.draw()
            over = footer.get_window_extent(fig.canvas.get_renderer()).width / (0.97 * fig.bbox.width)
            if over <= 1:
                break
            chars = max(20, int(chars / over) - 2)
            footer.set_text(wrap(note, chars))
        lines = footer.get_text().count("\n") + 1
        bottom = (lines * NOTE_POINTS * 1.35 + 4) / (fig.get_figheight() * 72)
    fig.tight_layout(rect=(0, bottom, 1, 1))
    if any("tick labels overlap" in p for p in layout_problems(fig)):
        for ax in fig.axes:
            for label in ax.get_xticklabels(which="both"):
                label.set_rotation(30)
                label.set_horizontalalignment("right")
        fig.tight_layout(rect=(0, bottom, 1, 1))
    verdict = "; ".join(layout_problems(fig)) or "ok"
    fig.savefig(path, dpi=DPI, metadata={"Layout": verdict})
    pyplot().close(fig)
    return Path(path)
