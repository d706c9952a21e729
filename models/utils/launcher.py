"""Several runs per GPU: the `local_gpus` Hydra launcher (`hydra/launcher=local_gpus`).

hydra-submitit-launcher's local executor starts every job of a batch at once, each one seeing the same GPUs. This
launcher keeps `jobs_per_gpu` jobs per GPU running (a rolling pool: a job starts as soon as one ends), pins each job
to the least-busy GPU (CUDA_VISIBLE_DEVICES=<that GPU>), splits the CPU threads between the jobs running at once,
and points every job at one compile cache under the sweep directory, so that the jobs after the first reuse its
compiled graphs instead of compiling the same network again. Each job records `packed_jobs` (how many runs shared
its GPU) so that nobody compares its images/s with a run that had the GPU alone. Without GPUs the same holds for
the CPU: `jobs_per_gpu` jobs run at once.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import shlex
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import LocalLauncher

log = logging.getLogger("hydra.launcher.packed")  # printed like Hydra's own "#k : overrides" lines


def visible_gpus() -> list[str]:
    """GPUs this machine offers, as CUDA_VISIBLE_DEVICES names them (indices or GPU-/MIG- UUIDs), counted without
    starting CUDA here; every GPU torch sees when the variable is unset."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [g.strip() for g in env.split(",") if g.strip() and g.strip() != "-1"]
    try:
        import torch

        return [str(i) for i in range(torch.cuda.device_count())]
    except Exception:
        return []


def per_gpu(jobs: int, gpus: int, jobs_per_gpu: int) -> int:
    """How many runs share one GPU at most: jobs_per_gpu, unless the jobs are fewer than the slots on every GPU."""
    return max(1, min(jobs_per_gpu, math.ceil(jobs / max(1, gpus))))


class PackedLauncher(LocalLauncher):
    """LocalLauncher with `jobs_per_gpu` jobs per GPU at a time, each pinned to one GPU (see the module docstring)."""

    def __init__(self, jobs_per_gpu: int = 1, compile_wait_s: float = 600, **params: Any) -> None:
        super().__init__(**params)
        self.compile_wait_s = float(compile_wait_s)
        if not isinstance(jobs_per_gpu, int) or isinstance(jobs_per_gpu, bool) or jobs_per_gpu < 1:
            from models.errors import ConfigError

            raise ConfigError(f"hydra.launcher.jobs_per_gpu={jobs_per_gpu!r} must be a positive integer")
        self.jobs_per_gpu = jobs_per_gpu  # (the launcher is pickled into every job: no locks stored on it)

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        gpus = visible_gpus() if self.params.get("gpus_per_node") != 0 else []
        slots = max(1, len(gpus)) * self.jobs_per_gpu
        busy, assigned = dict.fromkeys(gpus, 0), dict.fromkeys(gpus, 0)
        env = self._job_env(min(slots, len(job_overrides)), per_gpu(len(job_overrides), len(gpus), self.jobs_per_gpu))
        lock = threading.Lock()

        def one(index: int) -> JobReturn:
            with lock:  # the least-busy GPU for this job (ties: the one given fewer jobs so far)
                gpu = min(busy, key=lambda g: (busy[g], assigned[g])) if busy else None
                if gpu is not None:
                    busy[gpu] += 1
                    assigned[gpu] += 1
            try:
                done = self._single(job_overrides[index], initial_job_idx + index, gpu, env)
                record = done._return_value if isinstance(done._return_value, dict) else {}
                log.info(f"#{initial_job_idx + index} {record.get('status', done.status.name.lower())}"
                         + (f" on GPU {gpu}" if gpu is not None else "") + f": {' '.join(job_overrides[index])}")
                return done
            finally:
                if gpu is not None:
                    with lock:
                        busy[gpu] -= 1

        with ThreadPoolExecutor(max_workers=slots) as pool:
            first = pool.submit(one, 0)
            if self._compiles(gpus) and len(job_overrides) > 1:
                self._wait_for_compile_cache(first)  # then the others reuse job 0's compiled graphs
            rest = [pool.submit(one, i) for i in range(1, len(job_overrides))]
            return [first.result(), *(f.result() for f in rest)]

    def _compiles(self, gpus: list[str]) -> bool:
        assert self.config is not None
        return bool(gpus) and str(self.config.get("compile", False)).lower() not in ("false", "none", "null")

    def _cache_dir(self) -> Path:
        """The sweep's shared Inductor cache (TORCHINDUCTOR_CACHE_DIR of every job)."""
        assert self.config is not None
        return Path(str(self.config.hydra.sweep.dir)).resolve() / ".compile_cache"

    def _wait_for_compile_cache(self, first: Any) -> None:
        """Until the first job has put compiled graphs in the shared cache (or ended, or compile_wait_s passed): a
        first wave compiling the same network K times at once would share nothing."""
        cache = self._cache_dir()
        deadline = time.monotonic() + self.compile_wait_s
        while not first.done() and time.monotonic() < deadline:
            if cache.is_dir() and any(p.is_file() for p in cache.rglob("*")):
                log.info(f"job #0 has compiled into {cache}: starting the others")
                return
            time.sleep(1)

    def _job_env(self, running: int, packed: int) -> dict[str, str]:
        """Environment of every job: its share of the CPU threads (torch's and Inductor's compile workers), the
        shared compile cache, how many runs share its GPU."""
        from models.utils.system import PACKED_ENV, cpu_count

        cache = self._cache_dir()
        threads = str(max(1, cpu_count() // max(1, running)))
        return {"OMP_NUM_THREADS": threads, "TORCHINDUCTOR_COMPILE_THREADS": threads,
                "TORCHINDUCTOR_CACHE_DIR": str(cache), "TORCHINDUCTOR_FX_GRAPH_CACHE": "1", PACKED_ENV: str(packed)}

    def _single(self, overrides: Sequence[str], index: int, gpu: str | None, env: dict[str, str]) -> JobReturn:
        """One job through the local executor, alone in its submission, with its GPU and environment. The GPU is
        pinned by exporting CUDA_VISIBLE_DEVICES in the job's setup lines (run after submitit set its own): the
        local executor takes no other parameter than `setup`."""
        job = copy.copy(self)
        job.params = dict(self.params)
        job.params["gpus_per_node"] = 1 if gpu is not None else 0
        pinned = {**env, "CUDA_VISIBLE_DEVICES": gpu} if gpu is not None else env
        exports = [f"export {k}={shlex.quote(v)}" for k, v in pinned.items()]
        job.params["setup"] = [*(self.params.get("setup") or []), *exports]
        return LocalLauncher.launch(job, [list(overrides)], index)[0]
