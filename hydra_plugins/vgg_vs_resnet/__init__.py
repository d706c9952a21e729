"""Hydra accepts launchers only from classes defined in the `hydra_plugins` namespace: this is where it finds the
project's `local_gpus` launcher (several runs per GPU). Its code lives in models/utils/launcher.py."""

from models.utils.launcher import PackedLauncher


class PackedLocalLauncher(PackedLauncher):
    """`hydra/launcher=local_gpus`: jobs_per_gpu runs per GPU at a time (models.utils.launcher.PackedLauncher)."""
