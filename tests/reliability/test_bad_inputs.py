"""The catalogue of bad inputs (issue 6, item 3): one test per row, and docs/bad_inputs.md generated from the same list.

Every row is a real command (scripts/train.py, scripts/ablate.py, scripts/report.py or scripts/complexity.py) that
must end with exactly ONE line on stderr, `error: <message>`, naming the offending key/path and the fix, a non-zero
exit status (2: bad input), no traceback, and no run recorded as finished. Most rows run the script IN THIS PROCESS
(`helpers.cli.run_cli`: the script executed as __main__ under its own argv and working directory, exactly the code a
shell runs); the rows marked `process=True` run as real subprocesses, for the exit status and stderr the OS reports
(one per script, plus the checks before torch loads). HYDRA_FULL_ERROR=1 brings the traceback back (tested once).

`{tmp}` in a row stands for the row's own temporary directory, `{cpus}` for this machine's CPU count. Every
scripts/train.py row also gets `hydra.run.dir={tmp}/run` (unless it sets its own), `logger=none` and the tiny
settings in TINY. All rows run in one module fixture (subprocess rows concurrently, in-process rows meanwhile, one
after the other), then each row is its own test.

Regenerate the doc table after editing CATALOGUE:  .venv/bin/python tests/reliability/test_bad_inputs.py
"""

from __future__ import annotations

import os
import pickle
import re
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

if __name__ == "__main__":  # run as a script to regenerate the doc table: tests/ holds the helpers
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from helpers.cli import run_cli
from helpers.runs import REPO
from models.analysis.ablation import list_ablations
from models.analysis.explain import differing, resolve
from models.presets import list_presets
from models.spec import knob_names

# listed from the code, not typed: a new grid, preset, knob or design choice changes these messages and nothing here
ABLATIONS = ", ".join(sorted(list_ablations()))
CHOICE_ORDER = ", ".join(differing(resolve("vgg16", "a", None), resolve("resnet34", "b", None)))
PRESETS = ", ".join(list_presets())  # registry order (explain)
PRESET_OPTIONS = ", ".join(sorted(list_presets()))  # Hydra's config group options, sorted
KNOBS = ", ".join(knob_names())

TINY = ["data.image_size=8", "data.batch_size=32", "trainer.max_epochs=1", "trainer.limit_train_batches=2",
        "trainer.limit_val_batches=1", "trainer.limit_test_batches=1", "trainer.enable_progress_bar=false",
        "summary=false"]
CPUS = os.cpu_count() or 1


# ------------------------------------------------------------------ set-ups (each writes real files under tmp)
def _cifar(tmp: Path) -> Path:
    from data.synthetic import write_cifar

    return write_cifar(tmp / "cifar", "cifar10", n_train=50, n_test=20)


def truncated_cifar(tmp: Path) -> None:
    batch = _cifar(tmp) / "data_batch_1"
    batch.write_bytes(batch.read_bytes()[:1000])


def garbage_cifar(tmp: Path) -> None:
    (_cifar(tmp) / "test_batch").write_bytes(b"\x00 this is not a pickle" * 10)


def pickle_bomb_cifar(tmp: Path) -> None:
    with open(_cifar(tmp) / "data_batch_1", "wb") as f:
        pickle.dump({"data": _Trap(tmp / "PWNED"), "labels": [0]}, f, protocol=2)


def _folder(tmp: Path) -> Path:
    from data.synthetic import write_image_folder

    return write_image_folder(tmp / "images", ["cat", "dog"], {"train": 3, "val": 2})


def truncated_jpeg(tmp: Path) -> None:
    jpg = _folder(tmp) / "train" / "dog" / "1.jpg"
    jpg.write_bytes(jpg.read_bytes()[:200])


def two_bad_images(tmp: Path) -> None:
    truncated_jpeg(tmp)
    (tmp / "images" / "val" / "cat" / "0.jpg").write_bytes(b"not a jpeg")


