"""The fast-path switches train like the plain path, and every run measures itself.

Each switch (device-resident data, channels_last, bf16-mixed, torch.compile) runs a few real steps of resnet20 on
the built-in digits through `models.train.run.train` (the same code as scripts/train.py) and must give the same
per-step training loss as the plain run (same seed; `trainer.overfit_batches` fixes the batch order so the
DataLoader and the DeviceLoader feed identical batches). The plain run's results.json must carry sane throughput /
MFU / data-wait / memory fields.

The cache-rebuild requirement is covered in tests/test_data_folder.py::test_cache_built_reused_and_rebuilt (built,
reused, rebuilt after a source image changes, stale file replaced) and ::test_cache_ignores_interrupted_build.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import torch

import models
from helpers.probes import LayoutProbe, StepTimes
from helpers.runs import compose_train
from models.complexity import profile
from models.train.run import train

STEPS = 6
BASE = [
    "model=resnet20", "data=digits", "data.image_size=16", "data.batch_size=32", "trainer.max_epochs=2",
    "trainer.overfit_batches=3", "trainer.limit_test_batches=2", "trainer.enable_progress_bar=false",
    "trainer.log_every_n_steps=1", "measure.warmup_steps=1", "summary=false", "logger=csv",
    "checkpoint.every_n_steps=0", "optim.lr=0.05", "sched.name=constant", "seed=3",
]


def run(tmp_path: Path, name: str, *extra: str, callbacks: tuple = ()) -> tuple[dict, list[float]]:
    run_dir = tmp_path / name
    overrides = [*BASE, *extra, f"run_dir={run_dir}"]
    record = train(compose_train(overrides), overrides=overrides, callbacks=callbacks)
    assert record["status"] == "finished", record.get("error")
    with open(run_dir / "csv" / "metrics.csv") as f:
        losses = [float(r["train/loss_step"]) for r in csv.DictReader(f) if r.get("train/loss_step")]
    assert len(losses) == STEPS, losses
    return record, losses


CLOCK = StepTimes()


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, list[float]]:
    """The reference: torchvision DataLoader path, fp32, contiguous NCHW, eager (with an independent step clock)."""
    return run(tmp_path_factory.mktemp("plain"), "plain", "data.device_resident=false", "data.num_workers=0",
               callbacks=(CLOCK,))


def assert_close(got: list[float], want: list[float], rtol: float, atol: float) -> None:
    """Per-step losses within atol + rtol x |want|. Float differences of ~1e-7 in the inputs (a fused multiply-add
    instead of divide-then-subtract) or kernels grow through SGD steps: fp32 switches agree to ~1e-3 after 6 steps."""
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want)):
        assert math.isfinite(g) and abs(g - w) <= atol + rtol * abs(w), f"step {i}: {g} vs {w} ({got} vs {want})"
    assert got[-1] < got[0] * 1.5  # and it still trains


def test_plain_run_learns_and_measures_itself(plain: tuple[dict, list[float]]) -> None:
    r, losses = plain
    assert r["data/loader"] == "DataLoader" and r["data/device_resident"] is False
    assert min(losses[3:]) < losses[0]
    assert r["train/images_per_s"] > 0 and r["eval/images_per_s"] > 0
    assert 0 < r["mfu"] <= 1 and 0 <= r["train/data_wait_frac"] <= 1
    assert r["peak_memory_mb"] > 0 and r["epoch_time_s"] > 0 and r["peak_flops"] > 0
    assert r["measured_train_steps"] == STEPS - 1
    # MFU is what it claims, each factor established independently of the run's own bookkeeping: the forward FLOPs of
    # a freshly built resnet20 at 16 px (accounting code), the training images/s by this test's own clock over the
    # same steps (RunMeter's windows: after warm-up, never across an epoch start), the measured CPU matmul ceiling.
    flops = 2 * profile(models.build("resnet20", num_classes=10), 16).macs
    assert r["flops"] == flops
    assert r["train/images_per_s"] == pytest.approx(CLOCK.rate(warmup=1), rel=0.05)
    assert r["peak_flops_source"].startswith("measured:cpu_mm_fp32")
    assert r["mfu"] == pytest.approx(3 * flops * CLOCK.rate(warmup=1) / r["peak_flops"], rel=0.05)


def test_device_resident_data(tmp_path: Path, plain: tuple[dict, list[float]]) -> None:
    r, losses = run(tmp_path, "device", "data.device_resident=true")
    assert r["data/loader"] == "DeviceLoader" and r["data/device_resident"] is True
    assert abs(losses[0] - plain[1][0]) < 1e-4  # same batch, same weights: the same first loss
    assert_close(losses, plain[1], rtol=1e-2, atol=1e-3)
    assert 0 <= r["train/data_wait_frac"] <= 1 and 0 < r["mfu"] <= 1


def test_channels_last(tmp_path: Path, plain: tuple[dict, list[float]]) -> None:
    probe = LayoutProbe()
    r, losses = run(tmp_path, "cl", "data.device_resident=true", "channels_last=true", callbacks=(probe,))
    # what the first conv really received and holds (not the flag echoed back)
    assert probe.seen["input_channels_last"] and probe.seen["weight_channels_last"], probe.seen
    assert r["channels_last"] is True
    assert_close(losses, plain[1], rtol=1e-2, atol=1e-3)


def test_bf16_mixed(tmp_path: Path, plain: tuple[dict, list[float]]) -> None:
    probe = LayoutProbe()
    r, losses = run(tmp_path, "bf16", "data.device_resident=true", "trainer.precision=bf16-mixed", callbacks=(probe,))
    # the convs ran under bf16 autocast: bf16 outputs from fp32 weights
    assert probe.seen["autocast"] and probe.seen["autocast_dtype"] == torch.bfloat16, probe.seen
    assert probe.seen["output_dtype"] == torch.bfloat16 and not probe.seen["input_channels_last"]
    assert r["precision"] == "bf16-mixed"
    assert_close(losses, plain[1], rtol=0.05, atol=0.05)  # bf16 keeps ~3 significant digits


@pytest.mark.slow
def test_compile(tmp_path: Path, plain: tuple[dict, list[float]]) -> None:
    """torch.compile on CPU (inductor -> C++): ~30-60 s of compilation on a 2-core box."""
    r, losses = run(tmp_path, "compile", "data.device_resident=true", "compile=true")
    assert r["compile"] == "default" and r["compile/graphs"] >= 1  # the compiler's own counts, recorded
    assert_close(losses, plain[1], rtol=1e-2, atol=1e-3)


def test_trainer_gpu_holds_the_fast_defaults() -> None:
    """What a GPU box gets from `trainer=gpu` alone (composed here; no GPU needed)."""
    cfg = compose_train(["trainer=gpu", "data=cifar10"])
    assert cfg.trainer.accelerator == "gpu" and cfg.trainer.precision == "bf16-mixed" and cfg.trainer.benchmark
    assert cfg.channels_last is None  # null = on for CUDA (models/training.py), off on CPU
    assert cfg.data.device_resident == "auto" and cfg.data.num_workers == "auto"
    folder = compose_train(["trainer=gpu", "data=imagefolder", "data.root=/nonexistent"])
    assert folder.data.num_workers == "auto"  # min(8, CPUs) workers; pin_memory follows the CUDA device
