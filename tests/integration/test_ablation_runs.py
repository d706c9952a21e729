"""Tiny ablations end to end through the real scripts/train.py (Hydra multirun, CPU, no mocks): resumable sweeps,
failed/diverged runs recorded while the sweep goes on, and the report over what the runs wrote. The killed sweep is
a real process (killed with its whole session); the other sweeps run the scripts in this process (helpers.cli)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from helpers.cli import Result, run_cli
from helpers.runs import REPO
from models.analysis.report import report

NAME = "residual_vs_plain_tiny"
FAST = ["trainer.max_epochs=1", "trainer.limit_train_batches=3", "trainer.limit_val_batches=1",
        "trainer.limit_test_batches=1"]
PNG = b"\x89PNG\r\n\x1a\n"


def results(sweep: Path) -> dict[str, dict]:
    out = {}
    for path in sweep.glob("*/results.json"):
        try:
            out[path.parent.name] = {"mtime": path.stat().st_mtime_ns, **json.loads(path.read_text())}
        except (OSError, ValueError):  # being replaced right now (atomic rename): read it next time
            pass
    return out


def run(args: list[str], cwd: Path) -> Result:
    """`python <script> *args` from `cwd`, in this process (helpers.cli: the script itself, as __main__)."""
    return run_cli(Path(args[0]).stem, args[1:], cwd)


@pytest.mark.slow
def test_killed_sweep_reruns_only_what_is_missing(tmp_path: Path) -> None:
    """`make demo`'s command, killed after its first finished run; the same command again completes only the rest,
    and a third time trains nothing and prints the identical table."""
    sweep = tmp_path / "sweep"
    grid = ["model=plain20,resnet20", "seed=0"]
    cmd = [str(REPO / "scripts" / "ablate.py"), NAME, f"hydra.sweep.dir={sweep}", *grid, *FAST]
    proc = subprocess.Popen([sys.executable, *cmd], cwd=tmp_path, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 600
        while not any(r["status"] == "finished" for r in results(sweep).values()):
            assert proc.poll() is None and time.monotonic() < deadline, "sweep ended before its first run finished"
            time.sleep(0.1)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    before = results(sweep)
    done_before = {k for k, r in before.items() if r["status"] == "finished"}
    assert len(done_before) == 1

    partial, _ = report(str(sweep), out=tmp_path / "partial", ablation=NAME, overrides=grid + FAST)
    assert "missing" in partial  # not-yet-run jobs of the grid are flagged, not dropped

    second = run(cmd, tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    after = results(sweep)
    assert len(after) == 2 and all(r["status"] == "finished" for r in after.values())
    for key in done_before:  # finished runs were skipped: same file, same content
        assert after[key] == before[key]
    retrained = {k for k in after if k not in before or after[k]["mtime"] != before[k]["mtime"]}
    assert retrained == set(after) - done_before

    table = (sweep / "report" / "table.md").read_text()
    assert table in second.stdout and table.count(" | 1 finished |") == 2 and "missing" not in table
    for figure in ("acc_vs_macs.png", "acc_vs_params.png", "parts.png", "acc_vs_pflops.png"):
        data = (sweep / "report" / figure).read_bytes()
        assert data.startswith(PNG) and len(data) > 5_000, figure

    third = run(cmd, tmp_path)
    assert third.returncode == 0, third.stderr[-3000:]
    assert results(sweep) == after  # nothing trained again
    assert (sweep / "report" / "table.md").read_text() == table


@pytest.mark.slow
def test_failed_and_diverged_runs_are_recorded_and_the_sweep_goes_on(tmp_path: Path) -> None:
    """head_fc_vs_gap_tiny with VGG at 8 px (its five max-pools need >= 32 px: fails) and ResNet-20 at a sane and an
    absurd lr (finishes / diverges): all recorded and reported; the sweep exits non-zero only after every job ran.
    A re-run retries the failed jobs and keeps the finished and diverged ones."""
    sweep = tmp_path / "sweep"
    cmd = [str(REPO / "scripts" / "train.py"), "-m", "+ablation=head_fc_vs_gap_tiny", f"hydra.sweep.dir={sweep}",
           "model=vgg11_cifar,resnet20", "model.head=gap", "data.image_size=8", "optim.lr=0.05,1e12", *FAST]
    first = run(cmd, tmp_path)
    assert first.returncode != 0
    before = results(sweep)
    statuses = {k: r["status"] for k, r in before.items()}
    assert sorted(statuses.values()) == ["diverged", "failed", "failed", "finished"], statuses
    failed = [k for k, s in statuses.items() if s == "failed"]
    assert all(",model=vgg11_cifar," in k and "image_size" in before[k]["error"] for k in failed)

    table, _ = report(str(sweep), out=tmp_path / "out", overrides=cmd[3:])  # the sweep as run: 4 jobs
    assert table.count("**1 failed**") == 2 and "**1 diverged**" in table and "| 1 finished |" in table
    assert "missing" not in table

    again = run(cmd, tmp_path)
    assert again.returncode != 0
    after = results(sweep)
    for key, status in statuses.items():  # finished/diverged are final; failed ones are tried again
        assert (after[key] == before[key]) == (status != "failed") and after[key]["status"] == status


# One cheap job of each other tiny grid through train.py (the demo's ablate.py path is tested above).
SUBSETS = {
    "seed_question_tiny": ["+ablation/variant=vgg16_resnet_stem"],
    "head_fc_vs_gap_224_tiny": ["model=resnet18", "model.head=fc"],
    "factorial_tiny": ["model.residual=false", "model.stem=resnet", "model.head=fc"],
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SUBSETS))
def test_tiny_ablation_runs_end_to_end(name: str, tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    overrides = [*SUBSETS[name], *FAST, "data.batch_size=2"]
    proc = run([str(REPO / "scripts" / "train.py"), "-m", f"+ablation={name}", f"hydra.sweep.dir={sweep}",
                *overrides], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = results(sweep)
    assert len(runs) == 1 and all(r["status"] == "finished" and r["ablation"] == name for r in runs.values())
    table, paths = report(str(sweep), out=tmp_path / "out", overrides=overrides)
    assert table.count("| 1 finished |") == 1 and "missing" not in table and "parts.png" in paths


@pytest.mark.slow
def test_the_tiny_roadmap_trains_and_its_report_draws_the_roadmap(tmp_path: Path) -> None:
    """roadmap_cifar_tiny (generated by scripts/explain.py): every step of the roadmap, two seeds, trained; the report
    draws one bar per step, A first and B last, accuracy with its spread, MACs and params beside it."""
    sweep = tmp_path / "sweep"
    overrides = ["trainer.max_epochs=1", "trainer.limit_train_batches=3", "trainer.limit_val_batches=1",
                 "trainer.limit_test_batches=2"]
    proc = run(["scripts/ablate.py", "roadmap_cifar_tiny", f"hydra.sweep.dir={sweep}", *overrides], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = results(sweep)
    assert len(runs) == 12 and all(r["status"] == "finished" for r in runs.values())
    table = (sweep / "report" / "table.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| roadmap_cifar_tiny_")]
    assert [r.split(" | ")[0][2:] for r in rows] == [
        "roadmap_cifar_tiny_0_narrow_vgg11_cifar", "roadmap_cifar_tiny_1_normalisation",
        "roadmap_cifar_tiny_2_downsampling", "roadmap_cifar_tiny_3_stem", "roadmap_cifar_tiny_4_body_layout",
        "roadmap_cifar_tiny_5_residual"]
    assert all(r.endswith("| 2 finished |") and "| 2 | " in r for r in rows)
    figure = sweep / "report" / "roadmap.png"
    assert figure.read_bytes().startswith(PNG) and Image.open(figure).text["Layout"] == "ok"
    # the last step is ResNet-20 itself: its params and MACs as counted by the accounting code
    last = next(r for r in runs.values() if "roadmap_cifar_tiny_5_residual" in r["run_dir"])
    assert (last["params"], last["macs"]) == (269_722, 40_551_040)
