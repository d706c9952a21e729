"""The one way code outside `scripts/` composes the project's Hydra configs (ablation grids, benchmark, tests)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"


def compose(overrides: Sequence[str] = (), config_name: str = "train", hydra_node: bool = False) -> Any:
    """`configs/<config_name>.yaml` composed with `overrides` (no run directory is created).

    `hydra_node=True` keeps the `hydra` node (sweep dir, grid, launcher). Works inside a running Hydra app too: its
    global state is saved and given back afterwards.
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.initialize import get_gh_backup, restore_gh_from_backup

    backup = get_gh_backup()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
            return hydra_compose(config_name, overrides=list(overrides), return_hydra_config=hydra_node)
    finally:
        restore_gh_from_backup(backup)
