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
from models.complexity import GROUPS, Complexity, group_totals, profile
from models.memory import GIB, Memory, profile_memory
from models.presets import build, get_preset, get_spec
from models.timing import ModelTiming, measure
from models.utils.system import device_name
from models.utils.tables import markdown, pct, write_csv


@dataclass
class ModelComplexity:
    """One compared model: its label, its knobs, its exact complexity and (when measured) its timing."""

    label: str
    knobs: dict[str, Any]
    complexity: Complexity
    memory: Memory
    timing: ModelTiming | None = None

    def flat(self) -> dict[str, Any]:
        out: dict[str, Any] = {"label": self.label, **{f"model/{k}": v for k, v in self.knobs.items()}}
        out.update(self.complexity.summary())
        for key in ("params", "macs"):
            for g, value in self.complexity.groups(key).items():
                out[f"{key}/{g}"] = value
                out[f"{key}_share/{g}"] = self.complexity.share(key, g)
        for g in GROUPS:
            out[f"macs_per_param/{g}"] = self.complexity.group_reuse(g)
            out[f"flops_per_byte/{g}"] = self.complexity.group_intensity(g)
        out.update(self.memory.summary(1))
        out.update({f"memory/saved_b1/{g}": v for g, v in self.memory.groups(1).items()})
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
        rows.append(ModelComplexity(entry_label(entry), spec.knobs(), profile(model, size),
                                    profile_memory(model, size)))
    return rows


def measure_rows(rows: Sequence[ModelComplexity], batch_size: int, device: str, precision: str,
                 channels_last: bool = False, repeats: int = 5, warmup: int = 1, log: Any = None) -> None:
    """Attach measured time (per part and per layer) to each row: the same network, built with weights this time.
    A row whose times contradict themselves (spread, fwd > fwd+bwd, parts vs whole) is said so in one line."""
    for row in rows:
        if log:
            log(f"timing {row.label} (batch {batch_size}, {device}, {precision}) ...")
        spec = get_spec({k: v for k, v in row.knobs.items() if k not in ("depth", "width")})
        row.timing = measure(build(spec), row.complexity.input_size[0], batch_size, device, precision, channels_last,
                             repeats, warmup)
        if log and not row.timing.reliable:
            log(f"warning: {row.label}: the measured times are unreliable ({'; '.join(row.timing.problems)}): "
                "its time shares are marked in the table; rerun on a quieter machine or with more repeats")


def parts_figure(rows: Sequence[ModelComplexity], path: str | Path) -> Path:
    sizes = sorted({r.complexity.input_size[0] for r in rows})
    bars = [(r.label, r.complexity.groups("params"), r.complexity.groups("macs")) for r in rows]
    return plot_parts(bars, path, f"Where parameters and multiply-adds live (input {'/'.join(map(str, sizes))} px)")


