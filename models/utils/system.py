"""The one description of the machine a number was measured on (run records, benchmark tables, figures)."""

from __future__ import annotations

import os
import platform
from typing import Any

import torch


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
