"""`make gpu-check`: check a new GPU box in a few minutes (models/bench/gpu_check.py lists the checks).

    python scripts/gpu_check.py [--out gpu_check.json] [--only graphs padding ...]

One PASS/FAIL line per check and a JSON file; exit status 1 on any FAIL, 2 (one line) without CUDA.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None, help="the JSON report (default: a temp dir)")
    ap.add_argument("--only", nargs="*", default=None, choices=["graphs", "resume", "padding", "packing", "host",
                                                                "speed"],
                    help="these checks, in this order (default: all, in the order above)")
    args = ap.parse_args(argv)
    from models.bench.gpu_check import main as check

    return check(args.out, args.only)


if __name__ == "__main__":
    sys.exit(main())
