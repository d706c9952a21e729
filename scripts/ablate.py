"""Run a named ablation, then print its table: the sweep and the report in one command.

    python scripts/ablate.py residual_vs_plain_tiny                 # `make demo`: minutes on a laptop CPU
    python scripts/ablate.py residual_vs_plain data.root=/data/cifar10 trainer=gpu
    python scripts/ablate.py stem hydra/launcher=slurm data.root=/data/imagenet_subset trainer=gpu

= `python scripts/train.py -m +ablation=<name> [overrides]` followed by `python scripts/report.py`. Re-running the
same command skips finished runs, resumes interrupted ones and retries failed ones. Exit status: the sweep's.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import _cli

from models.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str]) -> int:
    from models.analysis.ablation import check_name, sweep_dir
    from models.analysis.report import report

    if not argv or argv[0].startswith("-"):
        print(__doc__, file=sys.stderr)
        return _cli.EXIT_BAD_INPUT
    name, overrides = argv[0], argv[1:]
    try:
        check_name(name)
        chosen = [o.split("=", 1)[1] for o in overrides if o.startswith("hydra.sweep.dir=")]
        runs = Path(chosen[-1]) if chosen else sweep_dir(name)
        rc = subprocess.call([sys.executable, str(ROOT / "scripts" / "train.py"), "-m", f"+ablation={name}",
                              *overrides])
        if not runs.is_dir():  # the sweep failed before any job ran (bad override): its message is already out
            return rc or _cli.EXIT_BAD_INPUT
        table, paths = report(str(runs), ablation=name, overrides=overrides)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return _cli.EXIT_BAD_INPUT
    print(table)
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
