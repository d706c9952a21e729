"""Every figure is readable: matplotlib's own text bounding boxes catch labels that overlap or leave the canvas
(`models.utils.plotting.layout_problems`), each figure is drawn with long labels and many points and its PNG
carries the verdict; the per-layer figure names its parts, the roofline explains points above its ceilings."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from models.analysis.compare import compare, measure_rows, write_outputs
from models.analysis.figures import plot_parts, plot_tradeoff, plot_waterfall
from models.analysis.runs import group_runs
from models.utils.plotting import finish, layout_problems, pyplot


def test_layout_problems_sees_overlaps_and_text_off_the_canvas(tmp_path: Path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.set_xticks(range(10))
    ax.set_xticklabels([f"a rather long tick label {i}" for i in range(10)])
    fig.text(0.9, 0.5, "this sentence runs far past the right edge of the canvas")
    problems = layout_problems(fig)
    assert any(p.startswith("x tick labels overlap") for p in problems)
    assert any(p.startswith("outside the canvas: 'this sentence runs far past") for p in problems)
    fixed = finish(fig, tmp_path / "bad.png", "")  # finish turns overlapping tick labels; the off-canvas text stays
    assert "outside the canvas" in Image.open(fixed).text["Layout"]


def _rows(n: int, decades: float = 6) -> list:
    """n configurations with long labels spread over `decades` decades of params and MACs."""
    records = []
    for i in range(n):
        for seed in (0, 1):
            records.append({"status": "finished", "seed": seed, "model": f"model_{i}",
                            "overrides": [f"model=a_deliberately_long_configuration_name_number_{i}", f"seed={seed}"],
                            "params": int(10 ** (5.3 + decades * i / n)), "macs": int(10 ** (6 + decades * i / n)),
                            "test/acc": 0.5 + i / (3 * n) + seed / 100, "data": "digits", "epochs": 1})
    return group_runs(records)


@pytest.mark.parametrize("decades", [6, 0.4])
def test_tradeoff_and_parts_figures_with_many_long_labels(tmp_path: Path, decades: float) -> None:
    """Wide and narrow cost ranges: the narrow one (the tiny CIFAR ResNets: 270K-660K params) is where matplotlib's
    own log labels (2x10^5, 3x10^5, ...) ran into each other."""
    rows = _rows(14, decades)
    for cost in ("params", "macs"):
        path = plot_tradeoff(rows, cost, tmp_path / f"{cost}.png")
        assert Image.open(path).text["Layout"] == "ok", Image.open(path).text
    bars = [(r.label, {"stem": 1, "stages": 10 ** i, "head": 5}, {"stem": 2, "stages": 3, "head": 4})
            for i, r in enumerate(rows)]
    path = plot_parts(bars, tmp_path / "parts.png", "a title " * 20, "a footnote " * 60)
    assert Image.open(path).text["Layout"] == "ok"


def test_waterfall_with_long_names(tmp_path: Path) -> None:
    steps = [(f"a long design choice name {i}", (-1) ** i * 10.0 * i) for i in range(8)]
    path = plot_waterfall(("A: a network with a long name", 100.0), steps, ("B: another long name", 140.0),
                          tmp_path / "w.png", "title " * 30, "unit", "note " * 120)
    assert Image.open(path).text["Layout"] == "ok"


def test_measured_complexity_figures(tmp_path: Path) -> None:
    rows = compare(["vgg11_cifar", "resnet20"])
    measure_rows(rows, batch_size=1, device="cpu", precision="32", repeats=3, warmup=0)
    paths = {p.name: p for p in write_outputs(rows, tmp_path)}
    for name in ("complexity.png", "complexity_layers.png", "complexity_roofline.png"):
        assert Image.open(paths[name]).text["Layout"] == "ok", (name, Image.open(paths[name]).text)
