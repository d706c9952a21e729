"""The report's table: one row per configuration (label or varied knobs, params, MACs, training memory, the head's
shares, img/s, test top-1 with its seed spread, the published number where the setting matches, the code version),
its footnote, and the same table as Markdown, CSV and LaTeX (booktabs). Numbers come from the records only."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from models.analysis.references import differences, reference_for
from models.analysis.runs import ACC, STATUSES, Configuration, column_name, context, varied_columns
from models.errors import ConfigError
from models.utils.provenance import code_label
from models.utils.tables import cell, latex, markdown, num, unit, write_csv

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
    fell_back = sum(bool(run.get("compile/fallback")) for run in row.runs)
    if fell_back:  # torch.compile failed: trained eager (their img/s are not the compiled path's)
        text += f" ({fell_back} compile fell back to eager)"
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
    published = any(reference_for(run) for r in rows for run in r.finished())
    header = (["configuration"] if show_label else []) + [column_name(k, knobs) for k in knobs]
    header += [p_unit, m_unit, *(["train memory GiB"] if memory else []), *(name for _, name in shares),
               "train img/s" + (" †" if packed else ""), "test top-1", *(["published", "Δ"] if published else []),
               "n", "code", "runs"]
    cells = []
    for r in rows:
        line = ([r.label] if show_label else []) + [cell(r.config.get(k)) for k in knobs]
        line += [num(r.value("params"), "{:.2f}", p_div), num(r.value("macs"), "{:.2f}", m_div)]
        line += [num(r.value("memory/peak_bytes"), "{:.2f}", 2**30)] if memory else []
        line += [num(r.value(key), "{:.1%}") + (" ‡" if key.startswith("time") and unreliable_timing(r) else "")
                 for key, _ in shares]
        rate = num(r.stat("train/images_per_s")[0], "{:.0f}")
        line += [rate + (" †" if (r.value("packed_jobs") or 1) > 1 else ""), accuracy_cell(*r.stat(ACC))]
        line += list(published_cells(r)) if published else []
        line += [str(r.stat(ACC)[2]), code_cell(r), status_cell(r)]
        cells.append(line)
    return header, cells, len(header) - 7 - len(shares) - memory - 2 * published


def published_cells(row: Configuration) -> tuple[str, str]:
    """(published top-1, ours - published) where every finished run's setting matches the reference's, else
    ("–", "–") (the footnote says what differs)."""
    runs = row.finished()
    ref = reference_for(runs[0]) if runs else None
    if ref is None or any(differences(ref, run) for run in runs):
        return "–", "–"
    mean = row.stat(ACC)[0]
    return f"{ref.accuracy():.4f}", "–" if mean is None else f"{mean - ref.accuracy():+.4f}"


def published_note(rows: Sequence[Configuration]) -> str:
    shown, differ = [], []
    for r in rows:
        runs = r.finished()
        ref = reference_for(runs[0]) if runs else None
        if ref is None:
            continue
        why = sorted({d for run in runs for d in differences(ref, run)})
        (differ if why else shown).append((r, ref, why))
    parts = [f" Published: {ref.source} ({ref.model}: {ref.metric} {ref.value})." for _, ref, _ in shown]
    grouped: dict[tuple[str, str], list[str]] = {}
    for r, ref, why in differ:  # one sentence per source and reason, naming every row it holds for
        grouped.setdefault((ref.source, "; ".join(why)), []).append(r.label or ref.model)
    parts += [f" Published {source} not shown for {', '.join(names)}: {why}." for (source, why), names in
              grouped.items()]
    return "".join(parts)


def code_cell(row: Configuration) -> str:
    """The code version(s) the row's runs came from (`abc1234`, `abc1234+dirty:...`); several only with
    --mixed-code=allow, marked."""
    labels = sorted({code_label(run) for run in row.runs if run.get("status") != "missing"})
    return labels[0] if len(labels) == 1 else (" / ".join(labels) + " (mixed code)" if labels else "–")


def check_code(rows: Sequence[Configuration], allow: bool = False) -> None:
    """Refuse (one line) to average the seeds of one configuration produced by different code."""
    for r in rows:
        labels = sorted({code_label(run) for run in r.finished()})
        if len(labels) > 1 and not allow:
            name = r.label if r.label and r.label != "all" else r.config.get("model")
            raise ConfigError(f"configuration {name} has finished runs of different code "
                              f"({', '.join(labels)}): re-run them with one version, or pass --mixed-code=allow to "
                              "average them anyway (the table marks the row)")


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
    note += published_note(rows)
    if any(r.value("memory/peak_bytes") is not None for r in rows):
        note += (" train memory = predicted peak of a training step at the run's batch and precision (fp32 weights, "
                 "gradients, optimizer state, the activations autograd saves, counted exactly; models/memory.py).")
    return (f"Source: {n_files} results.json under {source}; {context(rows)}. test top-1 = mean ± sample std (n−1) "
            "over the n finished seeds (test split, best-val checkpoint); params and MACs per image, forward pass, "
            "from each run's own accounting (FLOPs = 2 × MACs); head time = the head's share of the forward+backward "
            "time measured once per run before training; train img/s measured during training, warm-up excluded; "
            "code = the commit that produced the runs (+dirty: with uncommitted changes, hashed)."
            f"{note} Rows with no run yet show params and MACs of the planned configuration from the accounting "
            "code. Generated by scripts/report.py; do not edit.")


def report_markdown(rows: Sequence[Configuration], source: str, title: str = "") -> str:
    header, cells, text = report_table(rows)
    table = markdown(header, cells, right=range(text, len(header) - 2))  # numbers right-aligned, code/runs left
    return "\n".join(([f"### {title}", ""] if title else []) + [table, "", caption(rows, source), ""])


def report_latex(rows: Sequence[Configuration], source: str, title: str = "") -> str:
    """The same table and footnote as `report_markdown`, as a booktabs table."""
    header, cells, text = report_table(rows)
    return latex(header, cells, range(text, len(header) - 2), title, caption(rows, source))


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


def headline_markdown(rows: Sequence[Configuration]) -> str:
    """The README's short table of a grid, at most 8 columns: the configuration (preset and the knobs the grid
    varies), params, MACs, train img/s, test top-1 (± sd over seeds), the published number where the setting
    matches, n. The full table is the report's table.md."""
    knobs = [k for k in varied_columns(rows) if k not in ("model", "model/name", "model/depth", "model/residual")]
    p_div, p_unit = unit((r.value("params") for r in rows), "params")
    m_div, m_unit = unit((r.value("macs") for r in rows), "MACs")
    packed = any((r.value("packed_jobs") or 1) > 1 for r in rows)
    header = ["model", p_unit, m_unit, "train img/s" + (" †" if packed else ""), "test top-1", "published", "n"]
    cells = []
    for r in rows:
        name = " ".join([str(r.config.get("model") or r.label),
                         *(f"{column_name(k, knobs)}={cell(r.config.get(k))}" for k in knobs)])
        mean, std, n = r.stat(ACC)
        cells.append([name, num(r.value("params"), "{:.2f}", p_div), num(r.value("macs"), "{:.2f}", m_div),
                      num(r.stat("train/images_per_s")[0], "{:,.0f}"),
                      "–" if mean is None else f"{100 * mean:.1f}%" + (f" ± {100 * std:.1f}" if std else ""),
                      published_cells(r)[0], str(n)])
    return markdown(header, cells, right=range(1, len(header)))
