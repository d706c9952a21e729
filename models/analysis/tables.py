"""Every table the project writes: one Markdown and one CSV writer, and the cells of the ablation report and of the
complexity comparison built on them. Numbers come from run records or the accounting code; nothing is typed here."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from models.complexity import GROUPS

if TYPE_CHECKING:
    from models.analysis.compare import ModelComplexity
    from models.analysis.runs import Configuration


# ------------------------------------------------------------------------------------------------- writers
def markdown(header: Sequence[str], rows: Iterable[Sequence[Any]], right: Iterable[int] = ()) -> str:
    """A Markdown table; the columns whose indices are in `right` (numbers) are right-aligned."""
    right = set(right)
    align = ["---:" if i in right else "---" for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(str(c).replace("|", "/") for c in row) + " |" for row in rows]
    return "\n".join(lines)


def write_csv(path: str | Path, rows: Sequence[Mapping[str, Any]], fields: Sequence[str] | None = None) -> Path:
    """Raw values (no rounding), one line per row; `fields` defaults to every key, in first-seen order."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fields = list(fields) if fields is not None else list(dict.fromkeys(k for r in rows for k in r))
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


def cell(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return "[" + ",".join(map(str, value)) + "]"
    return str(value)


def num(value: float | None, fmt: str, divisor: float = 1.0) -> str:
    return "–" if value is None else fmt.format(value / divisor)


def pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def unit(values: Iterable[float | None], base: str) -> tuple[float, str]:
    """One scale for a whole column (readable, comparable): (divisor, header unit)."""
    top = max((abs(v) for v in values if v is not None), default=0.0)
    for div, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if top >= div:
            return div, f"{prefix}{base}" if base == "MACs" else f"{base} ({prefix})"
    return 1.0, base


# ------------------------------------------------------------------------------------------------- ablation report
ACC = "test/acc"
REPORT_CSV_KEYS = ("params", "macs", "flops", "params_share/head", "macs_share/head", "macs_share/stem",
                   "time_share/head", "packed_jobs")


def accuracy_cell(mean: float | None, std: float | None, n: int) -> str:
    """'0.850 ± 0.071' (n >= 2), '0.850' (n = 1), '–' (no finished run)."""
    if mean is None:
        return "–"
    return f"{mean:.3f}" if std is None else f"{mean:.3f} ± {std:.3f}"


def status_cell(row: Configuration) -> str:
    from models.analysis.runs import STATUSES

    counts = row.counts()
    text = ", ".join(f"{counts[s]} {s}" for s in (*STATUSES, "other") if counts[s])
    return text if counts["finished"] == sum(counts.values()) else f"**{text}**"  # anything not finished stands out


# The head's share of the parameters, of the MACs and of the measured time (when the runs recorded them).
HEAD_SHARES = (("params_share/head", "head params"), ("macs_share/head", "head MACs"), ("time_share/head", "head time"))


def report_table(rows: Sequence[Configuration]) -> tuple[list[str], list[list[str]], int]:
    """Header, cells and the number of leading text columns: label (if needed), varied knobs, then params, MACs,
    the head's shares (params / MACs / measured time), train img/s, test top-1, n, runs."""
    from models.analysis.runs import column_name, varied_columns

    knobs = varied_columns(rows)
    # The label (from the grid's overrides) only when the knob columns alone do not tell the rows apart.
    show_label = len({tuple(cell(r.config.get(k)) for k in knobs) for r in rows}) < len(rows)
    p_div, p_unit = unit((r.value("params") for r in rows), "params")
    m_div, m_unit = unit((r.value("macs") for r in rows), "MACs")
    shares = [(key, name) for key, name in HEAD_SHARES if any(r.value(key) is not None for r in rows)]
    packed = any(r.value("packed_jobs") and r.value("packed_jobs") > 1 for r in rows)
    header = (["configuration"] if show_label else []) + [column_name(k, knobs) for k in knobs]
    header += [p_unit, m_unit, *(name for _, name in shares), "train img/s" + (" †" if packed else ""),
               "test top-1", "n", "runs"]
    cells = []
    for r in rows:
        line = ([r.label] if show_label else []) + [cell(r.config.get(k)) for k in knobs]
        line += [num(r.value("params"), "{:.2f}", p_div), num(r.value("macs"), "{:.2f}", m_div)]
        line += [num(r.value(key), "{:.1%}") for key, _ in shares]
        rate = num(r.stat("train/images_per_s")[0], "{:.0f}")
        line += [rate + (" †" if (r.value("packed_jobs") or 1) > 1 else ""), accuracy_cell(*r.stat(ACC)),
                 str(r.stat(ACC)[2]), status_cell(r)]
        cells.append(line)
    return header, cells, len(header) - 6 - len(shares)


def _values(rows: Sequence[Configuration], key: str) -> list[str]:
    """The distinct values of `key` over the finished runs, in order."""
    runs = [run for r in rows for run in r.finished()]
    return list(dict.fromkeys(cell(run.get(key)) for run in runs if run.get(key) is not None))


def context(rows: Sequence[Configuration]) -> str:
    """Hardware, epochs, data and precision as recorded by the (finished) runs themselves."""
    pairs = dict.fromkeys((run.get("data"), run.get("data/image_size")) for r in rows for run in r.finished())
    data = " / ".join(f"{d} at {s}x{s}" for d, s in pairs if d) or "–"
    parts = [f"hardware: {' / '.join(_values(rows, 'hardware/device')) or '–'}"
             f" ({' / '.join(_values(rows, 'hardware/device_type')) or '?'})",
             f"epochs: {' / '.join(_values(rows, 'epochs')) or '–'}", f"data: {data}",
             f"precision: {' / '.join(_values(rows, 'precision')) or '–'}"]
    tests = _values(rows, "data/test_source")
    if tests:
        parts.append(f"test split: {' / '.join(tests)}")
    if "yes" in _values(rows, "data/val_is_test"):
        parts.append("CAVEAT: some runs report test on the val split that picked their checkpoint (data.val_size=0)")
    return "; ".join(parts)


def caption(rows: Sequence[Configuration], source: str) -> str:
    n_files = sum(len(r.runs) for r in rows)
    packed = sorted({int(run["packed_jobs"]) for r in rows for run in r.finished()
                     if (run.get("packed_jobs") or 1) > 1})
    note = (f" † img/s measured while {' / '.join(map(str, packed))} runs shared the device (hydra.launcher."
            "jobs_per_gpu): not comparable with a run that had it alone." if packed else "")
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
    from models.analysis.runs import STATUSES, varied_columns

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


# ------------------------------------------------------------------------------------------------- complexity
COMPLEXITY_NOTE = ("Batch 1, forward pass, square input of the given size. MACs = multiply-accumulates of conv/linear "
                   "weights (= torchvision's GFLOPS, = He et al.'s FLOPs); FLOPs = 2 x MACs; bias additions excluded.")


def complexity_markdown(rows: Sequence[ModelComplexity]) -> str:
    """The comparison table; with measured time (every row timed), two more columns and the conditions."""
    timed = bool(rows) and all(r.timing is not None for r in rows)
    header = ["model", "depth", "input", "params", "MACs", "GMACs", "GFLOPs (=2xMACs)",
              "params: stem / stages / head", "MACs: stem / stages / head"]
    header += ["fwd+bwd ms/image", "time: stem / stages / head"] if timed else []
    cells = []
    for r in rows:
        c = r.complexity
        line = [r.label, r.knobs["depth"], c.input_size[0], f"{c.params:,}", f"{c.macs:,}", f"{c.macs / 1e9:.2f}",
                f"{c.flops / 1e9:.2f}", " / ".join(pct(c.share("params", g)) for g in GROUPS),
                " / ".join(pct(c.share("macs", g)) for g in GROUPS)]
        if timed:
            line += [f"{r.timing.total.fwdbwd_ms / r.timing.batch_size:,.2f}",
                     " / ".join(pct(r.time_groups()[g]) for g in GROUPS)]
        cells.append(line)
    note = COMPLEXITY_NOTE + (" " + timing_note(rows) if timed else "")
    return markdown(header, cells, right=range(1, 7) if not timed else (*range(1, 7), 9)) + "\n\n" + note + "\n"


def timing_note(rows: Sequence[ModelComplexity]) -> str:
    """Where and how the time columns were measured (every number in them is a measurement of this run)."""
    import torch

    from models.utils.system import device_name

    t = rows[0].timing
    threads = f", {torch.get_num_threads()} threads" if t.device == "cpu" else ""
    return (f"Time: measured on {device_name(t.device)} ({t.device}{threads}, precision {t.precision}, batch "
            f"{t.batch_size}{', channels_last' if t.channels_last else ''}), forward+backward in train mode, median of "
            f"{t.repeats} "
            "runs after warm-up, per image; the time shares split the sum of the parts' times (parts timed one by "
            "one on the inputs they get in the network).")


def layer_markdown(row: ModelComplexity) -> str:
    cells = [[layer.name, layer.kind, layer.part, f"{layer.params:,}", f"{layer.macs:,}",
              "x".join(map(str, layer.output_shape)), f"{layer.activations:,}"]
             for layer in row.complexity.layers if layer.params or layer.macs or layer.kind.endswith("Pool2d")]
    table = markdown(["layer", "kind", "part", "params", "MACs", "output", "activations"], cells, right=(3, 4, 6))
    return f"Per-layer breakdown of {row.label}:\n{table}\n"
