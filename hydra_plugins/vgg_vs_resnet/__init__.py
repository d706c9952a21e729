"""Hydra accepts launchers only from classes defined in the `hydra_plugins` namespace: this is where it finds the
project's launchers. Their code lives in models/utils: launcher.py (local_gpus) and slurm.py (slurm)."""

from models.utils.launcher import PackedLauncher
from models.utils.slurm import SlurmTaskLauncher


class PackedLocalLauncher(PackedLauncher):
    """`hydra/launcher=local_gpus`: jobs_per_gpu runs per GPU at a time (models.utils.launcher.PackedLauncher)."""


class Slurm(SlurmTaskLauncher):
    """`hydra/launcher=slurm`: a sweep as one SLURM job array whose failed runs fail their task
    (models.utils.slurm.SlurmTaskLauncher)."""
