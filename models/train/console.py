"""What a run prints for people: the summary table at the end of a run (or of a run found already done)."""

from __future__ import annotations

from typing import Any

SUMMARY_KEYS = (("run", "run_dir"), ("status", "status"), ("model", "model"), ("data", "data"), ("params", "params"),
                ("MACs", "macs"), ("val/acc_best", "val/acc_best"), ("test/acc", "test/acc"),
                ("test/acc_top5", "test/acc_top5"), ("test_last/acc", "test_last/acc"),
                ("train images/s", "train/images_per_s"), ("epochs", "epochs"), ("wall time s", "wall_time_s"))


def fmt(value: Any) -> str:
    """Numbers as people read them: 4 decimals below 10, thousands separators above."""
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 10 else f"{value:,.1f}"
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)


def print_summary(record: dict[str, Any]) -> None:
    rows = [(label, record.get(key)) for label, key in SUMMARY_KEYS]
    width = max(len(k) for k, _ in rows)
    print("\n".join(f"{k:<{width}}  {fmt(v)}" for k, v in rows if v is not None), flush=True)
