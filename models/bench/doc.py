"""The benchmark's outputs: its table (Markdown, CSV, JSON), the generated part of docs/benchmark.md, and the
targets checked against the measured numbers."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from models.bench.speed import COLUMNS, SpeedResult
from models.utils.system import machine_line
from models.utils.tables import markdown
from models.utils.tables import write_csv as write_tables_csv


def fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        return f"{v:,.3f}" if abs(v) < 10 else f"{v:,.1f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def markdown_table(rows: list[SpeedResult]) -> str:
    return markdown(COLUMNS, ([fmt(r.cells()[k]) for k in COLUMNS] for r in rows), right=range(7, len(COLUMNS)))


def write_csv(rows: list[SpeedResult], path: str | Path, info: dict[str, Any]) -> None:
    """Every column of the table plus the windows, the load and the machine."""
    lines = [{**r.cells(), "paired ratio": round(r.paired_ratio, 3), "runmeter img/s": r.runmeter,
              "data_wait_frac": r.data_wait_frac, "peak_flops": r.peak_flops,
              "project windows": " ".join(f"{x:.1f}" for x in r.project_windows),
              "minimal windows": " ".join(f"{x:.1f}" for x in r.minimal_windows), "load_before": r.load_before,
              "load_after": r.load_after, "cpu": info["hardware/cpu"], "cores": info["hardware/cpu_count"],
              "threads": info["hardware/threads"], "torch": info["software/torch"]} for r in rows]
    write_tables_csv(path, lines)


def as_dict(row: SpeedResult) -> dict[str, Any]:
    return {**row.cells(), "case": asdict(row.case), "paired_ratio": row.paired_ratio, "runmeter": row.runmeter,
            "data_wait_frac": row.data_wait_frac,
            "project_windows": row.project_windows, "minimal_windows": row.minimal_windows,
            "project_spans": row.project_spans, "minimal_spans": row.minimal_spans, "minimal_steps": row.minimal_steps,
            "minimal_loss": row.minimal_loss, "peak_flops": row.peak_flops,
            "load_before": row.load_before, "load_after": row.load_after}


def write_report(path: str | Path, rows: list[SpeedResult], epochs: list[dict[str, Any]], start: dict[str, Any],
                 end: dict[str, Any], command: str, packed: list[dict[str, Any]] | None = None) -> None:
    """The generated part of docs/benchmark.md (between markers, so hand-written text around it survives)."""
    lines = [f"Command: `{command}`", "",
             f"Machine: {machine_line(start)} at the start, {end['hardware/load_1min']} at the end.", "",
             markdown_table(rows), ""]
    for r in rows:
        lines.append(f"- {r.case.model} ({r.data_label}, {r.size}px, batch {r.case.batch}, {r.case.precision}): "
                     "project "
                     f"windows {[round(x, 1) for x in r.project_windows]} img/s (RunMeter over the same steps: "
                     f"{fmt(r.runmeter)}), minimal windows {[round(x, 1) for x in r.minimal_windows]}, median of "
                     f"the per-pair ratios {r.paired_ratio:.3f}, data wait "
                     f"{fmt(r.data_wait_frac)}, load {r.load_before} -> {r.load_after}")
    if epochs:
        lines += ["", "| one epoch of resnet20 (45,000 images, batch 128) | epoch time s | train img/s | data wait |",
                  "|---|---:|---:|---:|"]
        for e in epochs:
            lines.append(f"| {e['loader']} | {fmt(e['epoch_time_s'])} | {fmt(e['train/images_per_s'])} | "
                         f"{fmt(e['train/data_wait_frac'])} |")
    for p in packed or []:
        lines.append(f"- {p['jobs']} packed {p['model']} b{p['batch']} runs on one device: {p['aggregate']:,.1f} img/s "
                     f"together vs {p['single']:,.1f} alone ({p['speedup']:.2f}x; per run "
                     f"{[round(x, 1) for x in p['per_job']]}, overlap {p['overlap']:.2f})")
    lines += ["", "Targets:"] + [f"- {t}" for t in [*targets(rows, epochs), *gpu_targets(rows, packed or [])]]
    generated = "\n".join(lines)
    begin, stop = "<!-- benchmark:begin -->", "<!-- benchmark:end -->"
    path = Path(path)
    text = path.read_text() if path.is_file() else f"# Benchmark\n\n{begin}\n{stop}\n"
    if begin not in text or stop not in text:
        text += f"\n{begin}\n{stop}\n"
    head, rest = text.split(begin, 1)
    _, tail = rest.split(stop, 1)
    path.write_text(f"{head}{begin}\n{generated}\n{stop}{tail}")


def profile_macs(model: str, size: int, num_classes: int = 10) -> int:
    """MACs/image of a preset at `size` (the table's MACs column)."""
    import models
    from models.complexity import profile

    return int(profile(models.build(model, num_classes=num_classes), size).macs)


def gpu_targets(rows: list[SpeedResult], packed: list[dict[str, Any]]) -> list[str]:
    """The GPU goals, checked against this run's numbers (only rows measured on CUDA have a graph loop)."""
    out = []
    for r in rows:
        c = r.case
        if r.graph and c.model == "resnet20" and c.batch == 128:
            x = r.project / r.graph
            out.append(f"resnet20 b128 project / CUDA-graph loop >= 0.9: {r.project:,.0f} / {r.graph:,.0f} = {x:.3f} "
                       f"({'met' if x >= 0.9 else 'NOT met'})")
        if r.graph and r.data_label == "folder+cache":
            out.append(f"{c.model} {r.size}px project / eager loop >= 0.95: {r.ratio:.3f} "
                       f"({'met' if r.ratio >= 0.95 else 'NOT met'}); compiled path ahead of the eager loop: "
                       f"{'met' if r.project > r.minimal else 'NOT met'}")
    for p in packed:
        out.append(f"{p['jobs']} packed {p['model']} runs >= 3x one run's throughput: {p['speedup']:.2f}x "
                   f"({'met' if p['speedup'] >= 3 else 'NOT met'}; overlap {p['overlap']:.2f})")
    return out


def targets(rows: list[SpeedResult], epochs: list[dict[str, Any]]) -> list[str]:
    """The issue's targets, checked against this run's numbers."""
    out = []
    for r in rows:
        c = r.case
        if c.precision == "32-true" and not c.channels_last and not c.compile and (
                (c.model == "resnet20" and r.size == 32 and c.batch == 128) or r.data_label == "folder+cache"):
            ok = "met" if r.ratio >= 0.95 else "NOT met"
            out.append(f"project/minimal >= 0.95, {c.model} {r.data_label} {r.size}px b{c.batch}: {r.ratio:.3f} ({ok})")
            if c.model == "resnet20":
                x = r.pipeline / r.project if r.project else float("nan")
                out.append(f"device-resident pipeline >= 10x resnet20 training: {r.pipeline:,.0f} / {r.project:,.1f}"
                           f" img/s = {x:,.1f}x ({'met' if x >= 10 else 'NOT met'})")
    if len(epochs) == 2:
        dev, dl = epochs[0]["epoch_time_s"], epochs[1]["epoch_time_s"]
        out.append(f"one resnet20 epoch, device path faster than the per-image DataLoader: {dev:.1f} s vs {dl:.1f} s"
                   f" ({dl / dev:.2f}x; {'met' if dev < dl else 'NOT met'})")
    return out
