"""The one description of the machine a number was measured on (run records, benchmark tables, figures)."""

from __future__ import annotations

import os
import platform
from typing import Any

import torch

PACKED_ENV = "VVR_PACKED_JOBS"  # set by the local_gpus launcher: how many runs share this run's GPU (packed_jobs)


def cpu_model() -> str:
    """The CPU's marketing name (e.g. 'AMD EPYC 7B13'), else what `platform` knows."""
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def cpu_count() -> int:
    """CPUs this process may use (affinity / cgroup pinning where the OS exposes it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def threads_from_scheduler() -> int | None:
    """Under SLURM, the CPUs the job was given (SLURM_CPUS_PER_TASK) become torch's thread count unless
    OMP_NUM_THREADS says otherwise: without CPU binding (TaskPlugin=task/none) torch would otherwise start one
    thread per core of the node and tasks sharing it would oversubscribe every core. OMP_NUM_THREADS is exported too:
    Lightning's DDP otherwise sets cores // (its processes on the node) threads, e.g. 2 instead of 1 for one task per
    node on a 2-core node (a DDP run across nodes then also computed differently from the same run on one node)."""
    given = os.environ.get("SLURM_CPUS_PER_TASK")
    if not given or not given.isdigit() or os.environ.get("OMP_NUM_THREADS"):
        return None
    os.environ["OMP_NUM_THREADS"] = given
    torch.set_num_threads(int(given))
    return int(given)


# Dense peak FLOP/s (no sparsity) of the GPUs this project is run on, by precision, from NVIDIA's data sheets:
# the MFU denominator where Lightning's table does not know the card's name (it misses "NVIDIA H200").
GPU_PEAKS: tuple[tuple[str, dict[str, float]], ...] = (
    ("H200", {"bf16": 989.4e12, "fp16": 989.4e12, "tf32": 494.7e12, "fp32": 66.9e12}),  # H200 SXM
    ("H100 PCIe", {"bf16": 756.0e12, "fp16": 756.0e12, "tf32": 378.0e12, "fp32": 51.2e12}),
    ("H100", {"bf16": 989.4e12, "fp16": 989.4e12, "tf32": 494.7e12, "fp32": 66.9e12}),  # H100 SXM (HBM3)
    ("A100", {"bf16": 312.0e12, "fp16": 312.0e12, "tf32": 156.0e12, "fp32": 19.5e12}),
    ("L40S", {"bf16": 362.05e12, "fp16": 362.05e12, "tf32": 183.0e12, "fp32": 91.6e12}),
)


def gpu_peak(name: str, precision: str) -> float | None:
    """Dense peak FLOP/s of the GPU called `name` (torch.cuda.get_device_name) at `precision` (bf16*, 16*, 32*)."""
    kind = "bf16" if "bf16" in precision else "fp16" if "16" in precision else "fp32"
    return next((peaks[kind] for key, peaks in GPU_PEAKS if key in name), None)


def device_name(device: torch.device | str) -> str:
    device = torch.device(device)
    return torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_model()


def load_average() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


def machine(device: torch.device | str | None = None, num_devices: int = 1) -> dict[str, Any]:
    """Flat `hardware/*` and `software/*` keys: what every results.json and benchmark row records. `device` None:
    the first GPU when there is one, else the CPU."""
    import lightning

    device = torch.device(device if device is not None else "cuda" if torch.cuda.is_available() else "cpu")
    return {
        "hardware/device": device_name(device), "hardware/device_type": device.type,
        "hardware/num_devices": num_devices, "hardware/cpu": cpu_model(), "hardware/cpu_count": cpu_count(),
        "hardware/threads": torch.get_num_threads(), "hardware/load_1min": round(load_average(), 2),
        "hardware/cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "software/torch": torch.__version__, "software/cuda": torch.version.cuda,
        "software/lightning": lightning.__version__, "software/python": platform.python_version(),
    }


def machine_line(info: dict[str, Any] | None = None) -> str:
    """One readable line of `machine()`: what a table or figure is labelled with."""
    m = info or machine()
    gpu = f", GPU {m['hardware/device']}" if m["hardware/device_type"] == "cuda" else ""
    return (f"CPU {m['hardware/cpu']}, {m['hardware/cpu_count']} cores{gpu}; torch {m['software/torch']}, "
            f"lightning {m['software/lightning']}, python {m['software/python']}, {m['hardware/threads']} intra-op "
            f"threads; load average {m['hardware/load_1min']}")


# ------------------------------------------------------------------ measured ceilings (a roofline's two lines)
_CEILINGS: dict[tuple, float] = {}  # (what, device, dtype, threads) -> measured value, once per process


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _best_seconds(fn: Any, device: torch.device, repeats: int) -> float:
    import time

    fn()  # warm-up (thread pool, allocator, cuBLAS heuristics)
    _sync(device)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return best


def matmul_peak(device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32, n: int | None = None,
                repeats: int = 8) -> float:
    """Measured compute ceiling: the best FLOP/s of an n x n matrix product (2 n^3 FLOPs) on `device` in `dtype`
    (n: 1024 on a CPU, 8192 on a GPU). Cached per device, dtype and thread count."""
    device = torch.device(device)
    key = ("mm", str(device), dtype, torch.get_num_threads())
    if key not in _CEILINGS:
        n = n or (8192 if device.type == "cuda" else 1024)
        a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
        _CEILINGS[key] = 2 * n**3 / _best_seconds(lambda: torch.mm(a, b), device, repeats)
    return _CEILINGS[key]


def copy_bandwidth(device: torch.device | str = "cpu", megabytes: int | None = None, repeats: int = 8) -> float:
    """Measured memory ceiling: the best bytes/s of a large tensor copy (each byte read once and written once).
    Size: 256 MB on a CPU, 2 GB on a GPU (well past the caches)."""
    device = torch.device(device)
    key = ("copy", str(device), None, torch.get_num_threads())
    if key not in _CEILINGS:
        n = (megabytes or (2048 if device.type == "cuda" else 256)) * 2**20 // 4
        src, dst = torch.randn(n, device=device), torch.empty(n, device=device)
        _CEILINGS[key] = 2 * 4 * n / _best_seconds(lambda: dst.copy_(src), device, repeats)
    return _CEILINGS[key]
