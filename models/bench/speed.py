"""Speed of the project's full training path vs a minimal hand-written PyTorch loop, in one process.

For each case (preset x batch x precision x channels_last x compile):

* **project**: `models.train.run.train(cfg)` exactly as `scripts/train.py` runs it: configs/train.yaml composed with
  overrides, the real datamodule (device-resident), `Classifier`, the project's callbacks (RunMeter, checkpoints,
  FiniteGuard, SIGTERM), a logger (csv by default), progress bar on, Lightning Trainer. `train()` is given a RunMeter
  subclass that also keeps every step's timestamp (same hook, no extra work): the rate is taken over the same
  post-warm-up steps RunMeter uses, split into `repeats` windows; the median window is reported.
* **minimal** (`models.bench.minimal`): the same network, optimizer and batches in a hand-written loop.
  Augmentation (crop/flip/normalise) is therefore paid on BOTH sides. Its windows run INSIDE the project
  run, alternating with the project's windows (A B A B ..., from a benchmark-only hook at the window boundaries
  whose time is excluded from every project measurement), so drift on a shared machine hits both sides alike.
* **pipeline**: the DeviceLoader alone (images/s delivered, augmented and normalised).
* **infer**: project = RunMeter's evaluation images/s over the test loops `train()` runs; minimal =
  `inference_mode` forward over the same eval loader.

MFU = 3 x forward FLOPs/image x training images/s / peak (RunMeter's peak: measured fp32 matmul on CPU, table on GPU).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.callbacks import Callback

from models.bench.case import Case
from models.bench.minimal import Minimal, pipeline_rate
from models.complexity import profile
from models.network import Net
from models.train.callbacks import RunMeter, synced_now
from models.train.run import train
from models.utils.hydra import compose
from models.utils.system import load_average

REPO = Path(__file__).resolve().parents[2]
DEFAULT_CIFAR = REPO.parent / "shared" / "data" / "cifar10"
COLUMNS = ["model", "data", "size", "batch", "precision", "channels_last", "compile", "img/s project",
           "img/s minimal", "ratio", "img/s graph loop", "ratio to graphs", "MACs", "GFLOPs", "MFU", "infer img/s",
           "infer img/s minimal", "pipeline img/s"]


@dataclass
class SpeedResult:
    """One benchmark case measured: project and minimal windows, rates, MACs, MFU and the load around it."""

    case: Case
    data_label: str = ""
    size: int = 0
    project: float = 0.0
    minimal: float = 0.0
    project_windows: list[float] = field(default_factory=list)
    minimal_windows: list[float] = field(default_factory=list)
    project_spans: list[tuple[float, float]] = field(default_factory=list)  # (start, end) perf_counter of windows
    minimal_spans: list[tuple[float, float]] = field(default_factory=list)
    minimal_steps: int = 0  # optimizer steps the eager reference loop took
    minimal_loss: float | None = None  # its last loss (it trains: finite, and falling over a long run)
    minimal_compiled: bool = False  # the eager reference loop must stay eager
    graph: float | None = None  # the minimal loop as CUDA graphs (GPU only)
    graph_windows: list[float] = field(default_factory=list)
    runmeter: float | None = None
    pipeline: float = 0.0
    infer_project: float | None = None
    infer_minimal: float = 0.0
    macs: int = 0
    flops: int = 0
    mfu: float | None = None
    data_wait_frac: float | None = None
    peak_flops: float | None = None
    load_before: float = 0.0
    load_after: float = 0.0

    @property
    def ratio(self) -> float:
        return self.project / self.minimal if self.minimal else float("nan")

    @property
    def paired_ratio(self) -> float:
        """Median over window pairs (project window j, then minimal window j, back to back): robust to drift."""
        pairs = [p / m for p, m in zip(self.project_windows, self.minimal_windows) if m]
        return statistics.median(pairs) if pairs else float("nan")

    def cells(self) -> dict[str, Any]:
        c = self.case
        return {"model": c.model, "data": self.data_label, "size": self.size, "batch": c.batch,
                "precision": c.precision, "channels_last": c.channels_last, "compile": c.compile,
                "img/s project": _r(self.project), "img/s minimal": _r(self.minimal),
                "ratio": round(self.ratio, 3), "img/s graph loop": None if self.graph is None else _r(self.graph),
                "ratio to graphs": None if not self.graph else round(self.project / self.graph, 3),
                "MACs": self.macs, "GFLOPs": round(self.flops / 1e9, 3),
                "MFU": None if self.mfu is None else round(self.mfu, 4),
                "infer img/s": None if self.infer_project is None else _r(self.infer_project),
                "infer img/s minimal": _r(self.infer_minimal), "pipeline img/s": _r(self.pipeline)}


def _r(x: float) -> float:
    """1 decimal for big rates, 3 significant digits for slow ones (vgg16 at 224 on a CPU: ~0.5 img/s)."""
    return round(x, 1) if abs(x) >= 10 else float(f"{x:.3g}")


# ---------------------------------------------------------------------------------------------- data
def synthetic_cifar(workdir: Path, n_train: int) -> Path:
    """CIFAR-format pickles (real file format, generated pixels) for machines without the real copy."""
    from data.synthetic import write_cifar

    root = workdir / f"synthetic_cifar_{n_train}"
    if not (root / "cifar-10-batches-py").is_dir():
        write_cifar(root, n_train=n_train, n_test=max(200, n_train // 10))
    return root


def image_tree(workdir: Path, n_train: int, side: int = 256, classes: int = 10) -> Path:
    """A small ImageFolder tree of real JPEG/PNG files (generated pixels, ImageNet-like sizes)."""
    from data.synthetic import write_image_folder

    per_class = max(1, -(-n_train // classes))
    root = workdir / f"tree_{classes}x{per_class}_{side}px"
    if not (root / "train").is_dir():
        wnids = [f"n{i:08d}" for i in range(classes)]
        write_image_folder(root, wnids, {"train": per_class, "val": 2}, size=(side + 20, side))
    return root


def data_overrides(case: Case, workdir: Path, cifar_root: Path | None) -> tuple[list[str], str]:
    """Hydra overrides selecting the case's datamodule (device-resident), and a label for the table."""
    need = case.batch * (case.warmup + case.steps * case.repeats + 2)  # all timed steps inside one epoch
    if case.data == "folder":
        size = case.image_size or 224
        root = image_tree(workdir, need, side=int(size * 1.143) + 8)
        return ["data=imagefolder", f"data.root={root}", "data.cache=true", f"data.cache_dir={workdir / 'cache'}",
                "data.verify=false", f"data.image_size={size}"], "folder+cache"
    if case.data == "digits":
        return ["data=digits", f"data.image_size={case.image_size or 32}", "data.device_resident=true"], "digits"
    label = "cifar10"
    if case.data == "cifar10" and cifar_root is not None and (cifar_root / "cifar-10-batches-py").is_dir():
        root = cifar_root
    else:
        root, label = synthetic_cifar(workdir, max(need + 500, 1000)), "synthetic-cifar"
    return ["data=cifar10", f"data.root={root}", "data.verify=false", "data.device_resident=true",
            f"data.image_size={case.image_size or 32}"] + (["data.val_size=500"] if label != "cifar10" else []), label