def write_outputs(rows: Sequence[ModelComplexity], out_dir: str | Path, stem: str = "complexity",
                  memory_batch: int = 64, gib: float = 16) -> list[Path]:
    """JSON (with per-layer detail), CSV (flat), Markdown table and the PNG figure."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{stem}.json", out / f"{stem}.csv", out / f"{stem}.md", out / f"{stem}.png"]
    paths[0].write_text(json.dumps([{"label": r.label, "knobs": r.knobs, **r.complexity.to_dict(),
                                     "layer_reuse": {x.name: [x.macs_per_param, x.intensity()] for x in
                                                     r.complexity.layers if x.macs},
                                     "memory": asdict(r.memory),
                                     **({"timing": asdict(r.timing)} if r.timing else {})} for r in rows], indent=1))
    write_csv(paths[1], [r.flat() for r in rows])
    paths[2].write_text(complexity_markdown(rows) + "\n" + costs_markdown(rows, memory_batch, gib))
    parts_figure(rows, paths[3])
    if all(r.timing is not None for r in rows):
        paths.append(plot_layer_profile(rows, out / f"{stem}_layers.png"))
        paths.append(plot_roofline(rows, out / f"{stem}_roofline.png"))
    return paths


# ------------------------------------------------------------------------------------------------- tables
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
            mark = "" if r.timing.reliable else " ‡"
            line += [f"{r.timing.total.fwdbwd_ms / r.timing.batch_size:,.2f}{mark}",
                     " / ".join(pct(r.time_groups()[g]) for g in GROUPS) + mark]
        cells.append(line)
    note = COMPLEXITY_NOTE + (" " + timing_note(rows) if timed else "")
    unreliable = [r for r in rows if r.timing is not None and not r.timing.reliable]
    if timed and unreliable:
        note += " ‡ unreliable timing: " + "; ".join(f"{r.label}: {', '.join(r.timing.problems)}" for r in unreliable)
        note += "."
    return markdown(header, cells, right=range(1, 7) if not timed else (*range(1, 7), 9)) + "\n\n" + note + "\n"


def _ratio(value: float | None, fmt: str = "{:,.1f}") -> str:
    return "–" if value is None else fmt.format(value)


def costs_markdown(rows: Sequence[ModelComplexity], batch: int = 64, gib: float = 16, precision: str = "32"
                   ) -> str:
    """The costs MACs do not show: how often each weight is reused, arithmetic intensity, and training memory
    (saved activations per image and where they live, weights + gradients + momentum, the predicted peak of a
    training step and the largest batch that fits)."""
    header = ["model", "MACs per param: stem / stages / head", "FLOPs per byte: stem / stages / head",
              "activations MiB/image", "activations: stem / stages / head", "weights+grads+momentum MiB",
              f"train step peak GiB (batch {batch})", f"max batch in {gib:g} GiB"]
    cells = []
    for r in rows:
        c, m = r.complexity, r.memory
        saved = m.saved(1)
        shares = m.groups(1)
        cells.append([r.label, " / ".join(_ratio(c.group_reuse(g)) for g in GROUPS),
                      " / ".join(_ratio(c.group_intensity(g), "{:,.2f}") for g in GROUPS),
                      f"{saved / 2**20:,.1f}", " / ".join(pct(shares[g] / saved if saved else 0) for g in GROUPS),
                      f"{m.states(1) / 2**20:,.0f}", f"{m.peak(batch, precision) / GIB:,.2f}",
                      f"{m.largest_batch(gib, precision):,}"])
    note = (f"MACs per param = weight reuse (a conv weight is used at every output pixel, an FC weight once per "
            f"image); FLOPs per byte = 2 x MACs over the bytes each layer must read and write at least once (weights "
            f"+ input + output activations, fp32, batch 1, unfused). Training memory at {precision}-bit precision "
            "(models/memory.py): activations = bytes autograd saves for backward, counted exactly (each storage "
            "once); peak = fp32 weights, gradients and SGD momentum + saved activations + the largest layer's "
            "transient gradients, a prediction (allocator overhead and cuDNN workspaces are not modelled).")
    return markdown(header, cells, right=(3, 5, 6, 7)) + "\n\n" + note + "\n"


def timing_note(rows: Sequence[ModelComplexity]) -> str:
    """Where and how the time columns were measured (every number in them is a measurement of this run)."""
    t = rows[0].timing
    threads = f", {torch.get_num_threads()} threads" if t.device == "cpu" else ""
    rounds = sorted({r.timing.rounds for r in rows})
    span = str(rounds[0]) if len(rounds) == 1 else f"{rounds[0]}-{rounds[-1]}"
    return (f"Time: measured on {device_name(t.device)} ({t.device}{threads}, precision {t.precision}, batch "
            f"{t.batch_size}{', channels_last' if t.channels_last else ''}), forward+backward in train mode, median of "
            f"{span} rounds after warm-up (the "
            "whole network and its parts timed interleaved), per image; the time shares split the sum of the "
            "parts' times (parts timed one by one on the inputs they get in the network).")


LAYER_COLUMNS = ["layer", "kind", "part", "params", "MACs", "MACs per param", "FLOPs per byte", "output",
                 "activations", "saved for backward B/image"]


def layer_rows(row: ModelComplexity) -> list[dict[str, Any]]:
    """Per weighted or pooling layer, and every layer that saves activations (an in-place ReLU keeps the conv output
    the next conv reads): params, MACs, weight reuse, arithmetic intensity (fp32, batch 1), output, and the bytes it
    saves for backward per image (fp32)."""
    saved = {m.name: m.float_per_image + m.other_per_image for m in row.memory.layers}
    return [{"layer": x.name, "kind": x.kind, "part": x.part, "params": x.params, "MACs": x.macs,
             "MACs per param": x.macs_per_param, "FLOPs per byte": x.intensity() if x.macs else None,
             "output": "x".join(map(str, x.output_shape)), "activations": x.activations,
             "saved for backward B/image": saved.get(x.name, 0)}
            for x in row.complexity.layers if x.params or x.macs or x.kind.endswith("Pool2d") or saved.get(x.name)]


def layer_markdown(row: ModelComplexity) -> str:
    def fmt(key: str, value: Any) -> str:
        if isinstance(value, float) or value is None:
            return _ratio(value, "{:,.2f}" if key == "FLOPs per byte" else "{:,.1f}")
        return f"{value:,}" if isinstance(value, int) else str(value)

    cells = [[fmt(k, r[k]) for k in LAYER_COLUMNS] for r in layer_rows(row)]
    table = markdown(LAYER_COLUMNS, cells, right=(3, 4, 5, 6, 8, 9))
    return f"Per-layer breakdown of {row.label}:\n{table}\n"
