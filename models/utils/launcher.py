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
import os
import shlex
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import LocalLauncher

log = logging.getLogger("hydra.launcher.packed")  # printed like Hydra's own "#k : overrides" lines


def visible_gpus() -> list[int]:
    """GPUs this machine offers (CUDA_VISIBLE_DEVICES respected), counted without starting CUDA here."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [int(g) for g in env.split(",") if g.strip().isdigit()]
    try:
        import torch

        return list(range(torch.cuda.device_count()))
    except Exception:
        return []


class PackedLauncher(LocalLauncher):
    """LocalLauncher with `jobs_per_gpu` jobs per GPU at a time, each pinned to one GPU (see the module docstring)."""

    def __init__(self, jobs_per_gpu: int = 1, **params: Any) -> None:
        super().__init__(**params)
        if not isinstance(jobs_per_gpu, int) or isinstance(jobs_per_gpu, bool) or jobs_per_gpu < 1:
            from models.errors import ConfigError

            raise ConfigError(f"hydra.launcher.jobs_per_gpu={jobs_per_gpu!r} must be a positive integer")
        self.jobs_per_gpu = jobs_per_gpu  # (the launcher is pickled into every job: no locks stored on it)

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        gpus = visible_gpus() if self.params.get("gpus_per_node") != 0 else []
        slots = max(1, len(gpus)) * self.jobs_per_gpu
        busy = dict.fromkeys(gpus, 0)
        env = self._job_env(min(slots, len(job_overrides)), len(job_overrides))
        lock = threading.Lock()

        def one(index: int) -> JobReturn:
            with lock:  # the least-busy GPU for this job
                gpu = min(busy, key=busy.get) if busy else None
                if gpu is not None:
                    busy[gpu] += 1
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
            return list(pool.map(one, range(len(job_overrides))))

    def _job_env(self, running: int, jobs: int) -> dict[str, str]:
        """Environment of every job: its share of the CPU threads, the shared compile cache, the packing."""
        from models.utils.system import PACKED_ENV, cpu_count

        assert self.config is not None
        cache = Path(str(self.config.hydra.sweep.dir)).resolve() / ".compile_cache"
        return {"OMP_NUM_THREADS": str(max(1, cpu_count() // max(1, running))), "TORCHINDUCTOR_CACHE_DIR": str(cache),
                "TORCHINDUCTOR_FX_GRAPH_CACHE": "1", PACKED_ENV: str(min(self.jobs_per_gpu, jobs))}

    def _single(self, overrides: Sequence[str], index: int, gpu: int | None, env: dict[str, str]) -> JobReturn:
        """One job through the local executor, alone in its submission, with its GPU and environment."""
        job = copy.copy(self)
        job.params = dict(self.params)
        job.params["gpus_per_node"] = 1 if gpu is not None else 0
        if gpu is not None:
            job.params["visible_gpus"] = [gpu]
        exports = [f"export {k}={shlex.quote(v)}" for k, v in env.items()]
        job.params["setup"] = [*(self.params.get("setup") or []), *exports]
        return LocalLauncher.launch(job, [list(overrides)], index)[0]