def other_config(tmp: Path) -> None:
    """A run directory created by another configuration (its config.yaml says optim.lr=0.5)."""
    from omegaconf import OmegaConf

    from helpers.runs import compose_train

    (tmp / "run").mkdir(parents=True)
    OmegaConf.save(compose_train([*TINY, "logger=none", "optim.lr=0.5"]), tmp / "run" / "config.yaml", resolve=True)


def empty_class(tmp: Path) -> None:
    (_folder(tmp) / "train" / "bird").mkdir()
    (tmp / "images" / "val" / "bird").mkdir()


def broken_experiment_yaml(tmp: Path) -> None:
    (tmp / "cfg" / "experiment").mkdir(parents=True)
    (tmp / "cfg" / "experiment" / "broken.yaml").write_text("# @package _global_\nmodel: [resnet20\noptim:\n  lr: 0.1\n")


def empty_dir(tmp: Path) -> None:
    (tmp / "empty").mkdir()


def corrupt_checkpoint(tmp: Path) -> None:
    (tmp / "run" / "checkpoints").mkdir(parents=True)
    (tmp / "run" / "checkpoints" / "last.ckpt").write_bytes(b"PK\x03\x04" + b"\x00" * 100)


def other_model_checkpoint(tmp: Path) -> None:
    """A real checkpoint dict (torch.save) whose hyper-parameters say resnet32: resuming it as resnet20 must refuse."""
    import torch

    from models.presets import get_spec

    spec = get_spec("resnet32", num_classes=10)
    knobs = spec.config()
    (tmp / "run" / "checkpoints").mkdir(parents=True)
    torch.save({"state_dict": {}, "hyper_parameters": {"model": knobs}}, tmp / "run" / "checkpoints" / "last.ckpt")


