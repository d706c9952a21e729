"""models/report.py on synthetic results.json files (fast): grouping, mean ± std, flags, CSV, figures, wandb."""

from __future__ import annotations

import csv
import json
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from helpers.runs import REPO
from models.analysis.figures import pareto_front
from models.analysis.report import report, write_report
from models.analysis.runs import from_wandb, group_runs, load_runs, varied_columns
from models.analysis.table import accuracy_cell
from models.errors import ConfigError
from models.presets import get_spec

NAME = "residual_vs_plain_tiny"


def record(model: str, seed: int, acc: float | None, status: str = "finished", **extra) -> dict:
    """A results.json as models/training.py writes it (the keys the report reads, plus a few it must ignore)."""
    knobs = get_spec(model, num_classes=10).knobs()
    depth = knobs["depth"]
    rec = {"status": status, "experiment": "default", "ablation": NAME, "seed": seed,
           "overrides": [f"model={model}", f"seed={seed}", f"+ablation={NAME}", "logger=csv"],
           "model": model, **{f"model/{k}": list(v) if isinstance(v, tuple) else v for k, v in knobs.items()},
           "data": "digits", "data/image_size": 8,
           "data/root": f"/somewhere/{seed}", "data/num_workers": seed,  # noise: must not split configurations
           "params": 1000 * depth, "macs": 100_000 * depth, "flops": 200_000 * depth, "params/stem": 10,
           "macs/stem": 1000, "params/stage1": 1000 * depth - 20, "macs/stage1": 100_000 * depth - 2000,
           "params/head": 10, "macs/head": 1000, "params_share/head": 10 / (1000 * depth),
           "macs_share/head": 1000 / (100_000 * depth), "time_share/head": 0.02,
           "train/images_per_s": 100.0 + seed, "hardware/device": "Test CPU", "hardware/device_type": "cpu",
           "epochs": 3, "precision": "32-true"}
    if acc is not None:
        rec["test/acc"] = acc
    rec.update(extra)
    return rec


def write_runs(root: Path, records: list[dict]) -> Path:
    for rec in records:
        run = root / ",".join(o.lstrip("+") for o in rec["overrides"][:2])
        run.mkdir(parents=True)
        (run / "results.json").write_text(json.dumps({**rec, "run_dir": str(run)}))
    return root


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    """plain20: 2 finished seeds (0.80, 0.90); resnet20: 1 finished, 1 diverged; plain32: failed + running;
    resnet32, plain44, resnet44: nothing (missing)."""
    return write_runs(tmp_path / "sweep", [
        record("plain20", 0, 0.80), record("plain20", 1, 0.90),
        record("resnet20", 0, 0.95), record("resnet20", 1, 0.10, status="diverged", diverged_at_step=7),
        record("plain32", 0, None, status="failed", error="boom"), record("plain32", 1, None, status="running"),
    ])


