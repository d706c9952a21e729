"""Side-by-side complexity of several models: the table and figure behind `scripts/complexity.py` and the README.

Every number here is computed by `models.complexity.profile`; nothing is typed by hand.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from models.analysis.figures import plot_layer_profile, plot_parts, plot_roofline
from models.analysis.tables import complexity_markdown, write_csv
from models.bench.timing import ModelTiming, measure
from models.complexity import Complexity, group_totals, profile
from models.presets import build, get_preset, get_spec


@dataclass
class ModelComplexity:
    """One compared model: its label, its knobs, its exact complexity and (when measured) its timing."""

    label: str
    knobs: dict[str, Any]
    complexity: Complexity
    timing: ModelTiming | None = None

    def flat(self) -> dict[str, Any]:
        out: dict[str, Any] = {"label": self.label, **{f"model/{k}": v for k, v in self.knobs.items()}}
        out.update(self.complexity.summary())
        for key in ("params", "macs"):
            for g, value in self.complexity.groups(key).items():
                out[f"{key}/{g}"] = value
                out[f"{key}_share/{g}"] = self.complexity.share(key, g)
        if self.timing is not None:
            out.update(self.timing.summary())
            out.update({f"time_share/{g}": v for g, v in self.time_groups().items()})
        return out

    def time_groups(self) -> dict[str, float]:
        """Shares of the measured forward+backward time held by stem / stages / head (they add up to 1)."""
        assert self.timing is not None
        return group_totals({p.name: self.timing.share(p.name) for p in self.timing.parts})


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
            num_classes: int | None = None) -> list[ModelComplexity]:
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
        rows.append(ModelComplexity(entry_label(entry), spec.knobs(), profile(model, size)))
    return rows


def measure_rows(rows: Sequence[ModelComplexity], batch_size: int, device: str, precision: str,
                 channels_last: bool = False, repeats: int = 3, warmup: int = 1, log: Any = None) -> None:
    """Attach measured time (per part and per layer) to each row: the same network, built with weights this time."""
    for row in rows:
        if log:
            log(f"timing {row.label} (batch {batch_size}, {device}, {precision}) ...")
        spec = get_spec({k: v for k, v in row.knobs.items() if k not in ("depth", "width")})
        row.timing = measure(build(spec), row.complexity.input_size[0], batch_size, device, precision, channels_last,
                             repeats, warmup)


def parts_figure(rows: Sequence[ModelComplexity], path: str | Path) -> Path:
    sizes = sorted({r.complexity.input_size[0] for r in rows})
    bars = [(r.label, r.complexity.groups("params"), r.complexity.groups("macs")) for r in rows]
    return plot_parts(bars, path, f"Where parameters and multiply-adds live (input {'/'.join(map(str, sizes))} px)")


def write_outputs(rows: Sequence[ModelComplexity], out_dir: str | Path, stem: str = "complexity") -> list[Path]:
    """JSON (with per-layer detail), CSV (flat), Markdown table and the PNG figure."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{stem}.json", out / f"{stem}.csv", out / f"{stem}.md", out / f"{stem}.png"]
    paths[0].write_text(json.dumps([{"label": r.label, "knobs": r.knobs, **r.complexity.to_dict(),
                                     **({"timing": asdict(r.timing)} if r.timing else {})} for r in rows], indent=1))
    write_csv(paths[1], [r.flat() for r in rows])
    paths[2].write_text(complexity_markdown(rows))
    parts_figure(rows, paths[3])
    if all(r.timing is not None for r in rows):
        paths.append(plot_layer_profile(rows, out / f"{stem}_layers.png"))
        paths.append(plot_roofline(rows, out / f"{stem}_roofline.png"))
    return paths

