"""models.analysis.publish: committed records hold results.json and the CSV history only, and no machine paths."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from models.analysis.publish import export_records, strip_paths
from models.errors import ConfigError


def test_paths_inside_the_run_become_relative_and_others_keep_their_last_component() -> None:
    run = "/home/me/runs/ablation/g/model=resnet20,seed=0"
    record = {"best_checkpoint": f"{run}/checkpoints/best.ckpt", "run_dir": run,
              "data/root": "/data/cifar10/cifar-10-batches-py", "error": "cannot read /d/a/b.jpg (HTML)",
              "overrides": ["model=resnet20", "data.root=/data/cifar10", "x=1/2"],
              "interruptions": [{"checkpoint": f"{run}/checkpoints/last.ckpt", "at_step": 8}], "macs/stage1": 5}
    assert strip_paths(record, run) == {
        "best_checkpoint": "checkpoints/best.ckpt", "run_dir": ".", "data/root": "…/cifar-10-batches-py",
        "overrides": ["model=resnet20", "data.root=…/cifar10", "x=1/2"], "error": "cannot read …/b.jpg (HTML)",
        "interruptions": [{"checkpoint": "checkpoints/last.ckpt", "at_step": 8}], "macs/stage1": 5}


def test_export_copies_records_and_histories_only(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    for name in ("model=a,seed=0", "model=b,seed=0"):
        run = sweep / name
        (run / "csv").mkdir(parents=True)
        (run / "checkpoints").mkdir()
        (run / "checkpoints" / "last.ckpt").write_bytes(b"weights")
        (run / "csv" / "metrics.csv").write_text("step,val/acc\n1,0.5\n")
        (run / "results.json").write_text(json.dumps({"status": "finished", "run_dir": str(run.resolve()),
                                                      "best_checkpoint": str(run.resolve() / "checkpoints/best.ckpt")}))
    dest = export_records(sweep, tmp_path / "out")
    files = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())
    assert files == ["model=a,seed=0/csv/metrics.csv", "model=a,seed=0/results.json",
                     "model=b,seed=0/csv/metrics.csv", "model=b,seed=0/results.json"]
    record = json.loads((dest / "model=a,seed=0" / "results.json").read_text())
    assert record == {"status": "finished", "run_dir": "runs/model=a,seed=0",
                      "best_checkpoint": "checkpoints/best.ckpt"}
    assert str(tmp_path) not in "".join(p.read_text() for p in dest.rglob("*") if p.is_file())
    before = (dest / "model=a,seed=0" / "results.json").read_bytes()
    export_records(sweep, tmp_path / "out")  # repeatable
    assert (dest / "model=a,seed=0" / "results.json").read_bytes() == before


def test_export_of_an_empty_tree_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no runs .* nothing to export"):
        export_records(tmp_path, tmp_path / "out")


def test_committed_records_hold_no_machine_paths() -> None:
    root = Path(__file__).resolve().parents[2] / "docs" / "results"
    for path in root.rglob("*"):
        if path.is_file() and path.suffix in (".json", ".csv", ".md", ".tex"):
            text = path.read_text()
            for marker in ("/work/", "/tmp/", "/home/", "/root/", "/Users/"):
                assert marker not in text, f"{path} holds a machine path ({marker})"


def test_published_records_are_not_ignored_by_git() -> None:
    """A `runs/` ignore rule once kept every exported record out of the commits: the README then said 'Not trained'."""
    import shutil
    import subprocess

    repo = Path(__file__).resolve().parents[2]
    if shutil.which("git") is None or not (repo / ".git").exists():
        pytest.skip("not a git checkout")
    records = [str(p.relative_to(repo)) for p in (repo / "docs" / "results").rglob("results.json")]
    assert records, "docs/results holds no exported records"
    ignored = subprocess.run(["git", "check-ignore", "--no-index", *records], cwd=repo, capture_output=True, text=True)
    assert ignored.stdout.strip() == "", f"git ignores published records; fix .gitignore:\n{ignored.stdout}"
