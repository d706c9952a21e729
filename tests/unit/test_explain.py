"""Explaining the gap (models/analysis/explain.py, scripts/explain.py): design choices cover every knob, Shapley
values on games with known answers, VGG-16 -> ResNet-34 attributed exactly (integers summing to the published
difference), the roadmap, the outputs, and the committed roadmap grids equal to what the command generates."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import pytest
from PIL import Image

from helpers.cli import run_cli
from models.analysis.explain import CHOICES, canonical, explain
from models.analysis.shapley import largest_remainder, shapley
from models.errors import ConfigError
from models.presets import get_spec
from models.spec import knob_names


def test_every_knob_belongs_to_exactly_one_design_choice() -> None:
    knobs = [k for keys in CHOICES.values() for k in keys]
    assert sorted(knobs) == sorted(knob_names()) and len(knobs) == len(set(knobs))


def test_shapley_on_games_with_known_values() -> None:
    # two choices with an interaction: v({}) = 0, v({x}) = 1, v({y}) = 0, v({x, y}) = 3
    table = {frozenset(): 0, frozenset("x"): 1, frozenset("y"): 0, frozenset("xy"): 3}
    a = shapley(["x", "y"], lambda s: {"c": table[s]}, integer_costs=())
    assert a.shapley["c"] == {"x": 2.0, "y": 1.0} and (a.valid_orders, a.invalid_orders) == (2, 0)
    # y alone is no network: the order (y, x) is left out, x's effect is its marginal in (x, y) only
    b = shapley(["x", "y"], lambda s: None if s == frozenset("y") else {"c": table[s]}, integer_costs=("c",))
    assert b.shapley["c"] == {"x": 1, "y": 2} and (b.valid_orders, b.invalid_orders) == (1, 1)
    assert largest_remainder({"p": Fraction(1, 3), "q": Fraction(1, 3), "r": Fraction(1, 3)}, 1) in (
        {"p": 1, "q": 0, "r": 0}, {"p": 0, "q": 1, "r": 0}, {"p": 0, "q": 0, "r": 1})


def test_unused_knobs_are_not_differences() -> None:
    fc_as_gap = canonical(get_spec("vgg16_cifar").knobs())  # FC head pooled to 1x1 with no hidden layer
    assert fc_as_gap["head"] == "gap" and fc_as_gap["head_hidden"] == canonical(get_spec("resnet20").knobs())[
        "head_hidden"]


@pytest.fixture(scope="module")
def vgg_resnet() -> object:
    return explain("vgg16", "resnet34")


def test_vgg16_to_resnet34_is_attributed_exactly(vgg_resnet) -> None:
    e = vgg_resnet
    # every choice of the two presets differs, in declaration order; SE, pre-activation and classes are equal
    same = {"classes", "preactivation", "squeeze_excitation"}
    assert e.choices == [c for c in CHOICES if c not in same]
    # 720 orders; residual connections before the basic blocks would put skips on VGG's single convs: left out
    assert (e.attribution.valid_orders, e.attribution.invalid_orders) == (360, 360)
    params, macs = e.attribution.shapley["params"], e.attribution.shapley["macs"]
    assert all(isinstance(v, int) for v in [*params.values(), *macs.values()])
    assert sum(params.values()) == 21_797_672 - 138_357_544 == -116_559_872  # exactly B - A
    assert sum(macs.values()) == 3_663_761_408 - 15_470_264_320
    assert sum(e.attribution.shapley["memory"].values()) == e.totals["memory"][1] - e.totals["memory"][0]
    # the head holds the parameter gap (and more), the stem removes the MACs, ResNet-34's body is the LARGER one
    assert params["head"] < -116_559_872 and macs["stem"] < -30e9 and macs["body_layout"] > 20e9
    assert params["body_layout"] > 6e6
    # the roadmap: A, one choice at a time (largest parameter saving first), B
    assert [s["change"] for s in e.steps] == [None, *e.order] and e.order[0] == "head"
    assert e.steps[0]["params"] == 138_357_544 and e.steps[-1]["params"] == 21_797_672
    assert all(s["delta/params"] == s["params"] - p["params"] for p, s in zip(e.steps, e.steps[1:]))


def test_the_command_prints_and_writes_everything(tmp_path: Path) -> None:
    order = "[stem,head,normalisation,downsampling,body_layout,residual]"
    out = run_cli("explain", ["a=vgg16", "b=resnet34", f"order={order}", f"out={tmp_path}"], cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "| 1 | + stem |" in out.stdout and "Attribution (order-free):" in out.stdout
    data = json.loads((tmp_path / "explain.json").read_text())
    assert data["order"] == ["stem", "head", "normalisation", "downsampling", "body_layout", "residual"]
    for cost in ("params", "macs", "memory"):
        c = data["costs"][cost]
        assert sum(c["shapley"].values()) == c["b"] - c["a"]
        png = tmp_path / f"explain_{cost}.png"
        assert Image.open(png).text["Layout"] == "ok"  # nothing overlaps, nothing leaves the canvas
    assert data["costs"]["params"]["a"] == 138_357_544 and data["orders"] == {"valid": 360, "invalid": 360}
    assert data["choices"]["head"]["head"] == ["fc", "gap"] and len(data["roadmap"]) == 7
    assert (tmp_path / "explain.csv").read_text().startswith("section,step,name,params,macs,memory")


def test_bad_order_and_equal_networks_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"passes through an invalid network at step 1 \(residual\)"):
        explain("vgg16", "resnet34", order=["residual", "body_layout", "head", "stem", "normalisation",
                                              "downsampling"])
    with pytest.raises(ConfigError, match=r"must list each differing choice once"):
        explain("vgg16", "resnet34", order=["head"])
    with pytest.raises(ConfigError, match=r"same network"):
        explain("vgg16_cifar", {"name": "vgg16_cifar", "head": "gap", "head_hidden": []})
