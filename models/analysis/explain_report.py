"""The outputs of an explanation (`models.analysis.explain`): the roadmap and attribution tables (Markdown, CSV),
`explain.json` and one waterfall figure per cost. Every number comes from the accounting code (or a measurement)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from models.analysis.explain import CHOICES, Explanation
from models.analysis.figures import plot_waterfall
from models.memory import GIB
from models.utils.tables import markdown, write_csv

UNITS = {"params": ("params (M)", 1e6, "{:,.2f}"), "macs": ("GMACs", 1e9, "{:,.3f}"),
         "memory": ("train memory (GiB)", GIB, "{:,.2f}"), "time": ("fwd+bwd ms/image", 1.0, "{:,.2f}")}


def _fmt(cost: str, value: float | None, signed: bool = False) -> str:
    if value is None:
        return "–"
    _, scale, fmt = UNITS[cost]
    if value and abs(value / scale) < 0.005:  # small but not nothing: two significant digits
        fmt = "{:.2g}"
    text = fmt.format(value / scale)
    return ("+" + text if value > 0 else text) if signed else text


def _name(e: Explanation, change: str | None) -> str:
    return f"A: {e.a.label}" if change is None else f"+ {change}"


def roadmap_markdown(e: Explanation) -> str:
    costs = [c for c in UNITS if c in e.steps[0]]
    header = ["step", "network"] + [h for c in costs for h in (UNITS[c][0], "change")]
    cells = [[str(s["step"]), _name(e, s["change"]) + (f" (= B: {e.b.label})" if s["step"] == len(e.order) else "")]
             + [x for c in costs for x in (_fmt(c, s[c]), _fmt(c, s.get(f"delta/{c}"), signed=True))]
             for s in e.steps]
    return markdown(header, cells, right=range(2, len(header)))


def attribution_markdown(e: Explanation) -> str:
    costs = list(e.attribution.shapley)
    header = ["design choice", *(f"{UNITS[c][0]}: Shapley" for c in costs), *(f"share of the {c} gap" for c in costs)]
    gap = {c: e.totals[c][1] - e.totals[c][0] for c in costs}
    cells = []
    for choice in e.choices:
        values = [e.attribution.shapley[c][choice] for c in costs]
        cells.append([choice, *(_fmt(c, v, signed=True) for c, v in zip(costs, values)),
                      *(f"{100 * v / gap[c]:.1f}%" if gap[c] else "–" for c, v in zip(costs, values))])
    cells.append(["total (B - A)", *(_fmt(c, gap[c], signed=True) for c in costs), *("100.0%" for _ in costs)])
    return markdown(header, cells, right=range(1, len(header)))


def note(e: Explanation) -> str:
    a = e.attribution
    timed = f" Time measured on {e.timing.get('device', 'cpu')} (batch {e.timing.get('batch_size', 1)}, precision " \
            f"{e.timing.get('precision', '32')}), median of interleaved rounds." if e.timing else ""
    return (f"A = {e.a.label}, B = {e.b.label}, {e.input_size} px, {e.a.knobs['num_classes']} classes. Params and "
            "MACs (multiply-accumulates per image, forward; FLOPs = 2 x MACs) exact, from the accounting code; train "
            f"memory = predicted peak of a training step at batch {e.memory_batch}, fp32, SGD with momentum "
            "(models/memory.py). Shapley value = a choice's effect averaged over every order of the "
            f"{len(e.choices)} choices: {a.valid_orders} valid orders, {a.invalid_orders} left out because they pass "
            f"through an invalid network; {a.networks} networks counted. Roadmap order: "
            f"{', '.join(e.order)}.{timed}")


def as_json(e: Explanation) -> dict[str, Any]:
    return {"a": e.a.label, "b": e.b.label, "input_size": e.input_size, "memory_batch": e.memory_batch,
            "choices": {c: {k: [_plain(e.a.knobs[k]), _plain(e.b.knobs[k])] for k in CHOICES[c]
                            if e.a.knobs[k] != e.b.knobs[k]} for c in e.choices},
            "orders": {"valid": e.attribution.valid_orders, "invalid": e.attribution.invalid_orders},
            "networks": e.attribution.networks,
            "costs": {c: {"a": e.totals[c][0], "b": e.totals[c][1], "shapley": e.attribution.shapley[c]}
                      for c in e.attribution.shapley},
            "roadmap": e.steps, "order": e.order}


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def write(e: Explanation, out_dir: str | Path) -> dict[str, Path]:
    """explain.md, explain.csv, explain.json and explain_<cost>.png (a waterfall per cost)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {name: out / name for name in ("explain.md", "explain.csv", "explain.json")}
    paths["explain.md"].write_text(markdown_text(e))
    rows = [{"section": "roadmap", "step": s["step"], "name": _name(e, s["change"]),
             **{k: v for k, v in s.items() if k not in ("step", "change")}} for s in e.steps]
    rows += [{"section": "shapley", "name": choice, **{c: e.attribution.shapley[c][choice]
                                                       for c in e.attribution.shapley}} for choice in e.choices]
    write_csv(paths["explain.csv"], rows)
    paths["explain.json"].write_text(json.dumps(as_json(e), indent=1) + "\n")
    for cost in e.attribution.shapley:
        label, scale, _ = UNITS[cost]
        bars = [(c, e.attribution.shapley[cost][c] / scale) for c in e.choices]
        path = out / f"explain_{cost}.png"
        plot_waterfall((f"A: {e.a.label}", e.totals[cost][0] / scale), bars, (f"B: {e.b.label}",
                       e.totals[cost][1] / scale), path, f"{label}: from A to B, one design choice at a time "
                       "(Shapley values)", label, note(e))
        paths[path.name] = path
    return paths


def markdown_text(e: Explanation) -> str:
    return "\n".join([f"### {e.a.label} -> {e.b.label}", "", "Roadmap (one design choice at a time):", "",
                      roadmap_markdown(e), "", "Attribution (order-free):", "", attribution_markdown(e), "",
                      note(e), ""])
