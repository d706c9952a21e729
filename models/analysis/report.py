"""The ablation report: the runs of a grid (or any runs directory, or wandb) as table.md, table.csv and figures.

A configuration's runs become one row (`models.analysis.runs`); runs of the named grid with no results.json are
counted as "missing". Every number in the outputs comes from the records; nothing is typed here.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from models.analysis.explain_grid import VARIANT as ROADMAP_VARIANT
from models.analysis.figures import plot_error_vs_depth, plot_parts, plot_roadmap, plot_tradeoff
from models.analysis.runs import (
    ACC,
    STATUSES,
    Configuration,
    column_name,
    context,
    fetch_wandb,
    group_runs,
    load_runs,
    varied_columns,
)
from models.complexity import group_totals
from models.errors import ConfigError
from models.utils.tables import cell, markdown, num, unit, write_csv

# ------------------------------------------------------------------------------------------------- the table
REPORT_CSV_KEYS = ("params", "macs", "flops", "params_share/head", "macs_share/head", "macs_share/stem",
                   "time_share/head", "packed_jobs")


def accuracy_cell(mean: float | None, std: float | None, n: int) -> str:
    """'0.850 ± 0.071' (n >= 2), '0.850' (n = 1), '–' (no finished run)."""
    if mean is None:
        return "–"
    return f"{mean:.3f}" if std is None else f"{mean:.3f} ± {std:.3f}"


def status_cell(row: Configuration) -> str:
    counts = row.counts()
    text = ", ".join(f"{counts[s]} {s}" for s in (*STATUSES, "other") if counts[s])
    return text if counts["finished"] == sum(counts.values()) else f"**{text}**"  # anything not finished stands out


# The head's share of the parameters, of the MACs and of the measured time (when the runs recorded them).
HEAD_SHARES = (("params_share/head", "head params"), ("macs_share/head", "head MACs"), ("time_share/head", "head time"))


def report_table(rows: Sequence[Configuration]) -> tuple[list[str], list[list[str]], int]:
    """Header, cells and the number of leading text columns: label (if needed), varied knobs, then params, MACs,
    the head's shares (params / MACs / measured time), train img/s, test top-1, n, runs."""
    knobs = varied_columns(rows)
    # The label (from the grid's overrides) only when the knob columns alone do not tell the rows apart.
    show_label = len({tuple(cell(r.config.get(k)) for k in knobs) for r in rows}) < len(rows)
    p_div, p_unit = unit((r.value("params") for r in rows), "params")
    m_div, m_unit = unit((r.value("macs") for r in rows), "MACs")
    shares = [(key, name) for key, name in HEAD_SHARES if any(r.value(key) is not None for r in rows)]
    memory = any(r.value("memory/peak_bytes") is not None for r in rows)
    packed = any(r.value("packed_jobs") and r.value("packed_jobs") > 1 for r in rows)
    header = (["configuration"] if show_label else []) + [column_name(k, knobs) for k in knobs]
    header += [p_unit, m_unit, *(["train memory GiB"] if memory else []), *(name for _, name in shares),
               "train img/s" + (" †" if packed else ""), "test top-1", "n", "runs"]
    cells = []
    for r in rows:
        line = ([r.label] if show_label else []) + [cell(r.config.get(k)) for k in knobs]
        line += [num(r.value("params"), "{:.2f}", p_div), num(r.value("macs"), "{:.2f}", m_div)]
        line += [num(r.value("memory/peak_bytes"), "{:.2f}", 2**30)] if memory else []
        line += [num(r.value(key), "{:.1%}") + (" ‡" if key.startswith("time") and unreliable_timing(r) else "")
                 for key, _ in shares]
        rate = num(r.stat("train/images_per_s")[0], "{:.0f}")
        line += [rate + (" †" if (r.value("packed_jobs") or 1) > 1 else ""), accuracy_cell(*r.stat(ACC)),
                 str(r.stat(ACC)[2]), status_cell(r)]
        cells.append(line)
    return header, cells, len(header) - 6 - len(shares) - memory


