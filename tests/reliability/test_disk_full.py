"""A full disk, for real: the run directory on a small tmpfs (root can mount one; elsewhere these tests skip), filled
while the run trains. The run stops with one line naming the file it could not write, the space left and the fix;
it is not marked finished (nor failed); its last checkpoint, record and CSV history stay readable; once there is
space the same command resumes and finishes like an uninterrupted run."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers.kills import ARGS
from helpers.runs import REPO, csv_history, record_differences, script_env
from models.train.checkpoints import load_checkpoint
from models.train.records import atomic_write_json, read_results, write_failure

LONG = [*ARGS, "trainer.max_epochs=12"]  # 60 steps, a checkpoint every 2


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(mount)], capture_output=True,
                          text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def _fill(disk: Path) -> Path:
    """Take every free byte of `disk` (unbuffered writes: nothing is left to flush on close)."""
    ballast = disk / "ballast"
    fd = os.open(ballast, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        for chunk in (1 << 20, 4096, 1):
            try:
                while True:
                    os.write(fd, b"\0" * chunk)
            except OSError:
                pass
    finally:
        os.close(fd)
    return ballast


def _train(run_dir: Path, tmp: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(REPO / "scripts" / "train.py"), *LONG, f"hydra.run.dir={run_dir}"],
                            cwd=tmp, env=script_env(tmp), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_a_disk_filled_mid_run_stops_it_in_one_line_and_the_same_command_resumes(small_disk: Path,
                                                                                   tmp_path: Path) -> None:
    run_dir, last = small_disk / "run", small_disk / "run" / "checkpoints" / "last.ckpt"
    proc = _train(run_dir, tmp_path)
    deadline = time.time() + 120
    while not last.is_file() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    ballast = _fill(small_disk)
    out, err = proc.communicate(timeout=300)

    lines = err.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, err[-3000:]
    assert lines[0].startswith(f"error: cannot write {run_dir}/"), lines[0]
    assert "the disk is full (No space left on device; 0 B free of 48.0 MiB there)" in lines[0]
    assert "re-run the same command: it resumes from its last checkpoint" in lines[0]
    assert "Traceback" not in err + out and "Logging error" not in err

    record = read_results(run_dir)  # still readable, and not claiming the run ended
    assert record is not None and record["status"] == "running"
    step = load_checkpoint(last)["global_step"]  # the last good checkpoint loads
    assert 0 < step < 60
    rows = csv_history(run_dir)  # the history file parses (a torn last row is dropped by the resume)
    assert rows is not None

    ballast.unlink()
    again = subprocess.run([sys.executable, str(REPO / "scripts" / "train.py"), *LONG, f"hydra.run.dir={run_dir}"],
                           cwd=tmp_path, env=script_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and f"resuming from {last}" in again.stdout, again.stderr[-2000:]
    reference = subprocess.run([sys.executable, str(REPO / "scripts" / "train.py"), *LONG,
                                f"hydra.run.dir={tmp_path / 'reference'}"], cwd=tmp_path, env=script_env(tmp_path),
                               capture_output=True, text=True, timeout=300)
    assert reference.returncode == 0
    a, b = read_results(tmp_path / "reference"), read_results(run_dir)
    assert b["status"] == "finished" and record_differences(a, b) == {}
    assert csv_history(run_dir) == csv_history(tmp_path / "reference")


def test_every_write_site_names_its_file_on_a_full_disk(small_disk: Path) -> None:
    from models.train.console import LogFile
    from models.train.loggers import ResumableCSVLogger

    logger = ResumableCSVLogger(str(small_disk / "csv"), keep_rows=None)
    logger.log_metrics({"val/acc": 0.5}, step=1)
    handler = LogFile(small_disk / "train.log")
    _fill(small_disk)

    for write, name in ((lambda: atomic_write_json(small_disk / "results.json", {"big": "x" * 100_000}),
                         "results.json"),
                        (lambda: [logger.log_metrics({"val/acc": 0.5, "pad": "x" * 100_000}, step=2),
                                  logger.save()], "metrics.csv")):
        with pytest.raises(OSError) as caught:
            write()
        line = write_failure(caught.value)
        assert line is not None and line.startswith(f"cannot write {small_disk}") and name in line, line
        assert "the disk is full" in line and "0 B free" in line
    assert not list(small_disk.glob(".results.json.*.tmp"))  # a failed atomic write leaves no temp file
    # train.log: the first failed line stops the file's logging, without logging's traceback on stderr
    record = logging.LogRecord("x", logging.INFO, "", 0, "y" * 100_000, None, None)
    handler.handle(record)
    assert handler.level > logging.CRITICAL
    handler.close()
