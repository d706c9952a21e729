"""scripts/complexity.py measure=true: the seed comparison (all eight networks) with measured time per part and per
layer on this CPU, at a reduced input size so that the suite stays short (in this process, through the script
itself); the table, the costs table, both figures and the timing's own consistency verdicts."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from helpers.cli import run_cli

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_seed_comparison_with_measured_time(tmp_path: Path) -> None:
    proc = run_cli("complexity", ["measure=true", "input_size=128", "batch_size=1", "repeats=3", "warmup=0",
                                  f"out={tmp_path}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    tables = proc.stdout.split("| model |")
    header = "| model |" + tables[1].splitlines()[0]
    assert header.endswith("| fwd+bwd ms/image | time: stem / stages / head |")
    rows = [line for line in tables[1].splitlines()[2:] if line.startswith("| ")]
    assert len(rows) == 8
    for row in rows:
        shares = [float(x) for x in re.findall(r"([\d.]+)%", row.split("|")[-2])]
        assert len(shares) == 3 and abs(sum(shares) - 100) < 0.2 and all(s >= 0 for s in shares)
    assert "Time: measured on" in proc.stdout and re.search(r"\(cpu, \d+ threads, precision 32, batch 1\)", proc.stdout)
    for name in ("complexity_layers.png", "complexity_roofline.png", "complexity.png"):
        data = (tmp_path / name).read_bytes()
        assert data.startswith(PNG) and len(data) > 20_000, name
    timed = json.loads((tmp_path / "complexity.json").read_text())
    vgg16 = next(r for r in timed if r["label"] == "vgg16")
    assert vgg16["timing"]["batch_size"] == 1 and len(vgg16["timing"]["parts"]) == 7  # stem, 5 stages, head
    assert all(p["fwdbwd_ms"] > 0 for p in vgg16["timing"]["parts"])
    # every timing says whether it holds together; a row whose times contradict themselves is marked in the table
    for entry in timed:
        line = next(row for row in rows if row.startswith(f"| {entry['label']} |"))
        assert ("‡" in line) == bool(entry["timing"]["problems"]), (line, entry["timing"]["problems"])
        assert entry["timing"]["rounds"] >= 3
    # weight reuse and intensity per layer: VGG's first conv reuses each weight thousands of times, FC1 once
    reuse = vgg16["layer_reuse"]
    assert reuse["stages.stage1.0.conv"][0] > 1000 and reuse["head.classifier.0"][0] < 1.01
