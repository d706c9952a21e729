"""The ablation report: the runs of a grid (or any runs directory, or wandb) as table.md, table.csv and figures.

A configuration's runs become one row (`models.analysis.runs`); runs of the named grid with no results.json are
counted as "missing". Every number in the outputs comes from the records; nothing is typed here.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from models.analysis.figures import plot_error_vs_depth, plot_parts, plot_tradeoff
from models.analysis.runs import Configuration, fetch_wandb, group_runs, load_runs
from models.analysis.tables import context, report_csv, report_markdown
from models.complexity import group_totals
from models.errors import ConfigError


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


def write_report(rows: Sequence[Configuration], out_dir: str | Path, source: str, title: str = ""
                 ) -> dict[str, Path]:
    """table.md, table.csv and the figures that apply; returns {name: path} of what was written."""
    if not rows:
        raise ConfigError(f"nothing to report for {source}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = {"table.md": out / "table.md", "table.csv": out / "table.csv"}
    written["table.md"].write_text(report_markdown(rows, source, title))
    report_csv(rows, written["table.csv"])
    bars = part_bars(rows)
    sizes = sorted({int(run.get("data/image_size") or 0) for r in rows for run in [*r.runs, r.planned]} - {0})
    figures = {"acc_vs_macs.png": lambda p: plot_tradeoff(rows, "macs", p, "test top-1 vs MACs (point area ~ params)"),
               "acc_vs_params.png": lambda p: plot_tradeoff(rows, "params", p, "test top-1 vs params"),
               "parts.png": lambda p: bars and plot_parts(bars, p, "Where parameters and multiply-adds live (input "
                                                          f"{'/'.join(map(str, sizes))} px)", context(rows)),
               "error_vs_depth.png": lambda p: plot_error_vs_depth(rows, p)}
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


def report(target: str, out: str | Path | None = None, wandb_path: str | None = None, ablation: str | None = None,
           overrides: Sequence[str] = ()) -> tuple[str, dict[str, Path]]:
    """Load the runs of `target` (an ablation name or a directory), match them against the ablation's grid (with the
    sweep's command-line `overrides`) to count missing runs, write the outputs. Returns the Markdown and the paths."""
    from models.analysis.ablation import grid, list_ablations, planned

    root, name = resolve_target(target)
    if wandb_path:
        records, source = fetch_wandb(wandb_path, name), f"wandb {wandb_path}" + (f" (group {name})" if name else "")
    else:
        records, source = load_runs(root) if root.is_dir() else [], str(root)
    if not records:
        fix = f"run it first: python scripts/ablate.py {name}" if name else \
            "point report.py at a sweep directory such as runs/ablation/<name>, or run one with scripts/ablate.py"
        raise ConfigError(f"no runs (results.json) under {source}: {fix}")
    names = {str(r["ablation"]) for r in records if r.get("ablation")}
    name = ablation or name or (names.pop() if len(names) == 1 else None)
    with_overrides = any(r.get("overrides") for r in records)  # wandb records carry no overrides: no grid matching
    jobs = grid(name, overrides) if name in list_ablations() and with_overrides else None
    rows = group_runs(records, jobs, plan=lambda job: planned(name, job))
    out_dir = Path(out) if out else (root / "report" if not wandb_path else Path("reports") / (name or "wandb"))
    paths = write_report(rows, out_dir, source, title=name or "")
    return paths["table.md"].read_text(), paths
