"""The one Markdown / CSV table writer every report uses (ablation reports, the complexity comparison, the benchmark),
and the cell formats they share. No schema lives here: each report builds its own columns."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any


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