def test_table_rows_mean_std_and_flags(sweep: Path, tmp_path: Path) -> None:
    table, paths = report(str(sweep), out=tmp_path / "out")
    table, _ = table.split("### Paired effects")
    lines = [line for line in table.splitlines() if line.startswith("| ")]
    header, body = lines[0], lines[1:]
    assert [c.strip() for c in header.strip("|").split("|")] == [
        "model", "residual", "depth", "params (K)", "MMACs", "head params", "head MACs", "head time", "train img/s",
        "test top-1", "published", "Δ", "n", "code", "runs"]
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.strip("|").split("|")] for line in body}
    assert list(rows) == ["plain20", "resnet20", "plain32", "resnet32", "plain44", "resnet44"]  # grid order
    assert rows["plain20"][9:15] == ["0.850 ± 0.071", "–", "–", "2", "unknown", "2 finished"]  # std of 0.80, 0.90
    # K params, MMACs, the head's shares of params, MACs and measured time, mean img/s
    assert rows["plain20"][3:9] == ["20.00", "2.00", "0.1%", "0.1%", "2.0%", "100"]
    assert rows["resnet20"][9:15:3] == ["0.950", "1"] and rows["resnet20"][-1] == "**1 finished, 1 diverged**"
    assert rows["resnet20"][10:12] == ["–", "–"]  # He et al.'s number: not for 3 epochs on the digits
    assert "Published He et al. 2016, Table 6 not shown for resnet20: " in table
    assert "data digits (published: cifar10)" in table and "recipe default (published: cifar10_resnet20" in table
    assert rows["plain32"][9] == "–" and rows["plain32"][12] == "0" and rows["plain32"][-1] == "**1 failed, 1 running**"
    for name in ("resnet32", "plain44", "resnet44"):  # grid jobs without results.json: flagged, never dropped
        assert rows[name][-1] == "**2 missing**" and rows[name][12] == "0"
    assert "hardware: Test CPU (cpu)" in table and "epochs: 3" in table and "data: digits at 8x8" in table
    assert "FLOPs = 2 × MACs" in table

    with paths["table.csv"].open() as f:
        csv_rows = {r["label"]: r for r in csv.DictReader(f)}
    assert float(csv_rows["plain20"]["test/acc_mean"]) == pytest.approx(0.85)
    assert float(csv_rows["plain20"]["test/acc_std"]) == pytest.approx(0.0707107, abs=1e-6)
    assert csv_rows["resnet20"]["diverged"] == "1" and csv_rows["plain32"]["failed"] == "1"
    assert csv_rows["resnet44"]["missing"] == "2" and csv_rows["plain20"]["macs"] == "2000000"


def test_figures_apply_and_are_laid_out(tmp_path: Path) -> None:
    """Plain and residual twins at two depths: every figure applies, and each PNG's own layout verdict (matplotlib's
    text bounding boxes, written at save time) says nothing overlaps and nothing leaves the canvas. The error-vs-depth
    figure shows the two families: plain-n and ResNet-n."""
    runs = write_runs(tmp_path / "sweep", [record(m, s, acc + s / 100) for s in (0, 1) for m, acc in (
        ("plain20", 0.9), ("resnet20", 0.92), ("plain32", 0.8), ("resnet32", 0.94))])
    _, paths = report(str(runs), out=tmp_path / "out")
    for name in ("acc_vs_macs.png", "acc_vs_params.png", "parts.png", "error_vs_depth.png"):
        png = Image.open(paths[name])
        assert png.format == "PNG" and png.text["Layout"] == "ok", (name, png.text)


def test_error_vs_depth_needs_plain_and_residual_twins(tmp_path: Path) -> None:
    """vgg11 (plain) against resnet18 (residual) differ in far more than the skips: no He et al. figure for them."""
    runs = write_runs(tmp_path / "sweep", [record(m, s, 0.5 + s / 10) for s in (0, 1)
                                           for m in ("vgg11", "resnet18", "vgg13", "resnet34")])
    _, paths = report(str(runs), out=tmp_path / "out")
    assert "error_vs_depth.png" not in paths and "acc_vs_macs.png" in paths


def test_configuration_grouping_ignores_seed_and_noise_only(tmp_path: Path) -> None:
    runs = load_runs(write_runs(tmp_path, [record("plain20", 0, 0.5), record("plain20", 1, 0.7),
                                           record("plain20", 2, 0.6, **{"optim/lr": 0.01})]))
    rows = group_runs(runs)
    assert sorted(len(r.runs) for r in rows) == [1, 2]  # another lr is another configuration
    assert varied_columns(rows) == ["optim/lr"]


def test_accuracy_cell() -> None:
    assert accuracy_cell(0.85, 0.0707, 2) == "0.850 ± 0.071"
    assert accuracy_cell(0.85, None, 1) == "0.850"
    assert accuracy_cell(None, None, 0) == "–"


def test_pareto_front() -> None:
    # (cost, accuracy): the 2nd point is dominated by the 1st, the 4th by the 3rd.
    assert pareto_front([(1, 0.5), (2, 0.4), (3, 0.9), (4, 0.8), (5, 0.95)]) == [0, 2, 4]


