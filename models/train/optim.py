"""Optimizers and learning-rate schedules: validated settings (`optim.*`, `sched.*`) and their construction.

SGD (momentum, nesterov) or AdamW, optionally without weight decay on BN parameters and biases. LR: cosine /
multistep / one-cycle / constant with linear warm-up, a function of the optimizer step (stepped every iteration).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from models.errors import ConfigError

if TYPE_CHECKING:  # torch loads with the model, not with the config checks (models.train.preflight)
    import torch
    from torch import nn

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("cosine", "multistep", "onecycle", "constant")


@dataclass
class OptimConfig:
    name: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 5e-4
    decay_bn_bias: bool = False

    def __post_init__(self) -> None:
        if self.name not in OPTIMIZERS:
            raise ConfigError(f"optim.name={self.name!r} is not valid: choose one of {', '.join(OPTIMIZERS)}")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"optim.lr={self.lr!r} must be a positive number")
        if self.weight_decay < 0:
            raise ConfigError(f"optim.weight_decay={self.weight_decay!r} must be >= 0")
        if not 0 <= self.momentum < 1:
            raise ConfigError(f"optim.momentum={self.momentum!r} must be in [0, 1)")
        if self.nesterov and (self.name != "sgd" or self.momentum == 0):
            raise ConfigError("optim.nesterov=true needs optim.name=sgd and optim.momentum>0")
        self.betas = tuple(float(b) for b in self.betas)  # type: ignore[assignment]


@dataclass
class LRSchedule:
    """lr multiplier as a function of the optimizer step; a plain object so LambdaLR checkpoints its fields."""

    name: str = "cosine"
    total_steps: int = 1
    warmup_steps: int = 0
    milestones: list[float] = field(default_factory=lambda: [0.5, 0.75])  # fractions of total_steps
    gamma: float = 0.1
    min_lr_ratio: float = 0.0
    pct_start: float = 0.3
    div_factor: float = 25.0
    final_div_factor: float = 1e4

    def __post_init__(self) -> None:
        if self.name not in SCHEDULES:
            raise ConfigError(f"sched.name={self.name!r} is not valid: choose one of {', '.join(SCHEDULES)}")
        if self.warmup_steps < 0:
            raise ConfigError(f"sched.warmup_steps={self.warmup_steps!r} must be >= 0")
        if any(not 0 < m < 1 for m in self.milestones) or list(self.milestones) != sorted(self.milestones):
            raise ConfigError(f"sched.milestones={list(self.milestones)} must be increasing fractions of the "
                              "total steps in (0, 1), e.g. [0.5,0.75]")
        if not 0 < self.pct_start < 1:
            raise ConfigError(f"sched.pct_start={self.pct_start!r} must be in (0, 1)")
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
