"""`make regen`: write every generated file from this checkout's code (models/analysis/regen.py lists them).

    python scripts/regen.py            # write what is stale, list it
    python scripts/regen.py --check    # list what is stale, change nothing; exit status 1 if anything is
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's code, not an installed copy


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="only list the stale files (exit 1 if any)")
    args = ap.parse_args(argv)
    from models.analysis.regen import REPO, regen, stale

    changed = stale() if args.check else regen()
    for path in changed:
        print(f"{'stale' if args.check else 'wrote'} {path.relative_to(REPO)}")
    if not changed:
        print("every generated file is current")
    return 1 if args.check and changed else 0


if __name__ == "__main__":
    sys.exit(main())