# ---------------------------------------------------------------------------------------------- the project path
class StepClock(Callback):
    """A timestamp at every training batch end of the project run: (epoch, batch_idx, end, images, restart), and an
    optional `between(j)` run at window boundaries (the minimal loops' windows, interleaved with the project's). The
    hook's time is excluded from every measurement, RunMeter's included (`RunMeter.paused`). A window boundary
    synchronises the device: its images/s are exact on a GPU too."""

    def __init__(self, plan: tuple[int, int, int], between: Callable[[int], None] | None = None) -> None:
        self.plan = plan  # warmup, steps per window, windows
        self.between = between
        self.ticks: list[tuple[int, int, float, int, float]] = []

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        warmup, steps, windows = self.plan
        done = len(self.ticks) + 1
        boundary = done >= warmup and (done - warmup) % steps == 0 and (done - warmup) // steps <= windows
        end = synced_now(trainer) if boundary else time.perf_counter()
        restart = end
        if self.between is not None and boundary:
            meter = next(c for c in trainer.callbacks if isinstance(c, RunMeter))
            with meter.paused(trainer):
                self.between((done - warmup) // steps)
            restart = synced_now(trainer)  # the next step is timed from here
        self.ticks.append((trainer.current_epoch, batch_idx, end, int(batch[0].shape[0]), restart))


def window_rates(ticks: list[tuple[int, int, float, int, float]], warmup: int, steps: int,
                 windows: int | None = None) -> list[float]:
    """images/s of window j = steps warmup+(j-1)*steps+1 .. warmup+j*steps (1-based). A step's time runs from the
    previous step's end (or the end of the hook run after it) to its own; it counts only when both steps are
    consecutive batches of one epoch (the first step of an epoch pays for validation, checkpoints and a new
    iterator: excluded, as RunMeter does)."""
    out = []
    j = 1
    while warmup + j * steps <= len(ticks) and (windows is None or j <= windows):
        images = seconds = 0.0
        for k in range(warmup + (j - 1) * steps + 1, warmup + j * steps + 1):  # 1-based step numbers
            if k < 2:
                continue
            (e0, b0, _, _, t0), (e1, b1, t1, n1, _) = ticks[k - 2], ticks[k - 1]
            if e0 == e1 and b1 == b0 + 1:
                images, seconds = images + n1, seconds + (t1 - t0)
        if seconds > 0:
            out.append(images / seconds)
        j += 1
    return out


def window_spans(ticks: list[tuple[int, int, float, int, float]], warmup: int, steps: int, windows: int
                 ) -> list[tuple[float, float]]:
    """(start, end) of each project window: from the restart after its opening boundary to its last step's end."""
    return [(ticks[warmup + (j - 1) * steps - 1][4] if warmup + (j - 1) * steps >= 1 else ticks[0][2],
             ticks[warmup + j * steps - 1][2]) for j in range(1, windows + 1)]


def project_overrides(case: Case, data: list[str], run_dir: Path, logger: str, accelerator: str) -> list[str]:
    total = case.warmup + case.steps * case.repeats + 1
    trainer = "gpu" if accelerator == "gpu" else "cpu"
    return [f"model={case.model}", *data, f"data.batch_size={case.batch}", f"trainer={trainer}",
            f"trainer.precision={case.precision}", f"channels_last={str(case.channels_last).lower()}",
            f"compile={str(case.compile).lower()}", f"logger={logger}", f"trainer.max_steps={total}",
            "trainer.max_epochs=1", "trainer.limit_val_batches=0", f"trainer.limit_test_batches={case.eval_batches}",
            "trainer.num_sanity_val_steps=0", f"measure.warmup_steps={case.warmup}", "measure.parts=false",
            "summary=false", f"run_dir={run_dir}"]


def run_project(case: Case, overrides: list[str], between: Callable[[int], None] | None = None
                ) -> tuple[dict[str, Any], StepClock]:
    """The project's run of `case` through `train()`, watched by a StepClock (its public `callbacks` hook)."""
    clock = StepClock((case.warmup, case.steps, case.repeats), between)
    record = train(compose(overrides), overrides=overrides, callbacks=[clock])
    if record.get("status") != "finished":
        raise RuntimeError(f"project run did not finish: {record.get('status')} {record.get('error', '')}")
    return record, clock


# ---------------------------------------------------------------------------------------------- the minimal loop
# ---------------------------------------------------------------------------------------------- one case
def run_case(case: Case, workdir: Path, cifar_root: Path | None = DEFAULT_CIFAR, logger: str = "csv",
             log: Any = print, extra: list[str] | None = None) -> SpeedResult:
    accelerator = "gpu" if torch.cuda.is_available() else "cpu"
    device = torch.device("cuda" if accelerator == "gpu" else "cpu")
    data, label = data_overrides(case, workdir, cifar_root)
    run_dir = Path(tempfile.mkdtemp(prefix=f"{case.model}_", dir=workdir))
    overrides = project_overrides(case, data, run_dir, logger, accelerator) + list(extra or [])
    cfg = compose(overrides)
    row = SpeedResult(case=case, data_label=label, load_before=round(load_average(), 2))

    minimal = Minimal(cfg, case, device)
    graphs = Minimal(cfg, case, device, graphs=True) if device.type == "cuda" else None  # the CUDA-graph limit
    row.size = int(minimal.dm.image_size)
    with torch.device("meta"):  # counted on a weightless copy of the spec: never on a compiled module
        c = profile(Net(minimal.spec), row.size)
    row.macs, row.flops = int(c.macs), int(c.flops)
    row.pipeline = pipeline_rate(minimal.train_loader, 20, 5, device)

    log(f"[{case.model} b{case.batch} {case.precision} cl={case.channels_last} compile={case.compile} {label}] "
        f"project and minimal windows, interleaved ...")

    def between(j: int) -> None:  # inside the project's fit, at its window boundaries: A B C A B C ...
        with torch.inference_mode(False), torch.enable_grad():
            for loop, windows in ((minimal, row.minimal_windows), (graphs, row.graph_windows)):
                if loop is not None and j == 0:
                    loop.train_steps(max(case.warmup, 3 if loop is graphs else 0))  # graphs: record, then replay
                elif loop is not None:
                    windows.append(loop.train_steps(case.steps))
                    if loop is minimal:
                        row.minimal_spans.append(loop.spans[-1])

    record, clock = run_project(case, overrides, between)
    while len(row.minimal_windows) < case.repeats:  # only if the project run stopped early
        row.minimal_windows.append(minimal.train_steps(case.steps))
        row.minimal_spans.append(minimal.spans[-1])
    row.project_windows = window_rates(clock.ticks, case.warmup, case.steps, case.repeats)
    row.project_spans = window_spans(clock.ticks, case.warmup, case.steps, len(row.project_windows))
    if not row.project_windows:
        raise RuntimeError(f"no complete timed window in the project run ({len(clock.ticks)} steps recorded)")
    row.project = statistics.median(row.project_windows)
    row.runmeter = record.get("train/images_per_s")
    row.infer_project = record.get("eval/images_per_s")
    row.data_wait_frac = record.get("train/data_wait_frac")
    row.peak_flops = record.get("peak_flops")
    row.mfu = 3 * row.flops * row.project / row.peak_flops if row.peak_flops else None
    row.minimal = statistics.median(row.minimal_windows)
    row.minimal_steps, row.minimal_loss, row.minimal_compiled = minimal.steps_done, minimal.last_loss, \
        minimal.compiled()
    row.graph = statistics.median(row.graph_windows) if row.graph_windows else None
    row.infer_minimal = minimal.infer(max(2, case.eval_batches - 1))
    row.load_after = round(load_average(), 2)
    log(f"  project {row.project:,.1f} img/s (windows {[round(r, 1) for r in row.project_windows]}, RunMeter "
        f"{row.runmeter or 0:,.1f}), minimal {row.minimal:,.1f} img/s (windows "
        f"{[round(r, 1) for r in row.minimal_windows]}), ratio {row.ratio:.3f} (paired {row.paired_ratio:.3f})"
        + (f", CUDA-graph loop {row.graph:,.1f} img/s (ratio {row.project / row.graph:.3f})" if row.graph else "")
        + "; "
        f"load {row.load_before}->{row.load_after}")
    return row


# ---------------------------------------------------------------------------------------------- epoch comparison
def epoch_compare(cifar_root: Path, workdir: Path, model: str = "resnet20", batch: int = 128,
                  logger: str = "csv", log: Any = print) -> list[dict[str, Any]]:
    """One full training epoch (45k images) through train(): device-resident vs the per-image DataLoader path."""
    accelerator = "gpu" if torch.cuda.is_available() else "cpu"
    out = []
    for resident in (True, False):
        run_dir = Path(tempfile.mkdtemp(prefix=f"epoch_{'device' if resident else 'dataloader'}_", dir=workdir))
        overrides = [f"model={model}", "data=cifar10", f"data.root={cifar_root}", "data.verify=false",
                     f"data.batch_size={batch}", f"data.device_resident={str(resident).lower()}",
                     f"trainer={'gpu' if accelerator == 'gpu' else 'cpu'}", "trainer.max_epochs=1",
                     "trainer.limit_val_batches=0", "trainer.limit_test_batches=1", "checkpoint.every_n_steps=0",
                     f"logger={logger}", "summary=false", f"run_dir={run_dir}"]
        load0 = load_average()
        log(f"epoch of {model} on {cifar_root}, {'device-resident' if resident else 'per-image DataLoader'} ...")
        record, _ = run_project(Case(model=model, batch=batch), overrides)
        row = {"loader": "DeviceLoader (device-resident, batched aug)" if resident else
               f"torchvision DataLoader (per-image v2 transforms, {record.get('data/num_workers')} workers)",
               "images": record.get("data/train_size"), "steps": record.get("steps"),
               "epoch_time_s": record.get("epoch_time_s"), "train/images_per_s": record.get("train/images_per_s"),
               "train/data_wait_frac": record.get("train/data_wait_frac"), "load_before": round(load0, 2),
               "load_after": round(load_average(), 2)}
        log(f"  {row}")
        out.append(row)
    return out


# ---------------------------------------------------------------------------------------------- packed runs
def packed_rates(case: Case, jobs: int, workdir: Path, cifar_root: Path | None = DEFAULT_CIFAR,
                 logger: str = "none", log: Any = print, seconds: float = 60) -> dict[str, Any]:
    """The case's project run alone, then `jobs` copies at once on the same device (as hydra/launcher=local_gpus
    with jobs_per_gpu runs them: CPU threads split, one compile cache): aggregate images/s against one run's.
    Each run trains for `seconds` of wall time (trainer.max_time, constant learning rate), long after the compile
    and warm-up, so that the runs' MEASURED windows (RunMeter: first to last measured step) overlap; each run's rate
    is its own RunMeter measurement over its window. `overlap` = the time all measured windows share over the mean
    window (near 1: the aggregate is what the device delivered with every job in steady state at once)."""
    import os
    import subprocess
    import sys

    from models.train.records import read_results
    from models.utils.system import PACKED_ENV, cpu_count

    accelerator = "gpu" if torch.cuda.is_available() else "cpu"
    data, _ = data_overrides(case, workdir, cifar_root)

    def launch(n: int) -> list[dict[str, Any]]:
        env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(workdir / ".compile_cache"), PACKED_ENV: str(n),
               "OMP_NUM_THREADS": str(max(1, cpu_count() // n))}
        runs = []
        for _ in range(n):
            run_dir = Path(tempfile.mkdtemp(prefix=f"packed{n}_", dir=workdir))
            h, rest = divmod(int(seconds), 3600)
            long_run = ["trainer.max_steps=-1", "trainer.max_epochs=100000", "sched.name=constant",
                        f"trainer.max_time=00:{h:02d}:{rest // 60:02d}:{rest % 60:02d}", "trainer.limit_test_batches=1"]
            cmd = [sys.executable, str(REPO / "scripts" / "train.py"),
                   *project_overrides(case, data, run_dir, logger, accelerator), *long_run]
            runs.append((subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE), run_dir))
        records = []
        for proc, run_dir in runs:
            _, err = proc.communicate()
            record = read_results(run_dir) or {}
            if proc.returncode != 0 or record.get("status") != "finished":
                raise RuntimeError(f"packed run in {run_dir} failed: {err.decode()[-500:]}")
            records.append(record)
        return records

    log(f"[{case.model} b{case.batch}] one run alone, then {jobs} at once ...")
    single = launch(1)[0]["train/images_per_s"]
    records = launch(jobs)
    rates = [r["train/images_per_s"] for r in records]
    windows = [(r["train/measured_from"], r["train/measured_to"]) for r in records]
    shared = max(0.0, min(b for _, b in windows) - max(a for a, _ in windows))
    mean_window = statistics.fmean(b - a for a, b in windows)
    out = {"model": case.model, "batch": case.batch, "jobs": jobs, "single": single, "per_job": rates,
           "aggregate": sum(rates), "speedup": sum(rates) / single, "seconds": seconds, "windows": windows,
           "overlap": shared / mean_window if mean_window > 0 else 0.0}
    log(f"  {jobs} packed: {out['aggregate']:,.1f} img/s together vs {single:,.1f} alone "
        f"({out['speedup']:.2f}x; overlap {out['overlap']:.2f})")
    return out
