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
from models.utils.plotting import _drawn_ticklabels, finish, layout_problems, pyplot


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


def _record(model: str, params: int, macs: int, acc: float) -> dict:
    return {"status": "finished", "seed": 0, "model": model, "overrides": [f"model={model}", "seed=0"],
            "params": params, "macs": macs, "test/acc": acc, "data": "cifar10", "epochs": 5}


def test_points_at_one_cost_keep_legible_labels_and_units_are_as_plotted(tmp_path: Path) -> None:
    """Two nets of the same size a hair apart in accuracy (plain20 / resnet20), two identical ones: no label on
    top of another; axes say what they plot (percent, raw counts with k/M suffixes, never "20m" for 0.02 billion)."""
    rows = group_runs([_record("plain20", 269_722, 40_551_040, 0.800), _record("resnet20", 269_722, 40_551_040, 0.801),
                       _record("plain56", 853_018, 125_485_696, 0.70), _record("twin56", 853_018, 125_485_696, 0.70),
                       _record("vgg11", 9_231_114, 152_769_536, 0.75)])
    for cost in ("params", "macs"):
        path = plot_tradeoff(rows, cost, tmp_path / f"{cost}.png")
        assert Image.open(path).text["Layout"] == "ok", Image.open(path).text  # point labels overlap no longer
    import models.analysis.figures as figures

    captured, real = {}, figures.finish

    def keep(fig, path, note):  # read the drawn texts before the figure is closed
        fig.canvas.draw()
        ax = fig.axes[0]
        captured.update(labels=sorted(t.get_text() for t in ax.texts), ylabel=ax.get_ylabel(),
                        yticks=[t.get_text() for t in ax.get_yticklabels()],
                        xticks=[t.get_text() for t in _drawn_ticklabels(ax.xaxis)])
        return real(fig, path, note)

    figures.finish = keep
    try:
        plot_tradeoff(rows, "macs", tmp_path / "read.png")
    finally:
        figures.finish = real
    assert captured["labels"] == ["plain20", "plain56 / twin56", "resnet20", "vgg11"]
    assert captured["ylabel"] == "test top-1 (%, mean over seeds)" and max(float(t) for t in captured["yticks"]) > 50
    assert all(t.endswith(("k", "M", "G")) for t in captured["xticks"]), captured["xticks"]


def test_parts_axes_count_what_they_draw(tmp_path: Path) -> None:
    bars = [("resnet20", {"stem": 432, "stages": 268_650, "head": 650}, {"stem": 442_368, "stages": 40_108_032,
                                                                        "head": 640}, {"stem": 0.1, "stages": 0.8,
                                                                                       "head": 0.1})]
    captured = {}
    import models.analysis.figures as figures

    real = figures.finish

    def keep(fig, path, note):
        fig.canvas.draw()
        captured.update({ax.get_xlabel(): [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
                         for ax in fig.axes})
        return real(fig, path, note)

    figures.finish = keep
    try:
        plot_parts(bars, tmp_path / "parts.png", "where they live")
    finally:
        figures.finish = real
    assert set(captured) == {"parameters", "MACs per image (FLOPs = 2 x MACs)", "share of measured fwd+bwd time"}
    assert "200k" in captured["parameters"] and "40M" in captured["MACs per image (FLOPs = 2 x MACs)"]
    assert captured["share of measured fwd+bwd time"][-1] == "100%"
