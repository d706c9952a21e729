"""`make gpu-check`: a new GPU box checked in a few minutes (synthetic CIFAR-format data, bf16, channels_last).

    (a) graphs   a CUDA-graph resnet20 run and the same run eager: per-step loss and final val acc within bf16
                 tolerance (LOSS_TOL, ACC_TOL), no CUDA-graph skip, no recompile after warm-up
    (b) resume   SIGTERM mid-epoch under graphs, then the same command: the interrupted+resumed run ends with the
                 uninterrupted run's final metrics and history (deterministic algorithms, within LOSS_TOL)
    (c) padding  padded evaluation (static shapes for graphs) equals unpadded, on the GPU
    (d) packing  two packed runs through hydra/launcher=local_gpus both finish, pinned, with true records
    (e) host     host time vs GPU time per training step (torch.profiler) of the graphed hand loop
    (f) speed    project img/s against the eager and the CUDA-graph hand loop (goal: >= 0.9 x the graph loop)

One PASS/FAIL line per check and a JSON file; exit 1 on any FAIL; exit 2, one line, on a machine without CUDA.
The same checks are `gpu`-marked tests (tests/integration/test_gpu.py).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from models.bench.case import Case
from models.bench.speed import REPO, run_case, synthetic_cifar
from models.train.records import read_results
from models.utils.hydra import compose

LOSS_TOL, ACC_TOL = 0.05, 0.03  # bf16 keeps ~3 significant digits; small eval sets move by whole images
GPU = ["trainer=gpu", "trainer.precision=bf16-mixed", "channels_last=true", "logger=csv", "summary=false",
       "trainer.log_every_n_steps=1", "trainer.enable_progress_bar=false", "measure.parts=false"]


def _resnet20(workdir: Path, every: int) -> list[str]:
    """A 60-step resnet20 run on synthetic CIFAR-format data, a checkpoint every `every` steps, on the GPU."""
    root = synthetic_cifar(workdir, 4000)
    return ["model=resnet20", "data=cifar10", f"data.root={root}", "data.verify=false", "data.val_size=500",
            "trainer.max_steps=60", "trainer.max_epochs=3", "trainer.limit_val_batches=4",  # 27 steps/epoch
            "trainer.limit_test_batches=4", f"checkpoint.every_n_steps={every}", *GPU]


def _run(workdir: Path, name: str, *extra: str) -> dict[str, Any]:
    from models.train.run import train

    overrides = [*_resnet20(workdir, 20), *extra, f"run_dir={workdir / name}"]
    return train(compose(overrides), overrides=overrides)


def _losses(run_dir: Path) -> list[float]:
    import csv

    with open(run_dir / "csv" / "metrics.csv") as f:
        return [float(r["train/loss_step"]) for r in csv.DictReader(f) if r.get("train/loss_step")]


def check_graphs(workdir: Path) -> tuple[bool, str]:
    graphed = _run(workdir, "graphed", "compile=auto", "trainer.deterministic=true", "trainer.benchmark=false")
    eager = _run(workdir, "eager", "compile=false", "trainer.deterministic=true", "trainer.benchmark=false")
    a, b = _losses(workdir / "graphed"), _losses(workdir / "eager")
    worst = max(abs(x - y) for x, y in zip(a, b)) if a and len(a) == len(b) else float("inf")
    acc = abs(graphed["val/acc"] - eager["val/acc"])
    ok = worst <= LOSS_TOL and acc <= ACC_TOL and graphed.get("compile/cudagraph_skips") == 0 and \
        graphed.get("compile/recompiles") == 0 and graphed.get("compile/used") == "reduce-overhead"
    return ok, (f"max |loss graphed - eager| {worst:.4f} (tol {LOSS_TOL}), |val acc| {acc:.4f} (tol {ACC_TOL}), "
                f"skips {graphed.get('compile/cudagraph_skips')}, recompiles {graphed.get('compile/recompiles')}, "
                f"used {graphed.get('compile/used')}")


def check_resume(workdir: Path) -> tuple[bool, str]:
    args = [*_resnet20(workdir, 10), "compile=auto", "trainer.deterministic=true", "trainer.benchmark=false"]
    script = [sys.executable, str(REPO / "scripts" / "train.py"), *args]
    run_dir = workdir / "resumed"
    proc = subprocess.Popen([*script, f"hydra.run.dir={run_dir}"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    last = run_dir / "checkpoints" / "last.ckpt"
    deadline = time.time() + 240
    while not last.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=120)
    again = subprocess.run([*script, f"hydra.run.dir={run_dir}"], capture_output=True, text=True, timeout=300)
    reference = subprocess.run([*script, f"hydra.run.dir={workdir / 'uninterrupted'}"], capture_output=True,
                               text=True, timeout=300)
    a, b = read_results(run_dir) or {}, read_results(workdir / "uninterrupted") or {}
    la, lb = _losses(run_dir), _losses(workdir / "uninterrupted")
    worst = max(abs(x - y) for x, y in zip(la, lb)) if la and len(la) == len(lb) else float("inf")
    ok = proc.returncode == 143 and again.returncode == 0 and reference.returncode == 0 and \
        a.get("steps") == b.get("steps") == 60 and worst <= LOSS_TOL and \
        abs((a.get("test/acc") or 0) - (b.get("test/acc") or 1)) <= ACC_TOL
    return ok, (f"SIGTERM exit {proc.returncode}, resumed at step {a.get('resumed_at_step')}, steps "
                f"{a.get('steps')}/{b.get('steps')}, history rows {len(la)}/{len(lb)}, max |loss| diff {worst:.4f}, "
                f"test acc {a.get('test/acc')} vs {b.get('test/acc')}")


def check_padding(workdir: Path) -> tuple[bool, str]:
    import lightning.pytorch as pl

    import models
    from data.digits import DigitsDataModule
    from models.train.module import Classifier

    results = []
    for pad in (False, True):
        torch.manual_seed(0)
        module = Classifier(models.build("resnet20", num_classes=10), 10, compile="reduce-overhead" if pad else None,
                            cuda_graphs=pad)
        dm = DigitsDataModule(image_size=16, batch_size=64, device_resident=True, pad_eval=pad)
        trainer = pl.Trainer(accelerator="gpu", devices=1, logger=False, enable_progress_bar=False,
                             enable_model_summary=False, precision="32-true")
        results.append(trainer.test(module, datamodule=dm, verbose=False)[0])
    same = abs(results[0]["test/acc"] - results[1]["test/acc"]) <= 1 / 270 and \
        abs(results[0]["test/loss"] - results[1]["test/loss"]) <= 1e-3
    return same, f"unpadded {results[0]} vs padded {results[1]} (270 images: 4 x 64 + 14)"


def check_packing(workdir: Path) -> tuple[bool, str]:
    root = synthetic_cifar(workdir, 4000)
    sweep = workdir / "packed"
    cmd = [sys.executable, str(REPO / "scripts" / "train.py"), "-m", "+ablation=residual_vs_plain_tiny",
           "model=plain20,resnet20", "seed=0", "hydra/launcher=local_gpus", "hydra.launcher.jobs_per_gpu=2",
           "data=cifar10", f"data.root={root}", "data.verify=false", "data.val_size=500", "trainer=gpu",
           "trainer.max_steps=40", "logger=csv", f"hydra.sweep.dir={sweep}"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=400)
    records = [read_results(d) for d in sweep.iterdir() if (d / "results.json").is_file()] if sweep.is_dir() else []
    ok = done.returncode == 0 and len(records) == 2 and all(
        r["status"] == "finished" and r["packed_jobs"] == 2 and r["hardware/device_type"] == "cuda" for r in records)
    return ok, f"exit {done.returncode}, {[(r.get('status'), r.get('packed_jobs')) for r in records]}"


def check_host_time(workdir: Path) -> tuple[bool, str]:
    from torch.profiler import ProfilerActivity, profile

    from models.bench.minimal import Minimal

    case = Case(model="resnet20", batch=128, precision="bf16-mixed", channels_last=True)
    root = synthetic_cifar(workdir, 4000)
    cfg = compose(["model=resnet20", "data=cifar10", f"data.root={root}", "data.verify=false", "data.val_size=500",
                   "data.device_resident=true", "data.batch_size=128", "trainer=gpu"])
    loop = Minimal(cfg, case, torch.device("cuda"), graphs=True)
    loop.train_steps(5)  # warm-up: compile, record
    steps = 10
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        t0 = time.perf_counter()
        loop.train_steps(steps)
        wall = (time.perf_counter() - t0) / steps
    gpu = sum(e.self_device_time_total for e in prof.key_averages()) / 1e3 / steps  # ms
    host = prof.key_averages().self_cpu_time_total / 1e3 / steps
    return gpu > 0, f"per graphed step: host {host:.2f} ms, GPU {gpu:.2f} ms, wall {1e3 * wall:.2f} ms"


def check_speed(workdir: Path) -> tuple[bool, str]:
    case = Case(model="resnet20", data="synthetic", batch=128, precision="bf16-mixed", channels_last=True,
                compile="auto", steps=20, repeats=3, warmup=15)
    row = run_case(case, workdir, None, logger="csv", log=lambda *a: None)
    ratio = row.project / row.graph if row.graph else 0.0
    return ratio >= 0.9, (f"project {row.project:,.0f} img/s, eager loop {row.minimal:,.0f}, CUDA-graph loop "
                          f"{row.graph or 0:,.0f}: {ratio:.3f} x the graph loop (goal >= 0.9)")


CHECKS: dict[str, Callable[[Path], tuple[bool, str]]] = {
    "graphs": check_graphs, "resume": check_resume, "padding": check_padding, "packing": check_packing,
    "host": check_host_time, "speed": check_speed}


# scripts/gpu_grid.sh: one H200 (2026-12-04), residual_vs_plain_gpu packed four to the GPU: the slowest run
# (resnet56) took 5.5 s per epoch = GRID_EPOCH_WORK / the speed check's resnet20 img/s (19,607), plus ~45 s fixed.
GRID_EPOCH_WORK = 110_000


def measured_speed(path: str | Path) -> float | None:
    """The speed check's project img/s (resnet20) from a gpu-check report; None when it has none."""
    import re

    try:
        detail = json.loads(Path(path).read_text())["checks"]["speed"]["detail"]
        return float(re.search(r"project ([\d,.]+) img/s", detail).group(1).replace(",", ""))  # type: ignore[union-attr]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def grid_epochs(speed: float | None, minutes: float, default: int = 15) -> int:
    """Epochs of residual_vs_plain_gpu that fit `minutes` at `speed` (85% of the time left after a minute of start-up,
    compile and tests), between 5 and 200; `default` without a measured speed."""
    if not speed:
        return default
    return max(5, min(200, int(0.85 * max(60.0, minutes * 60 - 60) * speed / GRID_EPOCH_WORK)))


