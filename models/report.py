"""Ablation reports from run records: one row per configuration, mean ± std over seeds, figures.

Reads only `results.json` files (JSON; never checkpoints, never pickles) or the same fields from the wandb API.
A configuration is everything in a run's config keys (`model*`, `data*`, `optim/*`, ...) except `seed` and the noise
keys of `configs/ablation/_sweep.yaml`; runs of the named grid with no results.json are counted as "missing".
Every number in the outputs comes from the records; nothing is typed here.
"""

from __future__ import annotations

import csv
import json
import math
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from models.ablation import SEED, job_identity, noise_keys
from models.errors import ConfigError
from models.records import RESULTS, read_results

CONFIG_KEYS = ("model", "data", "optim", "sched", "trainer", "precision", "label_smoothing", "experiment", "ablation")
# Record keys under data/ that describe where/how data was read, not what was trained on.
DATA_NOISE = ("data/root", "data/num_workers", "data/download", "data/verify", "data/cache", "data/cache_dir",
              "data/device_resident", "data/source", "data/batch_size_per_device")
# The columns readers look for first; other varied keys are shown only when these do not already determine them.
HEADLINE = ("ablation/variant", "data", "data/image_size", "model", "model/stem", "model/block", "model/residual",
            "model/head", "model/depth")
STATUSES = ("finished", "diverged", "failed", "running", "missing")
ACC = "test/acc"


def _hashable(value: Any) -> Any:
    return json.dumps(value, sort_keys=True)


def is_config_key(key: str) -> bool:
    noise = {k.replace(".", "/") for k in noise_keys()} | set(DATA_NOISE)
    return key != SEED and key not in noise and any(key == p or key.startswith(p + "/") for p in CONFIG_KEYS)


@dataclass
class Row:
    """One configuration: its config values, its runs (all statuses) and how many expected runs are missing."""

    config: dict[str, Any]
    runs: list[dict[str, Any]] = field(default_factory=list)
    missing: int = 0
    label: str = ""
    order: float = math.inf  # position of its first job in the grid (grid order in tables)
    planned: dict[str, Any] = field(default_factory=dict)  # accounting-code values when no run exists yet

    def value(self, key: str) -> Any:
        """A per-configuration quantity (params, MACs, ...): the same in every run, so the first one recorded."""
        return next((r[key] for r in self.runs if r.get(key) is not None), self.planned.get(key))

    def finished(self) -> list[dict[str, Any]]:
        return [r for r in self.runs if r.get("status") == "finished"]

    def stat(self, key: str) -> tuple[float | None, float | None, int]:
        """Mean, sample std (n-1; None for n < 2) and n over the finished runs that recorded `key`."""
        values = [float(r[key]) for r in self.finished() if isinstance(r.get(key), (int, float))]
        if not values:
            return None, None, 0
        return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None, len(values)

    def counts(self) -> dict[str, int]:
        out = {s: sum(r.get("status") == s for r in self.runs) for s in STATUSES}
        out["missing"] = self.missing
        out["other"] = len(self.runs) - sum(out[s] for s in STATUSES if s != "missing")
        return out


# ------------------------------------------------------------------------------------------------- reading runs
def load_runs(root: str | Path) -> list[dict[str, Any]]:
    """Every `results.json` under `root` (a sweep dir or a single run dir). An unreadable file counts as failed."""
    root = Path(root)
    records = []
    for path in sorted(root.rglob(RESULTS)):
        record = read_results(path)
        if record is None:
            record = {"status": "failed", "error": f"unreadable {path}"}
        record.setdefault("run_dir", str(path.parent))
        records.append(record)
    return records


def _flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and not (set(v) == {"value"} or set(v) >= {"desc", "value"}):
            out.update(_flatten(v, key + "/"))
        else:
            out[key] = v["value"] if isinstance(v, Mapping) and "value" in v else v
    return out


WANDB_STATES = {"finished": "finished", "running": "running", "crashed": "failed", "failed": "failed",
                "killed": "failed"}


def from_wandb(summary: Mapping[str, Any], config: Mapping[str, Any], state: str = "finished",
               name: str = "") -> dict[str, Any]:
    """A results.json-shaped record from a wandb run's summary and config (nested dicts flattened with "/").
    The summary wins (it carries our final `status`); wandb's run state is the fallback status."""
    record = _flatten(config)
    record.update({k: v for k, v in _flatten(summary).items() if not k.startswith("_")})
    record.setdefault("status", WANDB_STATES.get(state, "failed"))
    record.setdefault("run_dir", f"wandb:{name}")
    return record


