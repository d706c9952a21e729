"""Side-by-side complexity of several models: the table and figure behind `scripts/complexity.py` and the README.

Every number here is computed by `models.complexity.profile`; nothing is typed by hand.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from models.complexity import Complexity, profile
from models.presets import build, get_preset, get_spec

GROUPS = ("stem", "stages", "head")  # stage1..N are summed into "stages" for the share columns


@dataclass
class Row:
    label: str
    knobs: dict[str, Any]
    complexity: Complexity

    def group(self, key: str, group: str) -> int:
        """params or macs of stem / stages (all stages) / head."""
        parts = self.complexity.parts
        chosen = [p for p in parts if (p.name.startswith("stage") if group == "stages" else p.name == group)]
        return sum(getattr(p, key) for p in chosen)

    def share(self, key: str, group: str) -> float:
        total = getattr(self.complexity, key)
        return self.group(key, group) / total if total else 0.0

    def flat(self) -> dict[str, Any]:
        out: dict[str, Any] = {"label": self.label, **{f"model/{k}": v for k, v in self.knobs.items()}}
        out.update(self.complexity.summary())
        for key in ("params", "macs"):
            for g in GROUPS:
                out[f"{key}/{g}"] = self.group(key, g)
                out[f"{key}_share/{g}"] = self.share(key, g)
        return out


def _knobs(entry: str | Mapping[str, Any]) -> dict[str, Any]:
    return {"name": entry} if isinstance(entry, str) else {k: v for k, v in dict(entry).items() if k != "label"}


def entry_label(entry: str | Mapping[str, Any]) -> str:
    """The entry's `label`, else the preset name plus the knobs that differ from the preset."""
    if isinstance(entry, Mapping) and entry.get("label"):
        return str(entry["label"])
    knobs = {k: v for k, v in _knobs(entry).items() if v is not None}  # None = "the preset's own"
    name = knobs.pop("name", None)
    base = get_preset(name).spec.knobs() if name else {}
    changed = {k: v for k, v in get_spec(knobs).knobs().items() if k in knobs and base.get(k) != v} if name else knobs
    return (name or "custom") + "".join(f" {k}={v}" for k, v in changed.items())


def compare(entries: Sequence[str | Mapping[str, Any]], input_size: int | None = None,
            num_classes: int | None = None) -> list[Row]:
    """Profile each entry (a preset name or a mapping: `name`, optional `label`, knob overrides).

    `input_size` / `num_classes` None: each preset's own (224 and 1000 for ImageNet presets, 32 and 10 for CIFAR).
    """
    rows = []
    for entry in entries:
        knobs = _knobs(entry)
        preset = get_preset(knobs["name"]) if knobs.get("name") else None
        if knobs.get("num_classes") is None:
            knobs["num_classes"] = num_classes or (preset.spec.num_classes if preset else 1000)
        size = input_size or (preset.input_size if preset else 224)
        spec = get_spec(knobs)
        spec.check_input_size(size, "input_size")
        with torch.device("meta"):  # counting needs shapes only: no weight init, no arithmetic
            model = build(spec)
        rows.append(Row(entry_label(entry), spec.knobs(), profile(model, size)))
    return rows


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def to_markdown(rows: Sequence[Row]) -> str:
    head = ("| model | depth | input | params | MACs | GMACs | GFLOPs (=2xMACs) | params: stem / stages / head "
            "| MACs: stem / stages / head |")
    lines = [head, "|---|---:|---:|---:|---:|---:|---:|---|---|"]
    for r in rows:
        c = r.complexity
        lines.append(
            f"| {r.label} | {r.knobs['depth']} | {c.input_size[0]} | {c.params:,} | {c.macs:,} | {c.macs / 1e9:.2f} | {c.flops / 1e9:.2f} "
            f"| {' / '.join(_pct(r.share('params', g)) for g in GROUPS)} "
            f"| {' / '.join(_pct(r.share('macs', g)) for g in GROUPS)} |"
        )
    lines.append("")
    lines.append("Batch 1, forward pass, square input of the given size. MACs = multiply-accumulates of conv/linear weights "
                 "(= torchvision's GFLOPS, = He et al.'s FLOPs); FLOPs = 2 x MACs; bias additions excluded.")
    return "\n".join(lines) + "\n"


def layer_table(row: Row) -> str:
    lines = [f"Per-layer breakdown of {row.label}:", "| layer | kind | part | params | MACs | output | activations |",
             "|---|---|---|---:|---:|---|---:|"]
    for layer in row.complexity.layers:
        if layer.params or layer.macs or layer.kind.endswith("Pool2d"):
            shape = "x".join(map(str, layer.output_shape))
            lines.append(f"| {layer.name} | {layer.kind} | {layer.part} | {layer.params:,} | {layer.macs:,} | {shape} "
                         f"| {layer.activations:,} |")
    return "\n".join(lines) + "\n"


def write_outputs(rows: Sequence[Row], out_dir: str | Path, stem: str = "complexity") -> list[Path]:
    """JSON (with per-layer detail), CSV (flat), Markdown table and the PNG figure."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{stem}.json", out / f"{stem}.csv", out / f"{stem}.md", out / f"{stem}.png"]
    paths[0].write_text(json.dumps([{"label": r.label, "knobs": r.knobs, **r.complexity.to_dict()} for r in rows],
                                   indent=1))
    flat = [r.flat() for r in rows]
    keys = list(dict.fromkeys(k for f in flat for k in f))
    with paths[1].open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(flat)
    paths[2].write_text(to_markdown(rows))
    plot_parts(rows, paths[3])
    return paths


def plot_parts(rows: Sequence[Row], path: str | Path) -> None:
    """Two panels of stacked bars: where the parameters and the MACs live (stem / stages / head)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"stem": "#4c72b0", "stages": "#55a868", "head": "#c44e52"}
    fig, axes = plt.subplots(1, 2, figsize=(12, 0.5 * len(rows) + 2.5))
    labels = [r.label for r in rows]
    for ax, key, unit, scale in ((axes[0], "params", "parameters (millions)", 1e6),
                                 (axes[1], "macs", "MACs (billions; FLOPs = 2 x MACs)", 1e9)):
        left = [0.0] * len(rows)
        for g in GROUPS:
            values = [r.group(key, g) / scale for r in rows]
            ax.barh(labels, values, left=left, color=colors[g], label=g)
            left = [a + b for a, b in zip(left, values)]
        ax.set_xlabel(unit)
        ax.invert_yaxis()
        ax.grid(axis="x", alpha=0.3)
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=len(GROUPS), frameon=False)
    sizes = sorted({r.complexity.input_size[0] for r in rows})
    fig.suptitle(f"Where parameters and multiply-adds live (input {'/'.join(map(str, sizes))} px)")
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