def main(out: str | None = None, only: list[str] | None = None) -> int:
    if not torch.cuda.is_available():
        print("gpu-check: no CUDA device on this machine (torch.cuda.is_available() is False): run it on a GPU box",
              file=sys.stderr)
        return 2
    import logging

    from models.utils.system import machine, machine_line

    # torch's symbolic-shape reasoning warns once per guard it cannot evaluate while compiling (dozens of lines per
    # compile on torch 2.11, nothing to act on); the checks' verdicts say what matters
    logging.getLogger("torch.utils._sympy").setLevel(logging.ERROR)
    workdir = Path(tempfile.mkdtemp(prefix="gpu_check_"))
    print(machine_line(machine()))
    report: dict[str, Any] = {"machine": machine(), "checks": {}}
    path = Path(out or workdir / "gpu_check.json")
    for name in only or list(CHECKS):  # in the order asked for (a short lease: the check it needs first)
        check = CHECKS[name]
        t0 = time.perf_counter()
        try:
            ok, detail = check(workdir)
        except Exception as e:  # a check that cannot run is a FAIL, with why
            ok, detail = False, f"{type(e).__name__}: {' '.join(str(e).split())[:300]}"
        seconds = time.perf_counter() - t0
        print(f"{'PASS' if ok else 'FAIL'} {name}: {detail} ({seconds:.0f} s)", flush=True)
        report["checks"][name] = {"pass": ok, "detail": detail, "seconds": seconds}
        path.write_text(json.dumps(report, indent=1, default=str))  # after each check: a stopped run keeps them
    print(f"wrote {path}")
    return 0 if all(c["pass"] for c in report["checks"].values()) else 1