def fetch_wandb(path: str, ablation: str | None = None) -> list[dict[str, Any]]:
    """Records of the runs of `ENTITY/PROJECT` (only those of `ablation` if given) via wandb's public API."""
    import wandb

    if path.count("/") != 1:
        raise ConfigError(f"--wandb {path!r} must be ENTITY/PROJECT, e.g. --wandb my-team/vgg-vs-resnet")
    runs = wandb.Api().runs(path, filters={"group": ablation} if ablation else None)  # train.py: group = ablation
    return [from_wandb(dict(r.summary._json_dict), dict(r.config), r.state, r.name) for r in runs]


# ------------------------------------------------------------------------------------------------- grouping
def _label(overrides: Iterable[str], common: Mapping[str, str] | None = None) -> str:
    """`model=plain20 model.head=gap +ablation/variant=vgg16_gap` -> 'plain20 head=gap vgg16_gap' (seed, noise and
    the overrides `common` to every run left out)."""
    parts = []
    for key, value in job_identity(overrides, drop_seed=True).items():
        if common and common.get(key) == value:
            continue
        if "." in key:
            parts.append(f"{key.rsplit('.', 1)[1]}={value}")
        else:  # a config-group choice (model=, data=, ablation/variant=) reads best as its bare value
            parts.append(value)
    return " ".join(parts) or "all"


def _config(record: Mapping[str, Any], overrides: Mapping[str, str]) -> dict[str, Any]:
    """A run's configuration: its recorded config keys, plus the overrides results.json has no key for
    (`optim.lr=0.01` -> `optim/lr`, `+ablation/variant=vgg16_gap` -> `ablation/variant`). Seed and noise excluded."""
    config = {k: v for k, v in record.items() if is_config_key(k)}
    for key, value in overrides.items():
        key = key.replace(".", "/")
        if key not in record and is_config_key(key):
            config[key] = value
    return config


def group_runs(records: Sequence[Mapping[str, Any]], jobs: Sequence[Sequence[str]] | None = None,
               plan: Callable[[Sequence[str]], dict[str, Any]] | None = None) -> list[Row]:
    """Rows in grid order (when `jobs`, the expected overrides of each job, is given), then by label.

    Expected jobs with no record become `missing` in the row of the same configuration, or in a row of their own
    when no seed of that configuration has run: its config from `plan(job)` (what the job would train, see
    `models.ablation.planned`) or else from the job's overrides."""
    identities = [job_identity(rec.get("overrides") or []) for rec in records]
    every = [job_identity(job) for job in jobs] if jobs else identities
    common = dict(set.intersection(*(set(i.items()) for i in every))) if every else {}
    rows: dict[str, Row] = {}
    for rec, ident in zip(records, identities):
        config = _config(rec, ident)
        row = rows.setdefault(_hashable(config), Row(config))
        row.runs.append(dict(rec))
        row.label = row.label or _label(rec.get("overrides") or [], common)

    for index, job in enumerate(jobs or []):
        want = job_identity(job)
        matches = [rec for rec, ident in zip(records, identities) if want.items() <= ident.items()]
        same_config = job_identity(job, drop_seed=True)
        siblings = [key for key, row in rows.items()
                    if any(same_config.items() <= job_identity(r.get("overrides") or []).items() for r in row.runs)]
        if siblings:
            row = rows[siblings[0]]
            if row.order == math.inf:
                row.label = _label(job, common)
        else:  # nothing of this configuration ran: a row of its own
            key = "missing:" + _hashable(same_config)
            if key not in rows:
                values = plan(job) if plan else {}
                rows[key] = Row(_config(values, same_config), label=_label(job, common), planned=values)
            row = rows[key]
        row.order = min(row.order, index)
        row.missing += 0 if matches else 1
    return sorted(rows.values(), key=lambda r: (r.order, r.label))


def varied_columns(rows: Sequence[Row]) -> list[str]:
    """Config keys whose values differ across rows: the headline knobs, then any other varied key not already
    determined by the columns chosen so far (e.g. `model/depths` follows from `model`)."""
    keys = list(dict.fromkeys(k for row in rows for k in row.config))
    # A key absent from a row is a difference only where the row's record is complete: failed runs may stop before
    # recording their config, and rows of missing runs know only what the grid and the accounting code say.
    complete = [r for r in rows if any(run.get("status") != "failed" for run in r.runs)]
    varied = [k for k in keys if len({_hashable(r.config[k]) for r in rows if r.config.get(k) is not None}
                                     | {_hashable(r.config.get(k)) for r in complete}) > 1]
    chosen = [k for k in HEADLINE if k in varied]
    for key in (k for k in varied if k not in chosen):
        seen: dict[str, str] = {}
        determined = True
        for r in rows:
            if key not in r.config:
                continue
            ident = _hashable([r.config.get(c) for c in chosen])
            if seen.setdefault(ident, _hashable(r.config[key])) != _hashable(r.config[key]):
                determined = False
        if not determined or not chosen:
            chosen.append(key)
    return chosen