def test_wandb_mapping_matches_results_json_keys() -> None:
    """A dict shaped like wandb's Run.summary._json_dict and Run.config (incl. the raw {"value": ...} form)."""
    summary = {"_step": 40, "_runtime": 12.5, "_wandb": {"runtime": 12}, "test/acc": 0.91, "params": 269722,
               "macs": 40551040, "status": "finished", "train/images_per_s": 80.5,
               "val/acc": {"max": 0.93}}
    config = {"model": "resnet20", "model/residual": True, "model/depth": {"value": 20}, "data": "digits",
              "ablation": NAME, "optim": {"lr": 0.05, "name": "sgd"}, "seed": 1}
    rec = from_wandb(summary, config, state="crashed", name="resnet20-digits-s1")
    assert rec["status"] == "finished"  # our own status wins over wandb's run state
    assert rec["test/acc"] == 0.91 and rec["model/depth"] == 20 and rec["optim/lr"] == 0.05
    assert rec["val/acc/max"] == 0.93 and not any(k.startswith("_") for k in rec)
    assert from_wandb({}, config, state="crashed")["status"] == "failed"
    rows = group_runs([rec, from_wandb({"test/acc": 0.89, "status": "finished"}, {**config, "seed": 2})])
    assert len(rows) == 1 and rows[0].stat("test/acc")[2] == 2


def test_write_report_refuses_nothing(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        write_report([], tmp_path, "nowhere")


def test_cli_errors_are_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "report.py"), str(empty)], capture_output=True,
                          text=True, cwd=tmp_path)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and str(empty) in proc.stderr
    monkeypatch.syspath_prepend(str(REPO / "scripts"))  # as when run as a script: its helpers import
    main = runpy.run_path(str(REPO / "scripts" / "report.py"))["main"]  # the same entry point, in-process
    assert main(["no_such_ablation"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "residual_vs_plain_tiny" in err and "no_such_ablation" in err


def test_noisy_timing_marks_the_time_columns(tmp_path: Path) -> None:
    """A run whose per-part times contradicted themselves (time/reliable: false) gets its time share marked ‡ and
    the caption says why; the others are shown plain."""
    runs = write_runs(tmp_path / "sweep", [
        record("plain20", 0, 0.8, **{"time/reliable": False, "time/problems": "stage1: forward 293 ms > ..."}),
        record("resnet20", 0, 0.9, **{"time/reliable": True})])
    table, _ = report(str(runs), out=tmp_path / "out")
    plain = next(line for line in table.splitlines() if line.startswith("| plain20"))
    resnet = next(line for line in table.splitlines() if line.startswith("| resnet20"))
    assert "2.0% ‡" in plain and "‡" not in resnet
    assert "‡ per-part times unreliable" in table and "plain20" in table.split("‡ per-part times unreliable")[1]


def test_a_broken_record_is_named_on_the_console_and_in_the_footnote_never_counted(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = write_runs(tmp_path / "sweep", [record("plain20", 0, 0.80)])
    broken = root / "model=resnet20,seed=0" / "results.json"
    broken.parent.mkdir()
    broken.write_text('{"status": "finished", "test/acc": 0.9')  # a record cut short (a full disk, a bad copy)
    table, _ = report(str(root), out=tmp_path / "out")
    why = "not valid JSON: Expecting ',' delimiter: line 1 column 39 (char 38)"
    assert capsys.readouterr().err.splitlines() == [f"warning: skipped {broken}: {why}"]
    assert (f"Source: 1 results.json under {root} (1 more could not be read and were skipped: {broken} ({why}))"
            in table)
    assert "resnet20" not in table.split("Source:")[0].split("plain20")[0]  # it is no row of its own
    for content, reason in ((b"\xff\xfe", "not text"), (b"[1, 2]", "holds a JSON list, not a record")):
        broken.write_bytes(content)
        report(str(root), out=tmp_path / "out")
        assert capsys.readouterr().err.strip() == f"warning: skipped {broken}: {reason}"
