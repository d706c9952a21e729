"""Training/inference speed through the project's full path vs a minimal PyTorch loop (see models/bench/).

    python scripts/benchmark.py                                    # resnet20, CIFAR-10 (real copy if present), b128
    python scripts/benchmark.py --models resnet20 resnet56 --batch-sizes 64 128 --precisions 32-true bf16-mixed
                                --channels-last false true --compile false true --csv reports/bench.csv
    python scripts/benchmark.py --imagenet                         # + vgg16_cifar and resnet18 at 224, cached folder
    python scripts/benchmark.py --epoch-compare                    # + one resnet20 epoch: device path vs DataLoader
    python scripts/benchmark.py --suite readme --readme docs/benchmark.md --csv docs/benchmark.csv   # the docs numbers

The same commands run unchanged on a GPU box (trainer=gpu is picked when CUDA is available).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from models.bench import doc as D
from models.bench import speed as B
from models.utils.system import machine, machine_line


def flag(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--models", nargs="+", default=["resnet20"])
    ap.add_argument("--batch-sizes", nargs="+", type=int, default=[128])
    ap.add_argument("--precisions", nargs="+", default=["32-true"], help="32-true | bf16-mixed | 16-mixed (CUDA)")
    ap.add_argument("--channels-last", nargs="+", type=flag, default=[False])
    ap.add_argument("--compile", nargs="+", default=["false"],
                    help="false | true | auto | default | reduce-overhead | max-autotune (auto: graphs on a GPU)")
    ap.add_argument("--data", default="cifar10", choices=["cifar10", "synthetic", "digits", "folder"],
                    help="cifar10: the real copy at --cifar-root if present, else synthetic CIFAR-format files")
    ap.add_argument("--image-size", type=int, default=None)
    ap.add_argument("--cifar-root", default=str(B.DEFAULT_CIFAR))
    ap.add_argument("--steps", type=int, default=5, help="steps per timed window")
    ap.add_argument("--repeats", type=int, default=3, help="timed windows per side (median reported)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    ap.add_argument("--eval-batches", type=int, default=4)
    ap.add_argument("--imagenet", action="store_true",
                    help="also vgg16_cifar and resnet18 at 224 through ImageFolderDataModule(cache=true)")
    ap.add_argument("--imagenet-batch", type=int, nargs=2, default=[4, 8], metavar=("VGG", "RESNET"),
                    help="batch of vgg16_cifar and of resnet18 at 224 (a vgg16 step at 224 is ~15 GMACs/image)")
    ap.add_argument("--imagenet-steps", type=int, default=2)
    ap.add_argument("--imagenet-repeats", type=int, default=3)
    ap.add_argument("--suite", choices=["readme", "gpu"], default=None,
                    help="gpu: resnet20 b128 and b512 bf16 channels_last with compile=auto (CUDA graphs) against "
                         "the eager and the CUDA-graph loop, resnet50 and vgg16 at 224, 4 and 8 packed runs. "
                         "readme: resnet20/CIFAR-10/b128 as fp32, channels_last, bf16-mixed and compile, plus "
                         "--imagenet and --epoch-compare (the numbers in docs/benchmark.md)")
    ap.add_argument("--packed", type=int, nargs="*", default=[],
                    help="also K copies of the first case's run at once on one device vs one alone (e.g. 4 8)")
    ap.add_argument("--packed-seconds", type=float, default=60,
                    help="how long each packed (and the single) run trains: long past compile and warm-up, so "
                         "that the runs' measured windows overlap")
    ap.add_argument("--epoch-compare", action="store_true",
                    help="also one resnet20 epoch on the real CIFAR-10 copy: device path vs per-image DataLoader")
    ap.add_argument("--override", nargs="*", default=[],
                    help="extra Hydra overrides for the project's runs, e.g. trainer.enable_progress_bar=false")
    ap.add_argument("--logger", default="csv", choices=["csv", "none", "wandb"])
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    ap.add_argument("--workdir", default=None, help="generated data, caches, run dirs (default: a temp dir)")
    ap.add_argument("--csv", default=None, help="write the rows here")
    ap.add_argument("--json", default=None, help="write rows + machine + epoch comparison here")
    ap.add_argument("--readme", default=None, help="write a markdown report (table, machine, epoch comparison)")
    return ap.parse_args(argv)


def plan(args: argparse.Namespace) -> tuple[list[B.Case], list[B.Case]]:
    """The cases to measure first, and those measured after the epoch comparison (the readme suite's switches)."""
    modes = [{"false": False, "true": True}.get(str(c).lower(), c) for c in args.compile]
    cases = [B.Case(model=m, data=args.data, batch=b, image_size=args.image_size, precision=p, channels_last=cl,
                    compile=co, steps=args.steps, repeats=args.repeats, warmup=args.warmup,
                    eval_batches=args.eval_batches)
             for m, b, p, cl, co in itertools.product(args.models, args.batch_sizes, args.precisions,
                                                       args.channels_last, modes)]
    extra: list[B.Case] = []
    if args.suite == "readme":  # the essential rows first (fp32, both ImageNet-path models), then the switches
        common = dict(model="resnet20", data=args.data, batch=128, steps=args.steps, repeats=args.repeats,
                      warmup=args.warmup, eval_batches=args.eval_batches)
        cases = [B.Case(**common)]
        extra = [B.Case(**common, channels_last=True), B.Case(**common, precision="bf16-mixed"),
                 B.Case(**common, compile="true")]
        args.imagenet = args.epoch_compare = True
    if args.suite == "gpu":  # the GPU goals (docs/benchmark.md): graphs on, against both minimal loops
        gpu = dict(data=args.data, precision="bf16-mixed", channels_last=True, compile="auto", steps=args.steps,
                   repeats=args.repeats, warmup=max(args.warmup, 10), eval_batches=args.eval_batches)
        cases = [B.Case(model="resnet20", batch=b, **gpu) for b in (128, 512)]
        cases += [B.Case(model=m, data="folder", batch=64, image_size=224, precision="bf16-mixed", channels_last=True,
                         compile=co, steps=args.imagenet_steps, repeats=args.imagenet_repeats, warmup=5,
                         eval_batches=3) for m in ("resnet50", "vgg16") for co in (False, "default")]
        args.packed = args.packed or [4, 8]
    if args.imagenet:
        cases += [B.Case(model=m, data="folder", batch=b, image_size=224, steps=args.imagenet_steps,
                         repeats=args.imagenet_repeats, warmup=1, eval_batches=3)
                  for m, b in zip(("vgg16_cifar", "resnet18"), args.imagenet_batch)]
    return cases, extra


def emit(args: argparse.Namespace, rows: list[B.SpeedResult], epochs: list[dict], info_start: dict,
         final: bool, packed: list[dict] | None = None) -> None:
    """Write the outputs (after every case, so an interrupted run keeps what it measured)."""
    info_end = machine()
    packed = packed or []
    if final:
        print(machine_line(info_start) + f" (end: load {info_end['hardware/load_1min']})")
        print(D.markdown_table(rows))
        for e in epochs:
            print(f"epoch: {e['loader']}: {e['epoch_time_s']:.1f} s for {e['images']:,} images "
                  f"({e['train/images_per_s']:.1f} img/s after warm-up, data wait "
                  f"{e['train/data_wait_frac']:.3f}); load {e['load_before']}->{e['load_after']}")
        for p in packed:
            print(f"packed: {p['jobs']} x {p['model']} b{p['batch']}: {p['aggregate']:,.1f} img/s together vs "
                  f"{p['single']:,.1f} alone ({p['speedup']:.2f}x, overlap {p['overlap']:.2f})")
        for t in [*D.targets(rows, epochs), *D.gpu_targets(rows, packed)]:
            print(f"target: {t}")
    if args.csv:
        D.write_csv(rows, args.csv, info_start)
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": info_start, "machine_end": info_end,
                                               "rows": [D.as_dict(r) for r in rows], "epoch_compare": epochs,
                                               "packed": packed},
                                              indent=1, default=str))
    if args.readme:
        D.write_report(args.readme, rows, epochs, info_start, info_end, " ".join(["python", *sys.argv]), packed)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="bench_"))
    workdir.mkdir(parents=True, exist_ok=True)
    cifar_root = Path(args.cifar_root).expanduser()
    info_start = machine()
    log = lambda *a: print(*a, file=sys.stderr, flush=True)
    log(machine_line(info_start))
    cases, extra = plan(args)
    rows: list[B.SpeedResult] = []
    epochs: list[dict] = []
    for c in cases:
        rows.append(B.run_case(c, workdir, cifar_root, logger=args.logger, log=log, extra=args.override))
        emit(args, rows, epochs, info_start, final=False)
    if args.epoch_compare:
        epochs += B.epoch_compare(cifar_root, workdir, logger=args.logger, log=log)
        emit(args, rows, epochs, info_start, final=False)
    for c in extra:
        rows.append(B.run_case(c, workdir, cifar_root, logger=args.logger, log=log, extra=args.override))
        emit(args, rows, epochs, info_start, final=False)
    packed = [B.packed_rates(cases[0], k, workdir, cifar_root, log=log, seconds=args.packed_seconds)
              for k in args.packed]
    emit(args, rows, epochs, info_start, final=True, packed=packed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
