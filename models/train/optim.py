"""Optimizers and learning-rate schedules: validated settings (`optim.*`, `sched.*`) and their construction.

SGD (momentum, nesterov) or AdamW, optionally without weight decay on BN parameters and biases. LR: cosine /
multistep / one-cycle / constant with linear warm-up, a function of the optimizer step (stepped every iteration).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, Literal

import annotated_types as at

from models.errors import ConfigError
from models.utils.declare import Count, check_fields, interval

if TYPE_CHECKING:  # torch loads with the model, not with the config checks (models.train.preflight)
    import torch
    from torch import nn

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("cosine", "multistep", "onecycle", "constant")
BelowOne = interval(ge=0, lt=1)
Between = interval(gt=0, lt=1)


@dataclass
class OptimConfig:
    """optim.*: each key declared once, here (the typed config schema, models/train/keys.py, uses this class)."""

    name: Literal[OPTIMIZERS] = "sgd"  # type: ignore[valid-type]
    lr: interval(gt=0) = 0.1  # type: ignore[valid-type]  # peak lr (after warm-up), per optimizer step
    momentum: BelowOne = 0.9  # type: ignore[valid-type]  # sgd only
    nesterov: bool = False  # sgd only
    betas: Annotated[list[BelowOne], at.Len(2, 2)] = (0.9, 0.999)  # type: ignore  # adamw only
    weight_decay: interval(ge=0) = 5e-4  # type: ignore[valid-type]
    decay_bn_bias: bool = False  # false: no weight decay on BN parameters and biases (all 1-d tensors)

    def __post_init__(self) -> None:
        check_fields(self, "optim")
        if self.nesterov and (self.name != "sgd" or self.momentum == 0):
            raise ConfigError("optim.nesterov=true needs optim.name=sgd and optim.momentum>0")
        self.betas = tuple(float(b) for b in self.betas)  # type: ignore[assignment]


@dataclass
class SchedSettings:
    """sched.*: each key declared once, here (the typed config schema uses this class)."""

    name: Literal[SCHEDULES] = "cosine"  # type: ignore[valid-type]
    warmup_steps: Count = 0  # linear warm-up from lr/warmup_steps (cosine, multistep, constant)
    milestones: list[Between] = field(default_factory=lambda: [0.5, 0.75])  # type: ignore  # fractions of the steps
    gamma: interval(gt=0, le=1) = 0.1  # type: ignore[valid-type]  # multistep: factor at each milestone
    min_lr_ratio: interval(ge=0, le=1) = 0.0  # type: ignore[valid-type]  # cosine: final lr = lr * min_lr_ratio
    pct_start: Between = 0.3  # type: ignore[valid-type]  # onecycle: fraction of steps rising to lr
    div_factor: interval(ge=1) = 25.0  # type: ignore[valid-type]  # onecycle
    final_div_factor: interval(ge=1) = 1e4  # type: ignore[valid-type]  # onecycle

    def __post_init__(self) -> None:
        check_fields(self, "sched")
        if list(self.milestones) != sorted(self.milestones):
            raise ConfigError(f"sched.milestones={list(self.milestones)} must be increasing fractions of the "
                              "total steps in (0, 1), e.g. [0.5,0.75]")


@dataclass
class LRSchedule(SchedSettings):
    """lr multiplier as a function of the optimizer step; a plain object so LambdaLR checkpoints its fields."""

    total_steps: Annotated[int, at.Ge(0)] = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        self.milestones = [float(m) for m in self.milestones]
        self.total_steps = max(1, int(self.total_steps))

    def milestone_steps(self) -> list[int]:
        return [round(m * self.total_steps) for m in self.milestones]

    def __call__(self, step: int) -> float:
        if self.name == "onecycle":  # warm-up is built in: lr/div -> lr over pct_start, cosine down to the floor
            rise = max(1, round(self.pct_start * self.total_steps))
            start, end = 1 / self.div_factor, 1 / (self.div_factor * self.final_div_factor)
            if step < rise:
                return start + (1 - start) * step / rise
            p = min(1.0, (step - rise) / max(1, self.total_steps - rise))
            return end + (1 - end) * 0.5 * (1 + math.cos(math.pi * p))
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        if self.name == "multistep":
            return self.gamma ** sum(step >= m for m in self.milestone_steps())
        if self.name == "cosine":
            p = min(1.0, (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps))
            return self.min_lr_ratio + (1 - self.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * p))
        return 1.0


def param_groups(model: nn.Module, weight_decay: float, decay_bn_bias: bool) -> list[dict[str, Any]]:
    """Two groups: weights (conv/linear kernels) with decay, and 1-d tensors (BN gamma/beta, biases) without,
    unless decay_bn_bias (He et al. decayed everything)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if decay_bn_bias:
        return [{"params": params, "weight_decay": weight_decay}]
    decay = [p for p in params if p.ndim > 1]
    no_decay = [p for p in params if p.ndim <= 1]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(model: nn.Module, o: OptimConfig, fused: bool = False) -> torch.optim.Optimizer:
    """The optimizer of `o` over `model`'s parameter groups (see `param_groups`). `fused`: one CUDA kernel per step
    for all parameters (fewer launches; the learning rate stays a plain float, so nothing recompiles)."""
    import torch

    groups = param_groups(model, o.weight_decay, o.decay_bn_bias)
    extra = {"fused": True} if fused else {}
    if o.name == "sgd":
        return torch.optim.SGD(groups, lr=o.lr, momentum=o.momentum, nesterov=o.nesterov, **extra)
    return torch.optim.AdamW(groups, lr=o.lr, betas=o.betas, **extra)
