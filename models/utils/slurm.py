"""The `slurm` Hydra launcher (`hydra/launcher=slurm`): hydra-submitit-launcher's, with failures that read as such.

Upstream, a task whose run raises (a bad config, a corrupt dataset) ends as a COMPLETED SLURM job, because Hydra
catches the error into the task's return value; and one task that dies (killed, out of memory, not requeued after
`max_num_timeout` time-outs) makes the sweep raise submitit's traceback at once while the other tasks still run.
Here a failed run fails its SLURM task (squeue/sacct say FAILED), the sweep prints one line per task as it ends,
waits for every task, and then reports the first failure in one line naming the task, its overrides and the cause.
Time limits and preemption (requeue, resume) are handled by the run itself: models/train/preempt.py. DDP inside a
job is one SLURM task per rank: the launcher refuses, before anything is submitted, a trainer whose ranks do not
match the tasks it asks SLURM for (Lightning would say so only once the job starts, after its wait in the queue).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher
from omegaconf import OmegaConf

from models.errors import ConfigError, TaskFailed

log = logging.getLogger("hydra.launcher.slurm")  # printed like Hydra's own "#k : overrides" lines


def cause(error: Exception) -> str:
    """One line from submitit's errors: the last line of the task's traceback (`pkg.Error: message` -> `message`),
    or, for a task that ended without a result (killed, cancelled, out of memory), submitit's first two lines."""
    from submitit.core.utils import FailedJobError

    text = str(error).strip()
    sep = "\n" + "-" * 22 + "\n"  # FailedJobError: "... trace:\n-----\n<traceback>\n-----\n<where the logs are>"
    if isinstance(error, FailedJobError) and text.count(sep) >= 2:
        lines = [line.strip() for line in text.split(sep)[1].splitlines() if line.strip()]
        head, found, rest = (lines[-1] if lines else "").partition(": ")
        return rest if found and " " not in head else " ".join(lines[-1:])
    return " ".join(text.splitlines()[:2]) or type(error).__name__


def check_ranks(trainer: Any, tasks_per_node: int, nodes: int) -> None:
    """Lightning under SLURM runs one DDP rank per task: trainer.devices must be the tasks per node and
    trainer.num_nodes the nodes (a devices value of auto / -1 / a list is left to Lightning)."""
    devices, num_nodes = trainer.get("devices", 1), trainer.get("num_nodes", 1)
    if isinstance(devices, int) and not isinstance(devices, bool) and devices > 0 and devices != tasks_per_node:
        raise ConfigError(f"trainer.devices={devices} but hydra.launcher.tasks_per_node={tasks_per_node}: under SLURM "
                          f"each DDP rank is one task: set hydra.launcher.tasks_per_node={devices} (and "
                          f"hydra.launcher.gpus_per_node={devices} on GPUs), or trainer.devices={tasks_per_node}")
    if isinstance(num_nodes, int) and num_nodes != nodes:
        raise ConfigError(f"trainer.num_nodes={num_nodes} but hydra.launcher.nodes={nodes}: set "
                          f"hydra.launcher.nodes={num_nodes}, or trainer.num_nodes={nodes}")


def as_completed(jobs: Sequence[Any], poll_s: float = 2) -> Iterator[Any]:
    """submitit's jobs as they end. submitit asks SLURM for their states ever more rarely (after 2, 4, 8, ... s) and
    a job counts as done when every task wrote its result; a DDP job whose rank 0 failed while another rank died
    without a result would be noticed minutes late. So a job with any task's result written is asked about now."""
    pending = list(jobs)
    while pending:
        for job in list(pending):
            tasks = [job.task(k) for k in range(job.num_tasks)]  # (a multi-task job's done() forces no task)
            force = len(tasks) > 1 and any(task.paths.result_pickle.exists() for task in tasks)
            if all(task.done(force_check=force) for task in tasks):
                pending.remove(job)
                yield job
        if pending:
            time.sleep(poll_s)


class SlurmTaskLauncher(SlurmLauncher):
    def __call__(self, *args: Any, **kwargs: Any) -> JobReturn:
        """In the SLURM task: the run; an error fails the task (submitit records it, the task exits non-zero)."""
        done = super().__call__(*args, **kwargs)
        if done.status == JobStatus.FAILED:
            error = done._return_value
            message = str(error) if isinstance(error, ConfigError) else f"{type(error).__name__}: {error}"
            raise TaskFailed(message) from error
        return done

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        """Submit the batch as one job array, then wait for every task (see the module docstring)."""
        import submitit

        assert self.config is not None
        check_ranks(self.config.get("trainer") or {}, int(self.params["tasks_per_node"]), int(self.params["nodes"]))
        params = dict(self.params)
        executor = submitit.AutoExecutor(cluster="slurm", folder=params.pop("submitit_folder"),
                                         slurm_max_num_timeout=params.pop("max_num_timeout"))
        generic = set(OmegaConf.structured(BaseQueueConf).keys())  # names shared by every submitit executor
        executor.update_parameters(**{k if k in generic else f"slurm_{k}": v for k, v in params.items()})
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        indices = range(initial_job_idx, initial_job_idx + len(job_overrides))
        for index, overrides in zip(indices, job_overrides):
            log.info(f"\t#{index} : {' '.join(overrides)}")
        jobs = executor.map_array(self, *zip(*[(list(o), "hydra.sweep.dir", i, f"job_id_for_{i}", Singleton.get_state())
                                               for i, o in zip(indices, job_overrides)]))
        log.info(f"submitted as SLURM job {jobs[0].job_id.split('_')[0]} ({len(jobs)} tasks; squeue -j "
                 f"{jobs[0].job_id.split('_')[0]}; logs in {self.params['submitit_folder']})")
        by_job = {job.job_id: (i, list(o)) for job, i, o in zip(jobs, indices, job_overrides)}
        returns = {}
        for job in as_completed(jobs):
            index, overrides = by_job[job.job_id]
            returns[index] = self._outcome(job, index, overrides)
        return [returns[i] for i in indices]

    @staticmethod
    def _outcome(job: Any, index: int, overrides: list[str]) -> JobReturn:
        from submitit.core.utils import FailedJobError, UncompletedJobError

        try:
            done = job.results()[0]
        except (FailedJobError, UncompletedJobError) as e:
            why = cause(e)
            log.info(f"#{index} failed (SLURM task {job.job_id}): {why}")
            return JobReturn(overrides=overrides, status=JobStatus.FAILED,
                             _return_value=TaskFailed(f"sweep task #{index} ({' '.join(overrides)}, SLURM task "
                                                      f"{job.job_id}) failed: {why}"))
        record = done._return_value if isinstance(done._return_value, dict) else {}
        log.info(f"#{index} {record.get('status', done.status.name.lower())} (SLURM task {job.job_id}): "
                 f"{' '.join(overrides)}")
        return done
