"""The generated sections of the README and of the docs pages (`<!-- name:begin -->` ... `<!-- name:end -->`), each
from the accounting code, the record schema or committed records (docs/results/<grid>/runs); `make regen` writes
them (models/analysis/regen.py) and a test keeps them current. The sentences that say what a table shows are
generated too, from the same records: a number in them is never typed."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
EXPLAINED = (("vgg16_resnet34", "vgg16", "resnet34"), ("vgg16_cifar_resnet20", "vgg16_cifar", "resnet20"))
# The grids whose committed records the README shows, in its order.
README_GRIDS = ("residual_vs_plain_cpu", "residual_vs_plain_gpu", "head_fc_vs_gap_cpu")


def explanation(a: str, b: str) -> str:
    """Why B costs less than A, choice by choice: the roadmap, the Shapley attribution and the note."""
    from models.analysis.explain import explain
    from models.analysis.explain_report import attribution_markdown, note, roadmap_markdown

    e = explain(a, b)
    return "\n\n".join((roadmap_markdown(e), attribution_markdown(e), note(e)))


def costs() -> str:
    """VGG-16 against ResNet-34 at 224 px, with each one's head swapped: params and MACs and where they live."""
    import torch

    import models
    from models.complexity import group_totals, profile
    from models.utils.tables import markdown

    entries = (("vgg16", {}), ("resnet34", {}), ("vgg16 + GAP head", {"head": "gap"}),
               ("resnet34 + FC head", {"head": "fc", "head_pool": 7, "head_hidden": [4096, 4096]}))
    cells = []
    for label, knobs in entries:
        with torch.device("meta"):
            net = models.build(label.split()[0], **knobs)
        c = profile(net, 224)
        params = group_totals({p.name: p.params for p in c.parts})
        macs = group_totals({p.name: p.macs for p in c.parts})
        cells.append([label, f"{c.params / 1e6:,.1f}M", f"{c.macs / 1e9:.2f}G", f"{params['head'] / c.params:.0%}",
                      f"{macs['stem'] / c.macs:.0%}", f"{macs['stages'] / c.macs:.0%}"])
    return (markdown(["network (224 px, 1000 classes)", "params", "MACs", "params in the head", "MACs in the stem",
                      "MACs in the stages"], cells, right=range(1, 6))
            + "\n\nExact counts from the accounting code (models/complexity.py; equal to torchvision's models to the "
              "parameter). MACs = multiply-accumulates per image, forward (= torchvision's \"GFLOPS\", = He et al.'s "
              "\"FLOPs\"); FLOPs = 2 x MACs.")


def attribution() -> str:
    from models.analysis.explain import explain
    from models.analysis.explain_report import attribution_markdown

    return attribution_markdown(explain("vgg16", "resnet34"))


def grid_section(grid: str) -> str:
    """A grid's headline table, what it shows, and where the rest is; a grid not trained yet says so."""
    from models.analysis.report import grid_rows
    from models.analysis.runs import context, read_tree
    from models.analysis.table import headline_markdown

    runs = REPO / "docs" / "results" / grid / "runs"
    records = read_tree(runs)[0] if runs.is_dir() else []
    if not records:
        return f"Not trained yet: `python scripts/ablate.py {grid} ...`, then `make regen`."
    rows, _ = grid_rows(records, grid)
    finished = [run for r in rows for run in r.finished()]
    hours = sum(float(run.get("wall_time_s") or 0) for run in finished) / 3600
    return (headline_markdown(rows) + f"\n\n{shows(rows)} Setting: {context(rows)}; {len(finished)} runs, "
            f"{hours:.2f} h of wall time in all. Full table, paired effects and figures: "
            f"[docs/results/{grid}](docs/results/{grid}/table.md).")


def shows(rows: list) -> str:
    """One or two sentences of what a grid's rows show, computed from them (plain/residual twins, head fc/gap)."""
    from models.analysis.runs import ACC

    acc = {(r.config.get("model"), str(r.config.get("model/head"))): r.stat(ACC)[0] for r in rows}
    models = {m for m, _ in acc}
    sentences = []
    depths = sorted({int(m[5:]) for m in models if m.startswith("plain") and f"resnet{m[5:]}" in models})
    if len(depths) >= 2:
        lo, hi = depths[0], depths[-1]
        get = {m: a for (m, _), a in acc.items() if a is not None}
        if all(f"{f}{d}" in get for f in ("plain", "resnet") for d in (lo, hi)):
            plain, res = get[f"plain{lo}"] - get[f"plain{hi}"], get[f"resnet{lo}"] - get[f"resnet{hi}"]
            sentences.append(
                f"Going from {lo} to {hi} layers costs the plain net {100 * plain:.1f} points of test top-1 and the "
                f"residual net {100 * res:.1f}: "
                f"at equal params and MACs, the skip connections recover "
                f"{100 * (get[f'resnet{hi}'] - get[f'plain{hi}']):.1f} points at depth {hi} and "
                f"{100 * (get[f'resnet{lo}'] - get[f'plain{lo}']):.1f} at depth {lo}.")
    for model in sorted(models):
        fc, gap = acc.get((model, "fc")), acc.get((model, "gap"))
        costs = {str(r.config.get("model/head")): r.value("params") for r in rows if r.config.get("model") == model}
        if fc is not None and gap is not None and costs.get("fc") and costs.get("gap"):
            sentences.append(f"On {model} the FC head adds {costs['fc'] - costs['gap']:,} params "
                             f"({(costs['fc'] - costs['gap']) / costs['gap']:.0%} of the GAP net) for "
                             f"{100 * (fc - gap):+.1f} points of test top-1.")
    return " ".join(sentences)


def readme_sections() -> dict[str, str]:
    makers: dict[str, Callable[[], str]] = {"costs": costs, "attribution": attribution,
                                            **{f"results:{g}": (lambda g=g: grid_section(g)) for g in README_GRIDS}}
    return {name: make() for name, make in makers.items()}


def explain_sections() -> dict[str, str]:
    return {f"explain:{key}": explanation(a, b) for key, a, b in EXPLAINED}


def records_sections() -> dict[str, str]:
    from models.train.schema import record_table

    return {"records": record_table()}


# file -> its generated sections (marker name -> Markdown)
MARKED: dict[str, Callable[[], dict[str, str]]] = {"README.md": readme_sections, "docs/explain.md": explain_sections,
                                                   "docs/records.md": records_sections}
