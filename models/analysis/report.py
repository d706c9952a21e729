"""The ablation report: the runs of a grid (or any runs directory, or wandb) as table.md, table.csv and figures.

A configuration's runs become one row (`models.analysis.runs`); runs of the named grid with no results.json are
counted as "missing". Every number in the outputs comes from the records; nothing is typed here.
"""

from __future__ import annotations

import statistics
import sys
from collections.abc import Sequence
from pathlib import Path

from models.analysis.effects import METRICS, Effect, effects
from models.analysis.explain_grid import VARIANT as ROADMAP_VARIANT
from models.analysis.figures import (
    plot_compute_curves,
    plot_effects,
    plot_error_per_epoch,
    plot_error_vs_depth,
    plot_parts,
    plot_roadmap,
    plot_tradeoff,
)
from models.analysis.runs import ACC, Configuration, context, fetch_wandb, group_runs, read_tree
from models.analysis.table import check_code, report_csv, report_latex, report_markdown
from models.complexity import group_totals
from models.errors import ConfigError
from models.utils.tables import markdown, write_csv

METRIC_NAMES = [name for name, _ in METRICS]

# ------------------------------------------------------------------------------------------------- the outputs
def part_bars(rows: Sequence[Configuration]) -> list[tuple]:
    """(label, params by group, MACs by group[, time shares by group]) of each row, from its records (or its planned
    complexity); the time shares when the runs measured them."""
    bars = []
    for r in rows:
        run = next((x for x in r.runs if x.get("params") is not None), r.planned)  # complexity needs no training
        if run.get("params") is None:
            continue
        names = [k.split("/", 1)[1] for k in run if k.startswith("params/")]
        bar = (r.label or str(r.config.get("model")), group_totals({n: int(run[f"params/{n}"]) for n in names}),
               group_totals({n: int(run.get(f"macs/{n}") or 0) for n in names}))
        timed = next((x for x in r.runs if x.get("time_share/stem") is not None), None)
        bars.append((*bar, group_totals({n: timed[f"time_share/{n}"] for n in names})) if timed else bar)
    return bars


def roadmap_steps(rows: Sequence[Configuration]) -> tuple[str, list[tuple]] | None:
    """The rows of a roadmap grid (`scripts/explain.py grid=...`: variants <grid>_<k>_<change>, k = 0..n), in step
    order, as (label, accuracy mean, std, n, MACs, params); None unless every row is one step of one roadmap."""
    parsed = [(ROADMAP_VARIANT.match(str(r.config.get("ablation/variant") or "")), r) for r in rows]
    if not parsed or any(m is None for m, _ in parsed) or len({m["grid"] for m, _ in parsed}) != 1:
        return None
    parsed.sort(key=lambda p: int(p[0]["step"]))
    if [int(m["step"]) for m, _ in parsed] != list(range(len(parsed))):
        return None
    steps = []
    for m, r in parsed:
        mean, std, n = r.stat(ACC)
        label = f"A: {m['change']}" if m["step"] == "0" else f"+ {m['change'].replace('_', ' ')}"
        steps.append((label, mean, std, n, r.value("macs") or 0, r.value("params") or 0))
    last = steps[-1]
    steps[-1] = (f"{last[0]} (= B)", *last[1:])
    return parsed[0][0]["grid"], steps