class _Trap:
    """Unpickling this runs code: it would create the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def pickle_bomb_checkpoint(tmp: Path) -> None:
    (tmp / "run" / "checkpoints").mkdir(parents=True)
    with open(tmp / "run" / "checkpoints" / "last.ckpt", "wb") as f:
        pickle.dump({"state_dict": {}, "trap": _Trap(tmp / "PWNED")}, f)


def a_file(tmp: Path) -> None:
    (tmp / "file").write_text("not a directory\n")


# ------------------------------------------------------------------ the catalogue
@dataclass(frozen=True)
class Bad:
    id: str
    input: str  # what is wrong, in words
    script: str  # train | ablate | report | complexity | explain
    args: tuple[str, ...]
    message: str  # exact, after {tmp}/{cpus} substitution; {*} stands for the OS's/library's own words
    status: int = 2
    setup: Callable[[Path], None] | None = None
    timeout: float = 240
    max_s: float = 90  # must fail this fast (wall clock, on a loaded 2-core box): no hang, e.g. on a download
    extra: tuple[str, ...] = field(default=())  # train only: appended after the tiny defaults (not shown in the doc)
    needs_no_gpu: bool = False  # only bad input where CUDA is absent
    process: bool = False  # run as a real subprocess (else in this process, through the same script)


M = {  # the exact messages ({tmp}: the row's temp dir; {cpus}: CPU count; {*}: text from the OS/library)
    "unknown-preset": f"model=resnet21 is not a known option: choose one of {PRESET_OPTIONS}",
    "unknown-knob": f"unknown model knob 'depthz' in model.depthz: valid knobs are {KNOBS}",
    "invalid-knob-value": "model.head='mlp' is not valid: choose one of fc, gap",
    "invalid-knob-type": "model.widths=16 is not valid: use a list of integers >= 1",
    "input-too-small": "data.image_size=16 is too small for this model (stem=resnet, downsample=stride, 4 stages reduce by 32x): use data.image_size>=32 or fewer stages",
    "batch-size-zero": "data.batch_size=0 is not valid: use an integer >= 1",
    "epochs-zero": "trainer.max_epochs=0 is not valid: use an integer >= 1, -1 or null",
    "negative-lr": "optim.lr=-0.1 is not valid: use a number > 0",
    "seed-not-integer": "seed='abc' is not valid: use an integer in [0, 4294967295]",
    "unknown-added-key": "unknown key trainer.max_epoch: check the spelling (python scripts/train.py --cfg job lists the keys)",
    "key-of-other-dataset": "data.cache is not a setting of this dataset (data._target_=data.digits.DigitsDataModule): drop it; it takes augment, batch_size, device_resident, image_size, num_workers, seed, test_size, val_size",
    "out-of-range": "optim.momentum=1.5 is not valid: use a number in [0, 1)",
    "slurm-ranks-vs-tasks": "trainer.devices=2 but hydra.launcher.tasks_per_node=1: under SLURM each DDP rank is one task: set hydra.launcher.tasks_per_node=2 (and hydra.launcher.gpus_per_node=2 on GPUs), or trainer.devices=1",
    "unknown-optimizer": "optim.name='lamb' is not valid: choose one of sgd, adamw",
    "num-classes-mismatch": "model.num_classes=100 but data=digits has 10 classes: drop the override or pick another dataset",
    "unknown-dataset": "data=imagenet21k is not a known option: choose one of cifar10, cifar100, digits, imagefolder, imagenette, tinyimagenet",
    "unknown-key": "unknown key trainer.max_epoch: check the spelling (python scripts/<script>.py --cfg job lists the keys) or use +trainer.max_epoch=... to add a new one",
    "missing-data-root": "data.root={tmp}/nowhere/cifar-10-batches-py not found: set data.root=<dir containing cifar-10-batches-py> or data.download=true",
    "download-offline": "downloading https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz into data.root={tmp}/empty failed ({*}): put cifar-10-batches-py under data.root yourself and set data.download=false",
    "cifar-truncated": "{tmp}/cifar/cifar-10-batches-py/data_batch_1 is corrupt or truncated ({*}): replace it (delete {tmp}/cifar/cifar-10-batches-py and set data.download=true) or point data.root at a good copy",
    "cifar-checksum": "checksum mismatch in {tmp}/cifar/cifar-10-batches-py/data_batch_1: if this is a known re-encoded copy set data.verify=false, else delete {tmp}/cifar/cifar-10-batches-py and set data.download=true",
    "cifar-garbage": "{tmp}/cifar/cifar-10-batches-py/test_batch is corrupt or truncated ({*}): replace it (delete {tmp}/cifar/cifar-10-batches-py and set data.download=true) or point data.root at a good copy",
    "cifar-code": "{tmp}/cifar/cifar-10-batches-py/data_batch_1 is corrupt or truncated (UnpicklingError: refused to load {*} (a CIFAR file holds only arrays and lists)): replace it (delete {tmp}/cifar/cifar-10-batches-py and set data.download=true) or point data.root at a good copy",
    "jpeg-truncated": "1 unreadable image(s): {tmp}/images/train/dog/1.jpg ({*}): delete or replace them (data.verify=false skips this scan)",
    "empty-class-folder": "2 data problem(s) in {tmp}/images: {tmp}/images/train/bird/ (a class folder with no images .jpg .jpeg .png .ppm .bmp .pgm .tif .tiff .webp: add images or drop the class via data.classes); {tmp}/images/val/bird/ (a class folder with no images .jpg .jpeg .png .ppm .bmp .pgm .tif .tiff .webp: add images or drop the class via data.classes): fill or drop those classes (data.classes)",
    "malformed-yaml": "malformed YAML in {tmp}/cfg/experiment/broken.yaml, line 3, column 6 (while parsing a flow sequence; expected ',' or ']', but got ':'): fix the file's syntax (e.g. close brackets, quote values containing ':' or '#')",
    "malformed-override": "override 'optim.lr=[0.1' is malformed (no viable alternative at input '[0.1'): write key=value, lists as key=[a,b], and quote values holding brackets, commas or spaces",
    "output-not-writable": "cannot create or write {tmp}/file/run (Not a directory): set hydra.run.dir (hydra.sweep.dir with -m) to a writable directory",
    "corrupt-checkpoint": "checkpoint {tmp}/run/checkpoints/last.ckpt is corrupt or truncated ({*}): delete it to restart this run from scratch, or restore a good copy",
    "checkpoint-code": "checkpoint {tmp}/run/checkpoints/last.ckpt holds objects that weights_only loading refuses ({*}): delete it to restart this run from scratch, or restore a good copy",
    "resume-other-model": "model.depths=[3, 3, 3] but checkpoint {tmp}/run/checkpoints/last.ckpt was trained with model.depths=[5, 5, 5]: use the same model to resume, or a new hydra.run.dir for a new run",
    "too-many-devices": "trainer.devices=64 but this machine has {cpus} CPUs: use trainer.devices<={cpus} (or trainer=gpu on a GPU box)",
    "unknown-ablation-sweep": f"ablation=resnet_vs_everything is not a known option: choose one of {ABLATIONS}",
    "unknown-ablation": f"unknown ablation 'resnet_vs_everything': choose one of {ABLATIONS}",
    "report-no-runs": "no runs (results.json) under {tmp}/empty: point report.py at a sweep directory such as runs/ablation/<name>, or run one with scripts/ablate.py",
    "report-missing-dir": "{tmp}/nothing is not a directory: pass a runs directory (e.g. runs/ablation/<name>) or an ablation name",
    "jpeg-truncated-cache": "2 unreadable image(s) while building the image cache: {tmp}/images/train/dog/1.jpg ({*}); {tmp}/images/val/cat/0.jpg ({*}): delete or replace them (the cache decodes every image, so nothing was trained)",
    "run-dir-other-config": "run directory {tmp}/run belongs to another configuration: optim.lr=0.5 (now 0.1): re-run it with the settings of {tmp}/run/config.yaml, or give this one its own hydra.run.dir",
    "no-length": "trainer.max_epochs=null and trainer.max_steps=-1 give the run no length (Lightning would silently train 1000 epochs): set trainer.max_epochs=N or trainer.max_steps=N",
    "unlimited-epochs-schedule": "trainer.max_epochs=-1 (no limit) with sched.name=cosine: the schedule needs the run's number of optimizer steps: set trainer.max_epochs=N or trainer.max_steps=N, or sched.name=constant",
    "max-time-schedule": "trainer.max_time='00:01:00:00' stops the run by the clock, so sched.name=cosine cannot know how many steps it spans: drop trainer.max_time (use max_epochs / max_steps) or set sched.name=constant",
    "min-over-max": "trainer.min_epochs=5 > trainer.max_epochs=1: the run cannot do both; lower trainer.min_epochs or raise trainer.max_epochs",
    "val-check-past-epoch": "trainer.val_check_interval=100 is more than the 2 training batches of an epoch: use a fraction of an epoch (e.g. 0.5), an integer <= 2, or trainer.check_val_every_n_epoch=null to count batches across epochs",
    "data-root-unset": "data.root is not set: add data.root=<folder holding train/ and val/>, e.g. data.root=/data/imagenette2-160 to the command",
    "gpu-without-gpu": "trainer.accelerator=gpu but this machine has no CUDA GPU: use trainer=cpu (or trainer.accelerator=cpu)",
    "complexity-bad-device": "device='mps' is not supported: use device=cpu or device=cuda",
    "complexity-bad-precision": "precision='fp8' is not valid: choose one of 32, bf16, 16 (or 32-true, bf16-mixed, 16-mixed)",
    "unknown-block": "model.block='wide' is not valid: choose one of plain, basic, bottleneck",
    "unknown-schedule": "sched.name='linear' is not valid: choose one of cosine, multistep, onecycle, constant",
    "complexity-unknown-knob": f"unknown model knob 'stemm' in model.stemm: valid knobs are {KNOBS}",
    "complexity-input-too-small": "input_size=16 is too small for this model (stem=resnet, downsample=stride, 4 stages reduce by 32x): use input_size>=32 or fewer stages",
    "graphs-accumulate": "compile=reduce-overhead replays CUDA graphs, whose next replay overwrites the gradients being accumulated (trainer.accumulate_grad_batches=2): set trainer.accumulate_grad_batches=1 (a bigger data.batch_size) or compile=default",
    "explain-unknown-preset": f"a=vgg17 is not a known preset: choose one of {PRESETS}",
    "explain-same-network": "a=vgg16 and b=vgg16 are the same network: pick two networks that differ",
    "explain-input-too-small": "a=vgg16: input_size=16 is too small for this model (stem=vgg, downsample=maxpool, 5 stages reduce by 32x): use input_size>=32 or fewer stages",
    "explain-missing-b": "b is not set: name the two networks, e.g. python scripts/explain.py a=vgg16 b=resnet34",
    "explain-bad-order": f"order=residual,head must list each differing choice once: {CHOICE_ORDER}",
    "complexity-unknown-preset": f"model=vgg17 is not a known option: choose one of {PRESET_OPTIONS}",
}

T = "train"
CATALOGUE: list[Bad] = [
    Bad("unknown-preset", "unknown model preset", T, ("model=resnet21",), M["unknown-preset"], process=True),
    Bad("unknown-knob", "unknown model knob", T, ("model.depthz=3",), M["unknown-knob"]),
    Bad("invalid-knob-value", "invalid knob value", T, ("model.head=mlp",), M["invalid-knob-value"]),
    Bad("invalid-knob-type", "knob of the wrong type", T, ("model.widths=16",), M["invalid-knob-type"]),
    Bad("input-too-small", "input size too small for the model's downsampling", T,
        ("model=resnet18", "data.image_size=16"), M["input-too-small"]),
    Bad("batch-size-zero", "batch size <= 0", T, ("data.batch_size=0",), M["batch-size-zero"]),
    Bad("epochs-zero", "epochs <= 0", T, ("trainer.max_epochs=0",), M["epochs-zero"]),
    Bad("unknown-block", "unknown block type", T, ("model.block=wide",), M["unknown-block"]),
    Bad("unknown-schedule", "unknown learning-rate schedule", T, ("sched.name=linear",), M["unknown-schedule"]),
    Bad("negative-lr", "negative learning rate", T, ("optim.lr=-0.1",), M["negative-lr"], process=True),
    Bad("seed-not-integer", "a value of the wrong type (any key: models/train/keys.py)", T, ("seed=abc",), M["seed-not-integer"]),
    Bad("unknown-added-key", "an unknown key added with +", T, ("+trainer.max_epoch=3",), M["unknown-added-key"]),
    Bad("key-of-other-dataset", "a key another dataset takes", T, ("+data.cache=true",), M["key-of-other-dataset"]),
    Bad("out-of-range", "a number out of its range", T, ("optim.momentum=1.5",), M["out-of-range"]),
    Bad("slurm-ranks-vs-tasks", "DDP ranks that do not match the SLURM tasks (refused before submitting)", T,
        ("-m", "hydra/launcher=slurm", "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2"), M["slurm-ranks-vs-tasks"]),
    Bad("unknown-optimizer", "unknown optimizer", T, ("optim.name=lamb",), M["unknown-optimizer"]),
    Bad("num-classes-mismatch", "num_classes different from the dataset's", T, ("model.num_classes=100",), M["num-classes-mismatch"]),
    Bad("unknown-dataset", "unknown dataset", T, ("data=imagenet21k",), M["unknown-dataset"]),
    Bad("unknown-key", "unknown config key", T, ("trainer.max_epoch=3",), M["unknown-key"]),
    Bad("missing-data-root", "missing data root, no download", T,
        ("data=cifar10", "data.root={tmp}/nowhere"), M["missing-data-root"]),
    Bad("download-offline", "download impossible (no network)", T,
        ("data=cifar10", "data.download=true", "data.root={tmp}/empty"), M["download-offline"], setup=empty_dir),
    Bad("cifar-truncated", "truncated CIFAR batch", T,
        ("data=cifar10", "data.root={tmp}/cifar", "data.verify=false"), M["cifar-truncated"], setup=truncated_cifar, process=True),
    Bad("cifar-checksum", "corrupt CIFAR batch (checksum)", T,
        ("data=cifar10", "data.root={tmp}/cifar"), M["cifar-checksum"], setup=truncated_cifar),
    Bad("cifar-garbage", "CIFAR batch that is not a pickle", T,
        ("data=cifar10", "data.root={tmp}/cifar", "data.verify=false"), M["cifar-garbage"], setup=garbage_cifar),
    Bad("cifar-code", "CIFAR batch that would run code when unpickled", T,
        ("data=cifar10", "data.root={tmp}/cifar", "data.verify=false"), M["cifar-code"], setup=pickle_bomb_cifar),
    Bad("jpeg-truncated", "truncated JPEG in an image folder", T,
        ("data=imagefolder", "data.root={tmp}/images"), M["jpeg-truncated"], setup=truncated_jpeg),
    Bad("empty-class-folder", "empty class folder", T,
        ("data=imagefolder", "data.root={tmp}/images"), M["empty-class-folder"], setup=empty_class),
    Bad("malformed-yaml", "malformed YAML file (experiment)", T,
        ("--config-dir={tmp}/cfg", "experiment=broken"), M["malformed-yaml"], setup=broken_experiment_yaml),
    Bad("malformed-override", "malformed override value", T, ("optim.lr=[0.1",), M["malformed-override"]),
    Bad("output-not-writable", "non-writable output directory", T, ("hydra.run.dir={tmp}/file/run",), M["output-not-writable"],
        setup=a_file),
    Bad("corrupt-checkpoint", "corrupt checkpoint", T, (), M["corrupt-checkpoint"], setup=corrupt_checkpoint),
    Bad("checkpoint-code", "checkpoint that would run code when unpickled", T, (), M["checkpoint-code"],
        setup=pickle_bomb_checkpoint),
    Bad("resume-other-model", "resume with a different model than the checkpoint", T, (), M["resume-other-model"],
        setup=other_model_checkpoint),
    Bad("jpeg-truncated-cache", "unreadable images while building the image cache (all named)", T,
        ("data=imagefolder", "data.root={tmp}/images", "data.cache=true", "data.cache_dir={tmp}/cache"),
        M["jpeg-truncated-cache"], setup=two_bad_images),
    Bad("run-dir-other-config", "a run directory re-used by another configuration", T, (),
        M["run-dir-other-config"], setup=other_config),
    Bad("no-length", "no run length at all (Lightning would default to 1000 epochs)", T, ("trainer.max_epochs=null",),
        M["no-length"]),
    Bad("unlimited-epochs-schedule", "unlimited epochs (Lightning's -1) with a schedule that needs the length", T,
        ("trainer.max_epochs=-1",), M["unlimited-epochs-schedule"]),
    Bad("max-time-schedule", "a wall-clock limit with a schedule that needs the length", T,
        ("trainer.max_time=00:01:00:00",), M["max-time-schedule"]),
    Bad("min-over-max", "min_epochs above max_epochs", T, ("trainer.min_epochs=5",), M["min-over-max"]),
    Bad("val-check-past-epoch", "val_check_interval longer than an epoch", T, ("trainer.val_check_interval=100",),
        M["val-check-past-epoch"]),
    Bad("data-root-unset", "image-folder dataset without data.root", T, ("data=imagenette",), M["data-root-unset"]),
    Bad("gpu-without-gpu", "trainer=gpu on a machine without a GPU", T, ("trainer=gpu",), M["gpu-without-gpu"],
        needs_no_gpu=True),
    Bad("too-many-devices", "more devices than exist", T,
        ("trainer.accelerator=cpu", "trainer.devices=64", "trainer.strategy=ddp"), M["too-many-devices"]),
    Bad("unknown-ablation-sweep", "ablation name that does not exist (sweep)", T,
        ("-m", "+ablation=resnet_vs_everything"), M["unknown-ablation-sweep"]),
    Bad("unknown-ablation", "ablation name that does not exist (ablate.py)", "ablate",
        ("resnet_vs_everything",), M["unknown-ablation"], process=True),
    Bad("report-no-runs", "report over a directory with no runs", "report", ("{tmp}/empty",), M["report-no-runs"], setup=empty_dir, process=True),
    Bad("report-missing-dir", "report over a directory that does not exist", "report", ("{tmp}/nothing",), M["report-missing-dir"]),
    Bad("complexity-bad-device", "a device the timing cannot use (complexity report)", "complexity",
        ("measure=true", "device=mps"), M["complexity-bad-device"], process=True),
    Bad("complexity-bad-precision", "an unknown precision (complexity report)", "complexity",
        ("measure=true", "precision=fp8"), M["complexity-bad-precision"]),
    Bad("complexity-unknown-preset", "unknown preset (complexity report)", "complexity", ("model=vgg17",), M["complexity-unknown-preset"]),
    Bad("graphs-accumulate", "CUDA graphs with gradient accumulation", T, ("compile=reduce-overhead", "trainer.accumulate_grad_batches=2"), M["graphs-accumulate"]),
    Bad("explain-unknown-preset", "unknown preset (explain)", "explain", ("a=vgg17", "b=resnet34"), M["explain-unknown-preset"]),
    Bad("explain-same-network", "the same network twice (explain)", "explain", ("a=vgg16", "b=vgg16"), M["explain-same-network"]),
    Bad("explain-input-too-small", "input too small for a network (explain)", "explain", ("a=vgg16", "b=resnet34", "input_size=16"), M["explain-input-too-small"]),
    Bad("explain-missing-b", "only one network named (explain)", "explain", ("a=vgg16",), M["explain-missing-b"]),
    Bad("explain-bad-order", "a roadmap order that misses choices (explain)", "explain", ("a=vgg16", "b=resnet34", "order=[residual,head]"), M["explain-bad-order"]),
    Bad("complexity-unknown-knob", "unknown knob (complexity report)", "complexity", ("model=vgg16", "model.stemm=vgg"), M["complexity-unknown-knob"]),
    Bad("complexity-input-too-small", "input too small for the model (complexity report)", "complexity", ("model=resnet18", "input_size=16"), M["complexity-input-too-small"]),
]


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def substitute(text: str, tmp: Path | str) -> str:
    return text.replace("{tmp}", str(tmp)).replace("{cpus}", str(CPUS))


def command(bad: Bad, tmp: Path | str) -> list[str]:
    args = [substitute(a, tmp) for a in bad.args]
    if bad.script == T:
        sets_dir = any(a.startswith("hydra.run.dir=") for a in args)
        flags = [a for a in args if a.startswith("-")]  # Hydra's own flags (-m, --config-dir) before the overrides
        args = [*flags, *TINY, "logger=none", *([] if sets_dir else [f"hydra.run.dir={tmp}/run"]),
                *[a for a in args if not a.startswith("-")], *bad.extra]
    return [sys.executable, str(REPO / "scripts" / f"{bad.script}.py"), *args]


def shown_command(bad: Bad) -> str:
    return " ".join(["python", f"scripts/{bad.script}.py", *bad.args])


def env(tmp: Path) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    e.update(WANDB_MODE="offline", WANDB_SILENT="true", WANDB_DIR=str(tmp), PYTHONPATH=str(REPO))
    return e


def run_row(bad: Bad, tmp: Path, extra_env: dict[str, str] | None = None, process: bool | None = None) -> Any:
    """The row's command from `tmp` (cwd=tmp: nothing — runs/, multirun/, outputs/ — can land in the checkout), as a
    subprocess or in this process; the result has returncode, stdout, stderr and seconds."""
    tmp.mkdir(parents=True, exist_ok=True)
    if bad.setup:
        bad.setup(tmp)
    cmd = command(bad, tmp)
    if not (bad.process if process is None else process):
        return run_cli(bad.script, cmd[2:], tmp, {**env(tmp), **(extra_env or {})})
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=tmp, env={**env(tmp), **(extra_env or {})}, capture_output=True,
                          text=True, timeout=bad.timeout)
    proc.seconds = time.perf_counter() - t  # type: ignore[attr-defined]
    return proc


def matches(message: str, template: str) -> bool:
    pattern = ".+?".join(re.escape(part) for part in template.split("{*}"))
    return re.fullmatch(pattern, message) is not None


# ------------------------------------------------------------------ the doc table
def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_table() -> str:
    lines = ["| # | input | command | exact message (stderr, after `error: `) | exit status |",
             "|---|---|---|---|---|"]
    for i, bad in enumerate(CATALOGUE, 1):
        lines.append(f"| {i} | {_cell(bad.input)} | `{_cell(shown_command(bad))}` | {_cell(bad.message)} | "
                     f"{bad.status} |")
    return "\n".join(lines)


# ------------------------------------------------------------------ tests
@pytest.fixture(scope="module")
def results(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Any]]:
    """Runs the selected rows (all, unless -k picked some): the subprocess rows two at a time in the background,
    the in-process rows meanwhile, one after the other (they share this process's global state)."""
    base = tmp_path_factory.mktemp("bad")
    selected = {item.callspec.params["bad"].id for item in request.session.items
                if getattr(item, "callspec", None) and isinstance(item.callspec.params.get("bad"), Bad)}
    rows = [b for b in CATALOGUE if b.id in selected] or CATALOGUE
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {b.id: pool.submit(run_row, b, base / b.id) for b in rows if b.process}
        done = {b.id: (base / b.id, run_row(b, base / b.id)) for b in rows if not b.process}
        return {**done, **{i: (base / i, f.result()) for i, f in futures.items()}}


def test_catalogue_is_big_and_distinct() -> None:
    assert len(CATALOGUE) >= 20
    assert len({b.id for b in CATALOGUE}) == len(CATALOGUE)
    assert len({(b.script, b.args, b.setup) for b in CATALOGUE}) == len(CATALOGUE)
    assert len({b.message for b in CATALOGUE}) == len(CATALOGUE)


@pytest.mark.slow
@pytest.mark.parametrize("bad", CATALOGUE, ids=[b.id for b in CATALOGUE])
def test_bad_input(bad: Bad, results: dict[str, tuple[Path, Any]]) -> None:
    if bad.needs_no_gpu and _has_cuda():
        pytest.skip("this machine has a CUDA GPU")
    tmp, proc = results[bad.id]
    err_lines = proc.stderr.splitlines()
    assert proc.returncode == bad.status, (proc.returncode, proc.stderr[-3000:])
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    assert len(err_lines) == 1 and err_lines[0].startswith("error: "), proc.stderr[-3000:]
    message = err_lines[0][len("error: "):]
    expected = substitute(bad.message, tmp)
    assert matches(message, expected), f"\n got: {message}\nwant: {expected}"
    assert proc.seconds < bad.max_s
    for results_json in tmp.rglob("results.json"):  # nothing recorded as finished
        assert '"status": "finished"' not in results_json.read_text(), results_json
    assert not (tmp / "PWNED").exists()  # the pickle in the checkpoint row was never executed


@pytest.mark.slow
def test_full_error_gives_the_traceback(tmp_path: Path) -> None:
    bad = next(b for b in CATALOGUE if b.id == "negative-lr")
    proc = run_row(bad, tmp_path, {"HYDRA_FULL_ERROR": "1"}, process=True)
    assert proc.returncode != 0
    assert "Traceback (most recent call last)" in proc.stderr and "ConfigError" in proc.stderr
    assert "optim.lr=-0.1" in proc.stderr


if __name__ == "__main__":
    if sys.argv[1:] == ["--show"]:  # print every row's actual message (to update CATALOGUE)
        import tempfile

        base = Path(tempfile.mkdtemp(prefix="bad_inputs_"))
        procs = [run_row(b, base / b.id) for b in CATALOGUE]
        for bad, proc in zip(CATALOGUE, procs):
            msg = proc.stderr.strip().replace(str(base / bad.id), "{tmp}")
            print(f"{bad.id}\t{proc.returncode}\t{msg}")