def column_name(key: str, keys: Sequence[str] = ()) -> str:
    """Readable column header: `model/residual` -> 'residual', `data/image_size` -> 'image size' (full key on clash)."""
    short = key.rsplit("/", 1)[-1]
    if sum(k.rsplit("/", 1)[-1] == short for k in keys) > 1:
        short = key
    return short.replace("_", " ").replace("/", " ")


# ------------------------------------------------------------------------------------------------- formatting
def _unit(values: Iterable[float | None], base: str) -> tuple[float, str]:
    """One scale for a whole column (readable, comparable): (divisor, header unit)."""
    top = max((abs(v) for v in values if v is not None), default=0.0)
    for div, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if top >= div:
            return div, f"{prefix}{base}" if base == "MACs" else f"{base} ({prefix})"
    return 1.0, base


def _cell(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return "[" + ",".join(map(str, value)) + "]"
    return str(value)


def _num(value: float | None, fmt: str, divisor: float = 1.0) -> str:
    return "–" if value is None else fmt.format(value / divisor)


def accuracy_cell(mean: float | None, std: float | None, n: int) -> str:
    """'0.850 ± 0.071' (n >= 2), '0.850' (n = 1), '–' (no finished run)."""
    if mean is None:
        return "–"
    return f"{mean:.3f}" if std is None else f"{mean:.3f} ± {std:.3f}"


def status_cell(row: Row) -> str:
    counts = row.counts()
    text = ", ".join(f"{counts[s]} {s}" for s in (*STATUSES, "other") if counts[s])
    return text if counts["finished"] == sum(counts.values()) else f"**{text}**"  # anything not finished stands out


def table(rows: Sequence[Row]) -> tuple[list[str], list[list[str]], int]:
    """Header, cells and the number of leading text columns: label (if needed), varied knobs, then params, MACs,
    head share, train img/s, test top-1, n, runs."""
    knobs = varied_columns(rows)
    # The label (from the grid's overrides) only when the knob columns alone do not tell the rows apart.
    show_label = len({tuple(_cell(r.config.get(k)) for k in knobs) for r in rows}) < len(rows)
    p_div, p_unit = _unit((r.value("params") for r in rows), "params")
    m_div, m_unit = _unit((r.value("macs") for r in rows), "MACs")
    has_head = any(r.value("params_share/head") is not None for r in rows)
    header = (["configuration"] if show_label else []) + [column_name(k, knobs) for k in knobs]
    header += [p_unit, m_unit] + (["head params"] if has_head else []) + ["train img/s", "test top-1", "n", "runs"]
    cells = []
    for r in rows:
        params, macs, head = (r.value(k) for k in ("params", "macs", "params_share/head"))
        line = ([r.label] if show_label else []) + [_cell(r.config.get(k)) for k in knobs]
        line += [_num(params, "{:.2f}", p_div), _num(macs, "{:.2f}", m_div)]
        line += [_num(head, "{:.1%}")] if has_head else []
        line += [_num(r.stat("train/images_per_s")[0], "{:.0f}"), accuracy_cell(*r.stat(ACC)), str(r.stat(ACC)[2]),
                 status_cell(r)]
        cells.append(line)
    return header, cells, len(header) - 5 - has_head - 1


def _values(rows: Sequence[Row], key: str) -> list[str]:
    """The distinct values of `key` over the finished runs, in order."""
    runs = [run for r in rows for run in r.finished()]
    return list(dict.fromkeys(_cell(run.get(key)) for run in runs if run.get(key) is not None))


def context(rows: Sequence[Row]) -> str:
    """Hardware, epochs, data and precision as recorded by the (finished) runs themselves."""
    pairs = dict.fromkeys((run.get("data"), run.get("data/image_size")) for r in rows for run in r.finished())
    data = " / ".join(f"{d} at {s}x{s}" for d, s in pairs if d) or "–"
    return "; ".join([f"hardware: {' / '.join(_values(rows, 'hardware/device')) or '–'}"
                      f" ({' / '.join(_values(rows, 'hardware/device_type')) or '?'})",
                      f"epochs: {' / '.join(_values(rows, 'epochs')) or '–'}", f"data: {data}",
                      f"precision: {' / '.join(_values(rows, 'precision')) or '–'}"])


def caption(rows: Sequence[Row], source: str) -> str:
    n_files = sum(len(r.runs) for r in rows)
    return (f"Source: {n_files} results.json under {source}; {context(rows)}. test top-1 = mean ± sample std (n−1) over the n finished seeds (test split, "
            "best-val checkpoint); params and MACs per image, forward pass, from each run's own accounting "
            "(FLOPs = 2 × MACs); train img/s measured during training, warm-up excluded. Rows with no run yet show "
            "params and MACs of the planned configuration from the accounting code. Generated by scripts/report.py; "
            "do not edit.")


def to_markdown(rows: Sequence[Row], source: str, title: str = "") -> str:
    header, cells, text = table(rows)
    align = ["---"] * text + ["---:"] * (len(header) - text - 1) + ["---"]  # numbers right-aligned
    lines = ([f"### {title}", ""] if title else [])
    lines += ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(c.replace("|", "/") for c in line) + " |" for line in cells]
    return "\n".join(lines + ["", caption(rows, source), ""])