def unreliable_timing(row: Configuration) -> bool:
    """A run of this configuration recorded per-part times that contradict themselves (time/reliable: false)."""
    return any(run.get("time/reliable") is False for run in row.runs)


def caption(rows: Sequence[Configuration], source: str) -> str:
    n_files = sum(len(r.runs) for r in rows)
    packed = sorted({int(run["packed_jobs"]) for r in rows for run in r.finished()
                     if (run.get("packed_jobs") or 1) > 1})
    note = (f" † img/s measured while {' / '.join(map(str, packed))} runs shared the device (hydra.launcher."
            "jobs_per_gpu): not comparable with a run that had it alone." if packed else "")
    noisy = [r.label or str(r.config.get("model")) for r in rows if unreliable_timing(r)]
    if noisy:
        note += (" ‡ per-part times unreliable (their spread was too wide, or forward exceeded forward+backward, or "
                 f"the parts did not add up to the whole: results.json time/problems): {', '.join(noisy)}.")
    if any(r.value("memory/peak_bytes") is not None for r in rows):
        note += (" train memory = predicted peak of a training step at the run's batch and precision (fp32 weights, "
                 "gradients, optimizer state, the activations autograd saves, counted exactly; models/memory.py).")
    return (f"Source: {n_files} results.json under {source}; {context(rows)}. test top-1 = mean ± sample std (n−1) "
            "over the n finished seeds (test split, best-val checkpoint); params and MACs per image, forward pass, "
            "from each run's own accounting (FLOPs = 2 × MACs); head time = the head's share of the forward+backward "
            "time measured once per run before training; train img/s measured during training, warm-up excluded."
            f"{note} Rows with no run yet show params and MACs of the planned configuration from the accounting "
            "code. Generated by scripts/report.py; do not edit.")


def report_markdown(rows: Sequence[Configuration], source: str, title: str = "") -> str:
    header, cells, text = report_table(rows)
    table = markdown(header, cells, right=range(text, len(header) - 1))  # numbers right-aligned, `runs` left
    return "\n".join(([f"### {title}", ""] if title else []) + [table, "", caption(rows, source), ""])


def report_csv(rows: Sequence[Configuration], path: str | Path) -> Path:
    """Raw numbers (no rounding), one line per configuration, for plotting elsewhere."""
    knobs = varied_columns(rows)
    fields = ["label", *knobs, *REPORT_CSV_KEYS, "train/images_per_s_mean", "test/acc_mean", "test/acc_std", "n",
              *STATUSES]
    lines = []
    for r in rows:
        mean, std, n = r.stat(ACC)
        lines.append({"label": r.label, **{k: cell(r.config.get(k)) for k in knobs},
                      **{k: r.value(k) for k in REPORT_CSV_KEYS}, "train/images_per_s_mean":
                      r.stat("train/images_per_s")[0], "test/acc_mean": mean, "test/acc_std": std, "n": n,
                      **{s: r.counts()[s] for s in STATUSES}})
    return write_csv(path, lines, fields)


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
    written = {"table.md": out / "table.md", "table.csv": out / "table.csv"}
    written["table.md"].write_text(report_markdown(rows, source, title))
    report_csv(rows, written["table.csv"])
    bars = part_bars(rows)
    roadmap = roadmap_steps(rows)
    sizes = sorted({int(run.get("data/image_size") or 0) for r in rows for run in [*r.runs, r.planned]} - {0})
    figures = {"acc_vs_macs.png": lambda p: plot_tradeoff(rows, "macs", p, "test top-1 vs MACs (point area ~ params)"),
               "acc_vs_params.png": lambda p: plot_tradeoff(rows, "params", p, "test top-1 vs params"),
               "parts.png": lambda p: bars and plot_parts(bars, p, "Where parameters and multiply-adds live (input "
                                                          f"{'/'.join(map(str, sizes))} px)", context(rows)),
               "error_vs_depth.png": lambda p: plot_error_vs_depth(rows, p),
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
