"""One writer per run directory (models/utils/locks.py), with real processes: a second invocation on a running
run's directory is refused in one line and changes nothing, the first one finishes; a holder killed with SIGKILL
leaves nothing that blocks the next run; a requeued SLURM task waits for the one it replaces; processes that
build one image cache together decode it once."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from helpers.kills import ARGS
from helpers.runs import REPO, script_env
from models.train.records import read_results
from models.utils.locks import HOLDER, Busy, DirLock

LONG = [*ARGS, "trainer.max_epochs=20"]  # 100 steps: long enough to start a second process beside it


def _start(run_dir: Path, tmp: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(REPO / "scripts" / "train.py"), *LONG, f"hydra.run.dir={run_dir}"],
                            cwd=tmp, env=script_env(tmp), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_training(run_dir: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if (run_dir / "checkpoints" / "last.ckpt").is_file():
            return
        time.sleep(0.1)
    raise AssertionError(f"the first run never wrote a checkpoint: {proc.communicate()[1][-2000:]}")


@pytest.mark.slow
def test_a_second_invocation_is_refused_and_the_first_finishes(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    first = _start(run_dir, tmp_path)
    _wait_for_training(run_dir, first)
    holder = json.loads((run_dir / HOLDER).read_text())
    assert holder["pid"] == first.pid and holder["host"] and holder["since"] <= time.time()
    log_before = (run_dir / "train.log").read_text()

    second = subprocess.run([sys.executable, str(REPO / "scripts" / "train.py"), *LONG, f"hydra.run.dir={run_dir}"],
                            cwd=tmp_path, env=script_env(tmp_path), capture_output=True, text=True, timeout=120)
    lines = second.stderr.strip().splitlines()
    assert second.returncode == 2 and len(lines) == 1, second.stderr
    assert lines[0].startswith(f"error: {run_dir} is in use by another run (pid {first.pid} on ")
    assert f"kill {first.pid}" in lines[0] and "use another hydra.run.dir" in lines[0]
    assert (run_dir / "train.log").read_text().startswith(log_before)  # the second wrote nothing into it
    assert "is in use" not in (run_dir / "train.log").read_text()

    _, err = first.communicate(timeout=600)
    assert first.returncode == 0, err[-2000:]
    record = read_results(run_dir)
    assert record["status"] == "finished" and record["invocations"] == 1 and record["steps"] == 100
    assert not (run_dir / HOLDER).exists()  # let go at the end


@pytest.mark.slow
def test_a_holder_killed_with_sigkill_does_not_block_the_next_run(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    first = _start(run_dir, tmp_path)
    _wait_for_training(run_dir, first)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=60)
    assert (run_dir / HOLDER).exists()  # the dead holder's note stays; its lock died with it
    again = subprocess.run([sys.executable, str(REPO / "scripts" / "train.py"), *LONG, f"hydra.run.dir={run_dir}"],
                           cwd=tmp_path, env=script_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "resuming from" in again.stdout, again.stderr[-2000:]
    assert read_results(run_dir)["status"] == "finished"


def test_a_requeued_slurm_task_waits_for_the_one_it_replaces(tmp_path: Path, monkeypatch) -> None:
    ctx = multiprocessing.get_context("spawn")
    held, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold, args=(tmp_path, held, release, "77"))
    holder.start()
    assert held.wait(60)
    monkeypatch.setenv("SLURM_JOB_ID", "78")  # another job: refused at once, naming the holder's job
    with pytest.raises(Busy, match=rf"is in use by another run \(pid {holder.pid} on .*, SLURM job 77\)"), \
            DirLock(tmp_path, "this run directory"):
        pass
    monkeypatch.setenv("SLURM_JOB_ID", "77")  # the same job, requeued: waits until its old incarnation lets go
    threading.Timer(1.0, release.set).start()
    t0 = time.time()
    with DirLock(tmp_path, "this run directory") as lock:
        assert lock.held and time.time() - t0 >= 0.9
        assert json.loads((tmp_path / HOLDER).read_text())["pid"] == os.getpid()
    holder.join(30)


def _hold(folder: Path, held, release, job: str) -> None:
    os.environ["SLURM_JOB_ID"] = job
    with DirLock(folder, "this run directory"):
        held.set()
        release.wait(60)


def _cache(folder: str, cache_dir: str, out: str) -> None:
    import numpy as np

    from data.cache import load_or_build
    from data.images import base_image

    files = sorted(p for p in Path(folder).rglob("*") if p.suffix in (".jpg", ".png"))
    arr, _, built = load_or_build(files, Path(folder), Path(cache_dir), 16,
                                  lambda p: base_image(p, 16).numpy(), threads=1)
    Path(out).write_text(json.dumps({"built": built, "sum": int(np.asarray(arr, dtype=np.int64).sum())}))


def test_two_processes_build_one_image_cache_once(tmp_path: Path) -> None:
    from data.synthetic import write_image_folder

    folder = write_image_folder(tmp_path / "tree", ["a", "b", "c"], {"train": 30}) / "train"
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_cache, args=(str(folder), str(tmp_path / "cache"), str(tmp_path / f"out{i}")))
             for i in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    outs = [json.loads((tmp_path / f"out{i}").read_text()) for i in range(2)]
    assert sorted(o["built"] for o in outs) == [False, True]  # one decoded, the other waited and reused it
    assert outs[0]["sum"] == outs[1]["sum"]
    assert len(list((tmp_path / "cache").glob("images-*.npy"))) == 1