def to_csv(rows: Sequence[Row], path: str | Path) -> None:
    """Raw numbers (no rounding), one line per configuration, for plotting elsewhere."""
    knobs = varied_columns(rows)
    fields = ["label", *knobs, "params", "macs", "flops", "params_share/head", "macs_share/stem",
              "train/images_per_s_mean", "test/acc_mean", "test/acc_std", "n", *STATUSES]
    with Path(path).open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        for r in rows:
            mean, std, n = r.stat(ACC)
            line: dict[str, Any] = {"label": r.label, **{k: _cell(r.config.get(k)) for k in knobs}}
            line.update({k: r.value(k) for k in ("params", "macs", "flops", "params_share/head", "macs_share/stem")})
            line.update({"train/images_per_s_mean": r.stat("train/images_per_s")[0], "test/acc_mean": mean,
                         "test/acc_std": std, "n": n, **{s: r.counts()[s] for s in STATUSES}})
            writer.writerow(line)


# ------------------------------------------------------------------------------------------------- figures
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


def plot_tradeoff(rows: Sequence[Row], cost: str, path: str | Path, title: str = "") -> Path | None:
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


def plot_parts(rows: Sequence[Row], path: str | Path) -> Path | None:
    """Params and MACs by part (stem / stages / head), stacked, via the complexity comparison's own figure."""
    from models.compare import Row as CompareRow
    from models.complexity import Complexity, PartStats

    compared = []
    for r in rows:
        run = next((x for x in r.runs if x.get("params") is not None), r.planned)  # complexity needs no training
        if run.get("params") is None:
            continue
        names = [k.split("/", 1)[1] for k in run if k.startswith("params/")]
        parts = [PartStats(n, int(run[f"params/{n}"]), int(run.get(f"macs/{n}") or 0), 0) for n in names]
        size = int(run.get("data/image_size") or run.get("input_size") or 0)
        compared.append(CompareRow(r.label or str(r.config.get("model")), {}, Complexity(
            (size, size), int(run["params"]), int(run.get("trainable_params") or 0), int(run.get("macs") or 0), 0,
            parts)))
    if not compared:
        return None
    from models.compare import plot_parts as draw

    draw(compared, path)
    return Path(path)


def plot_error_vs_depth(rows: Sequence[Row], path: str | Path) -> Path | None:
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


def write_report(rows: Sequence[Row], out_dir: str | Path, source: str, title: str = "") -> dict[str, Path]:
    """table.md, table.csv and the figures that apply; returns {name: path} of what was written."""
    if not rows:
        raise ConfigError(f"nothing to report for {source}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = {"table.md": out / "table.md", "table.csv": out / "table.csv"}
    written["table.md"].write_text(to_markdown(rows, source, title))
    to_csv(rows, written["table.csv"])
    figures = {"acc_vs_macs.png": lambda p: plot_tradeoff(rows, "macs", p, "test top-1 vs MACs (point area ~ params)"),
               "acc_vs_params.png": lambda p: plot_tradeoff(rows, "params", p, "test top-1 vs params"),
               "parts.png": lambda p: plot_parts(rows, p),
               "error_vs_depth.png": lambda p: plot_error_vs_depth(rows, p)}
    for name, draw in figures.items():
        if draw(out / name) is not None:
            written[name] = out / name
    return written


# ------------------------------------------------------------------------------------------------- entry point
def resolve_target(target: str) -> tuple[Path, str | None]:
    """An existing directory (any sweep or run dir) or a named ablation (its sweep dir): (dir, ablation name)."""
    from models.ablation import check_name, sweep_dir

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
    from models.ablation import grid, list_ablations, planned

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
