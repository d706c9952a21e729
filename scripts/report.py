"""Ablation table (Markdown + CSV) and figures from the runs' results.json files (or wandb).

    python scripts/report.py residual_vs_plain_tiny             # runs/ablation/residual_vs_plain_tiny
    python scripts/report.py runs/ablation/stem --out docs/results/stem
    python scripts/report.py seed_question --wandb my-team/vgg-vs-resnet

Writes table.md (with the paired effects), table.csv, table.tex (booktabs), effects.csv and the figures that apply
(acc_vs_macs.png, acc_vs_params.png, parts.png, acc_vs_pflops.png, acc_vs_wall_time.png, effects.png;
error_vs_depth.png for plain/residual twins, roadmap.png for a roadmap grid) to --out (default <runs dir>/report)
and prints the table. Seeds of one configuration from different code are refused unless --mixed-code=allow.
Bad input: one line, exit status 2.
"""

from __future__ import annotations

import argparse
import sys

import _cli

from models.errors import ConfigError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("target", help="an ablation name (configs/ablation/) or a runs directory")
    parser.add_argument("--out", help="output directory (default: <runs dir>/report)")
    parser.add_argument("--wandb", metavar="ENTITY/PROJECT", help="read the runs from the wandb API instead")
    parser.add_argument("--export", action="store_true",
                        help="first copy the runs' records (results.json, CSV history; no checkpoints, no machine "
                             "paths) to <out>/runs, then report from that copy: what docs/results/ commits")
    parser.add_argument("--mixed-code", choices=["refuse", "allow"], default="refuse",
                        help="seeds of one configuration from different code: refuse (default) or average them, "
                             "marked in the table")
    args = parser.parse_args(argv)
    from models.analysis.publish import export_records
    from models.analysis.report import report, resolve_target

    try:
        target = args.target
        if args.export:
            if not args.out or args.wandb:
                raise ConfigError("--export needs --out DIR (where the records and the report go) and no --wandb")
            target = str(export_records(resolve_target(args.target)[0], args.out))
        table, paths = report(target, args.out, args.wandb, mixed_code=args.mixed_code == "allow")
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return _cli.EXIT_BAD_INPUT
    print(table)
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
