"""The SLURM pieces that need no cluster (tests/integration/test_slurm.py runs them on a real one): the deferred
time-limit signal, torch threads from SLURM_CPUS_PER_TASK, one-line causes from submitit's errors."""

from __future__ import annotations

import os
import signal

import pytest
import torch
from submitit.core.utils import FailedJobError, UncompletedJobError

from models.train.preempt import Preemption
from models.utils.slurm import cause, check_ranks
from models.utils.system import threads_from_scheduler


def test_outside_submitit_nothing_is_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SUBMITIT_EXECUTOR", raising=False)
    before = signal.getsignal(signal.SIGUSR2)
    with Preemption() as p:
        assert signal.getsignal(signal.SIGUSR2) is before and p.reason is None
        p.hand_back()  # nothing received, nothing to hand back


def test_usr2_is_deferred_then_handed_to_submitit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUBMITIT_EXECUTOR", "slurm")
    calls: list[int] = []
    previous = signal.signal(signal.SIGUSR2, lambda signum, frame: calls.append(signum))  # stands for submitit's
    try:
        with Preemption() as p:
            os.kill(os.getpid(), signal.SIGUSR2)
            assert calls == [] and p.received == signal.SIGUSR2  # only noted: the run stops at a batch end
            assert p.reason == "SIGUSR2 (SLURM time limit or preemption)"
            p.hand_back()
            assert calls == [signal.SIGUSR2]
        os.kill(os.getpid(), signal.SIGUSR2)  # submitit's handler is back in place after the run
        assert calls == [signal.SIGUSR2, signal.SIGUSR2]
    finally:
        signal.signal(signal.SIGUSR2, previous)


def test_threads_follow_slurm_cpus_per_task(monkeypatch: pytest.MonkeyPatch) -> None:
    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("SLURM_CPUS_PER_TASK", "1")
        monkeypatch.setenv("OMP_NUM_THREADS", "2")
        assert threads_from_scheduler() is None  # the user's OMP_NUM_THREADS wins
        monkeypatch.delenv("OMP_NUM_THREADS")
        assert threads_from_scheduler() == 1 and torch.get_num_threads() == 1
        assert os.environ["OMP_NUM_THREADS"] == "1"  # what Lightning's DDP reads instead of cores // processes
        monkeypatch.delenv("SLURM_CPUS_PER_TASK")
        assert threads_from_scheduler() is None
    finally:
        torch.set_num_threads(before)


def test_causes_are_one_line() -> None:
    trace = ("Traceback (most recent call last):\n  File \"x.py\", line 1, in <module>\n"
             "models.errors.TaskFailed: optim.lr=-0.1 must be a positive number\n")
    failed = FailedJobError(f"Job (task=0) failed during processing with trace:\n----------------------\n{trace}\n"
                            "----------------------\nYou can check full logs with 'job.stderr(0)'")
    assert cause(failed) == "optim.lr=-0.1 must be a positive number"
    killed = UncompletedJobError("Job 7_1 (task: 0) with path /x/7_1_0_result.pkl\nhas not produced any output "
                                 "(state: CANCELLED)\nError stream produced:\n...")
    assert cause(killed) == "Job 7_1 (task: 0) with path /x/7_1_0_result.pkl has not produced any output (state: " \
                            "CANCELLED)"


def test_ddp_ranks_must_match_the_slurm_tasks() -> None:
    from models.errors import ConfigError

    check_ranks({"devices": 4, "num_nodes": 2}, tasks_per_node=4, nodes=2)
    check_ranks({"devices": "auto", "num_nodes": 1}, tasks_per_node=8, nodes=1)  # Lightning's to judge
    with pytest.raises(ConfigError, match=r"^trainer.num_nodes=2 but hydra.launcher.nodes=1: set hydra.launcher.nodes"):
        check_ranks({"devices": 1, "num_nodes": 2}, tasks_per_node=1, nodes=1)
    with pytest.raises(ConfigError, match=r"^trainer.devices=8 but hydra.launcher.tasks_per_node=1: "):
        check_ranks({"devices": 8, "num_nodes": 1}, tasks_per_node=1, nodes=1)