def write_report(rows: Sequence[Configuration], out_dir: str | Path, source: str, title: str = ""
                 ) -> dict[str, Path]:
    """table.md, table.csv and the figures that apply; returns {name: path} of what was written."""
    if not rows:
        raise ConfigError(f"nothing to report for {source}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = {name: out / name for name in ("table.md", "table.csv", "table.tex")}
    found = effects(rows)
    written["table.md"].write_text(report_markdown(rows, source, title) + effects_markdown(found))
    report_csv(rows, written["table.csv"])
    written["table.tex"].write_text(report_latex(rows, source, title))
    if found:
        written["effects.csv"] = write_csv(out / "effects.csv", [vars(e) for e in found])
    bars = part_bars(rows)
    roadmap = roadmap_steps(rows)
    sizes = sorted({int(run.get("data/image_size") or 0) for r in rows for run in [*r.runs, r.planned]} - {0})
    figures = {"acc_vs_macs.png": lambda p: plot_tradeoff(rows, "macs", p, "test top-1 vs MACs (point area ~ params)"),
               "acc_vs_params.png": lambda p: plot_tradeoff(rows, "params", p, "test top-1 vs params"),
               "parts.png": lambda p: bars and plot_parts(bars, p, "Where parameters and multiply-adds live (input "
                                                          f"{'/'.join(map(str, sizes))} px)", context(rows)),
               "error_vs_depth.png": lambda p: plot_error_vs_depth(rows, p),
               "error_per_epoch.png": lambda p: plot_error_per_epoch(rows, p),
               "effects.png": lambda p: plot_effects([e for e in found if e.metric == "test top-1"], p,
                                                     context(rows)),
               "acc_vs_pflops.png": lambda p: plot_compute_curves(curves(rows, 2), p, "training compute (3 x forward "
                                                                  "FLOPs x images seen)", context(rows), 1e15, "FLOP"),
               "acc_vs_wall_time.png": lambda p: plot_compute_curves(curves(rows, 3), p, "wall time (s, every "
                                                                     "invocation)", context(rows)),
               "roadmap.png": lambda p: roadmap and plot_roadmap(
                   roadmap[1], p, f"{roadmap[0]}: from A to B, one design choice at a time: test top-1, MACs, params",
                   context(rows))}
    for name, draw in figures.items():
        if draw(out / name):
            written[name] = out / name
    return written


def resolve_target(target: str) -> tuple[Path, str | None]:
    """An existing directory (any sweep or run dir) or a named ablation (its sweep dir): (dir, ablation name)."""
    from models.analysis.ablation import check_name, sweep_dir

    path = Path(target)
    if path.is_dir():
        return path, None
    if "/" in target or path.suffix:
        raise ConfigError(f"{target} is not a directory: pass a runs directory (e.g. runs/ablation/<name>) or an "
                          f"ablation name")
    name = check_name(target)  # one-line error listing the valid names
    return sweep_dir(name), name


def curves(rows: Sequence[Configuration], index: int) -> list[tuple[str, list[float], list[float]]]:
    """(label, x, validation top-1) per configuration, means over its finished seeds at each validation point
    (`curve` in results.json: [step, epoch, train/pflops, train/wall_s, val/acc]); x = pflops (2) or wall s (3)."""
    out = []
    for r in rows:
        runs = [run["curve"] for run in r.finished() if run.get("curve")]
        if not runs:
            continue
        points = min(len(c) for c in runs)
        xs = [statistics.fmean(c[i][index] for c in runs) for i in range(points)]
        ys = [statistics.fmean(c[i][4] for c in runs if c[i][4] is not None) for i in range(points)]
        out.append((r.label or str(r.config.get("model")), xs, ys))
    return out


def effects_markdown(found: Sequence[Effect]) -> str:
    """The paired effects as a Markdown section (empty when the grid has no pair)."""
    if not found:
        return ""
    header = ["axis", "switch", "pair", *METRIC_NAMES, "n"]
    by = {}
    for e in found:
        by.setdefault((e.axis, repr(e.a), repr(e.b), e.pair), {})[e.metric] = e
    rows = []
    for (axis, _, _, pair), metrics in by.items():
        first = next(iter(metrics.values()))
        rows.append([axis.removeprefix("model/"), f"{first.a} -> {first.b}", pair,
                     *(metrics[m].interval() if m in metrics else "–" for m in METRIC_NAMES),
                     str(max(e.n for e in metrics.values()))])
    return ("\n### Paired effects\n\n" + markdown(header, rows, right=range(3, len(header))) + "\n\nEffect of "
            "switching one knob with everything else equal: mean of the per-seed differences (B - A) with a 95% "
            "confidence interval (Student t over the n seed pairs; 'n too small' under 2). Costs do not depend on the "
            "seed: their difference is exact.\n")


def grid_rows(records: Sequence[dict], name: str | None = None, overrides: Sequence[str] = ()
              ) -> tuple[list[Configuration], str | None]:
    """The records as configurations in their grid's order, with the grid's jobs that have no record yet counted as
    missing (the grid: `name`, else the one the records name); (rows, the grid's name)."""
    from models.analysis.ablation import grid, list_ablations, planned

    names = {str(r["ablation"]) for r in records if r.get("ablation")}
    name = name or (names.pop() if len(names) == 1 else None)
    with_overrides = any(r.get("overrides") for r in records)  # wandb records carry no overrides: no grid matching
    jobs = grid(name, overrides) if name in list_ablations() and with_overrides else None
    return group_runs(records, jobs, plan=lambda job: planned(name, job)), name


def report(target: str, out: str | Path | None = None, wandb_path: str | None = None, ablation: str | None = None,
           overrides: Sequence[str] = (), mixed_code: bool = False, source: str | None = None
           ) -> tuple[str, dict[str, Path]]:
    """Load the runs of `target` (an ablation name or a directory), match them against the ablation's grid (with the
    sweep's command-line `overrides`) to count missing runs, write the outputs. Returns the Markdown and the paths.
    `source`: how the footnote names where the records are (default: the directory as given)."""
    root, name = resolve_target(target)
    if wandb_path:
        records, source = fetch_wandb(wandb_path, name), f"wandb {wandb_path}" + (f" (group {name})" if name else "")
    else:
        records, skipped = read_tree(root) if root.is_dir() else ([], [])
        for path, why in skipped:  # named on the console and in the footnote; never counted as a run
            print(f"warning: skipped {path}: {why}", file=sys.stderr)
        source = (source or str(root)) + (f" ({len(skipped)} more could not be read and were skipped: "
                              f"{'; '.join(f'{p} ({why})' for p, why in skipped)})" if skipped else "")
    if not records:
        fix = f"run it first: python scripts/ablate.py {name}" if name else \
            "point report.py at a sweep directory such as runs/ablation/<name>, or run one with scripts/ablate.py"
        raise ConfigError(f"no runs (results.json) under {source}: {fix}")
    rows, name = grid_rows(records, ablation or name, overrides)
    check_code(rows, allow=mixed_code)
    out_dir = Path(out) if out else (root / "report" if not wandb_path else Path("reports") / (name or "wandb"))
    paths = write_report(rows, out_dir, source, title=name or "")
    return paths["table.md"].read_text(), paths
