"""scripts/benchmark.py: tiny settings, real paths (CLI + CSV on synthetic CIFAR files; the cached image-folder path
in process), and the window arithmetic that turns step timestamps into images/s."""

from __future__ import annotations

import csv
import itertools
import json
import math
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.runs import REPO
from models.bench import doc as D
from models.bench import speed as B


def test_window_rates_split_windows_and_skip_epoch_boundaries() -> None:
    # (epoch, batch_idx, end, images, restart): 1 s per step, 10 images each
    ticks = [(0, i, float(i), 10, float(i)) for i in range(9)]
    assert B.window_rates(ticks, warmup=2, steps=3) == [10.0, 10.0]  # steps 3-5 and 6-8
    # a hook ran for 100 s after step 5: its time is not the project's
    ticks = [(e, b, t + (100 if i >= 5 else 0), n, r + (100 if i >= 4 else 0))
             for i, (e, b, t, n, r) in enumerate(ticks)]
    assert B.window_rates(ticks, warmup=2, steps=3) == [10.0, 10.0]
    # a new epoch starts at step 7 (batch_idx resets): that step is dropped from its window
    ticks = [(0 if i < 6 else 1, i if i < 6 else i - 6, float(i) * (50 if i == 6 else 1), 10, float(i))
             for i in range(9)]
    assert B.window_rates(ticks, warmup=2, steps=3)[1] == pytest.approx(10.0)


def test_cli_smoke_table_and_csv(tmp_path: Path) -> None:
    out_csv = tmp_path / "bench.csv"
    cmd = [sys.executable, str(REPO / "scripts" / "benchmark.py"), "--data", "synthetic", "--batch-sizes", "16",
           "--image-size", "16", "--steps", "2", "--repeats", "2", "--warmup", "1", "--eval-batches", "2",
           "--logger", "none", "--workdir", str(tmp_path / "work"), "--csv", str(out_csv),
           "--readme", str(tmp_path / "bench.md"), "--packed", "2", "--packed-seconds", "6",
           "--json", str(tmp_path / "bench.json")]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    header = next(line for line in proc.stdout.splitlines() if line.startswith("| model"))
    assert [c.strip() for c in header.strip("|").split("|")] == B.COLUMNS
    assert "CPU " in proc.stdout and "intra-op threads" in proc.stdout and "load average" in proc.stdout
    with open(out_csv) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1
    row = rows[0]
    assert row["model"] == "resnet20" and row["data"] == "synthetic-cifar" and row["batch"] == "16"
    assert row["img/s graph loop"] == "" and row["ratio to graphs"] == ""  # CUDA graphs: a GPU only
    (case,) = json.loads((tmp_path / "bench.json").read_text())["rows"]
    # MACs from the accounting code, independently of the benchmark: resnet20 at 16 px
    assert int(row["MACs"]) == case["MACs"] == D.profile_macs("resnet20", 16)
    # two timed windows per side, and they INTERLEAVE (project, eager loop, project, eager loop): drift on a shared
    # machine hits both sides alike
    assert len(case["project_windows"]) == len(case["minimal_windows"]) == 2
    spans = sorted([(*s, "project") for s in case["project_spans"]] + [(*s, "minimal") for s in case["minimal_spans"]])
    assert [k for *_, k in spans] == ["project", "minimal", "project", "minimal"], spans
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans))  # never overlapping
    # the reference loop really trains: warm-up step + 2 windows x 2 steps, finite loss
    assert case["minimal_steps"] == 1 + 2 * 2 and math.isfinite(case["minimal_loss"])
    # each rate is the median of its windows, the ratio is theirs, MFU is 3 x FLOPs x rate / peak
    assert case["img/s project"] == pytest.approx(statistics.median(case["project_windows"]), rel=1e-2)
    assert case["img/s minimal"] == pytest.approx(statistics.median(case["minimal_windows"]), rel=1e-2)
    assert case["ratio"] == pytest.approx(case["img/s project"] / case["img/s minimal"], rel=1e-2)
    assert case["MFU"] == pytest.approx(3 * 2 * case["MACs"] * statistics.median(case["project_windows"])
                                        / case["peak_flops"], rel=1e-2, abs=1e-4)
    # the device-resident pipeline alone delivers batches far faster than a training step consumes them
    assert float(row["pipeline img/s"]) > float(row["img/s project"]) and float(row["infer img/s"]) > 0
    md = (tmp_path / "bench.md").read_text()
    assert "<!-- benchmark:begin -->" in md and "| resnet20 | synthetic-cifar |" in md
    # two copies of the run at once on the same device, against one alone (the packed-grid measurement)
    (packed,) = json.loads((tmp_path / "bench.json").read_text())["packed"]
    assert packed["jobs"] == 2 and len(packed["per_job"]) == 2 and all(r > 0 for r in packed["per_job"])
    assert packed["aggregate"] == pytest.approx(sum(packed["per_job"])) and 0 <= packed["overlap"] <= 1
    # the overlap is that of the runs' MEASURED windows (first to last measured step), not of their lifetimes
    (a0, a1), (b0, b1) = packed["windows"]
    assert packed["overlap"] == pytest.approx(max(0.0, min(a1, b1) - max(a0, b0)) / ((a1 - a0 + b1 - b0) / 2))
    assert packed["overlap"] > 0.3  # both trained for 6 s from their start: their steady windows overlap
    assert "packed: 2 x resnet20 b16:" in proc.stdout and "2 packed resnet20 runs >= 3x" in proc.stdout


def test_folder_cache_path_in_process(tmp_path: Path) -> None:
    """The ImageNet path (ImageFolderDataModule, cache=true) at a small size, through run_case."""
    case = B.Case(model="resnet20", data="folder", batch=8, image_size=32, steps=2, repeats=2, warmup=1,
                  eval_batches=2)
    row = B.run_case(case, tmp_path, cifar_root=None, logger="none", log=lambda *a: None)
    assert row.data_label == "folder+cache" and row.size == 32
    assert row.project > 0 and row.minimal > 0 and row.pipeline > 0 and len(row.project_windows) == 2
    assert list((tmp_path / "cache").glob("*.npy"))  # the memmap cache was built


@pytest.mark.slow
def test_a_compiled_case_end_to_end_against_an_eager_reference(tmp_path: Path) -> None:
    """compile=true (Inductor on this CPU): the case runs to the end, its MACs are counted on a weightless copy (never
    by hooks on the compiled module), and the reference loop it is compared with stays EAGER."""
    case = B.Case(model="resnet20", data="synthetic", batch=8, image_size=16, compile=True, steps=1, repeats=1,
                  warmup=1, eval_batches=2)
    row = B.run_case(case, tmp_path, cifar_root=None, logger="none", log=lambda *a: None)
    assert row.project > 0 and row.minimal > 0 and row.macs == D.profile_macs("resnet20", 16)
    assert row.minimal_compiled is False and row.case.compile is True
