"""What a run prints for people, and where everything else goes.

Console: one line per event — where the run lives and whether it starts or resumes, the progress bar, warnings a
user can act on, a one-line result (or the summary table), nothing twice. `<run dir>/train.log` keeps everything with
timestamps (Lightning's INFO messages, every warning, failures with their traceback). `verbose=true` (or `-v` on
scripts/train.py) puts everything back on the console.
"""

from __future__ import annotations

import logging
import re
import sys
import warnings
from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import Callback, RichProgressBar

log = logging.getLogger("models.train")
_OURS = ("models", "data", "hydra")  # loggers whose INFO lines are for people; others reach the console at WARNING+
# Warnings the project cannot act on, silenced at their source (message and module), never by category.
SILENCED = (
    (r"`isinstance\(treespec, LeafSpec\)` is deprecated", r"lightning\.pytorch\.utilities\._pytree"),
    (r"The `srun` command is available on your system but is not used", r"lightning\.fabric\..*"),
    (r"Checkpoint directory .* exists and is not empty", r"lightning\.pytorch\.callbacks\.model_checkpoint"),
    (r"Experiment logs directory .* exists and is not empty", r"lightning\.fabric\.loggers\.csv_logs"),
)


class ConsoleFilter(logging.Filter):
    """INFO from the project (and Hydra's launcher lines) plus every WARNING+; everything when verbose."""

    def __init__(self, verbose: bool = False) -> None:
        super().__init__()
        self.verbose = verbose

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "file_only", False):
            return False
        if self.verbose or record.levelno >= logging.WARNING:
            return True
        return record.name.split(".", 1)[0] in _OURS


class ConsoleFormatter(logging.Formatter):
    """Plain lines; warnings as one `warning: <message>` line (no source line, no path); Hydra's as `[HYDRA] ...`."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.name.startswith("hydra") and record.levelno < logging.WARNING:
            return f"[HYDRA] {message.strip()}"
        if record.name == "py.warnings":  # "path:line: Category: message\n  source" -> "Category: message"
            first = message.strip().splitlines()[0] if message.strip() else message
            message = re.sub(r"^.*?:\d+: ", "", first)
        if record.levelno >= logging.WARNING and not message.lower().startswith(("warning", "error")):
            message = f"warning: {message}"
        return " ".join(message.split()) if record.levelno >= logging.WARNING else message


class StdoutHandler(logging.StreamHandler):
    """Writes to whatever sys.stdout is at the time (pytest and other callers swap it)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stdout
        super().emit(record)


_HANDLERS: list[logging.Handler] = []


class LogFile(logging.FileHandler):
    """train.log. A write that fails (a full disk) ends the file's logging quietly: logging's default prints a
    traceback per message, while the run's next checkpoint or record write reports the disk in one line."""

    def handleError(self, record: logging.LogRecord) -> None:
        if isinstance(sys.exc_info()[1], OSError):
            self.setLevel(logging.CRITICAL + 1)
            return
        super().handleError(record)


def setup(run_dir: Path | None, verbose: bool = False) -> None:
    """Install (again) the project's two root handlers: the filtered console and `<run dir>/train.log`. Lightning's
    own console handler is removed (it printed every message a second time), and warnings go through logging."""
    root = logging.getLogger()
    for handler in root.handlers[:]:  # Hydra's or ours from an earlier run in this process
        root.removeHandler(handler)
    for handler in _HANDLERS:
        handler.close()
    _HANDLERS.clear()
    console = StdoutHandler(sys.stdout)
    console.addFilter(ConsoleFilter(verbose))
    console.setFormatter(ConsoleFormatter())
    _HANDLERS.append(console)
    if run_dir is not None:
        file = LogFile(run_dir / "train.log")
        file.setFormatter(logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"))
        _HANDLERS.append(file)
    for handler in _HANDLERS:
        root.addHandler(handler)
    root.setLevel(logging.INFO)
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        lg = logging.getLogger(name)
        for handler in lg.handlers[:]:
            lg.removeHandler(handler)
        lg.propagate = True
    logging.captureWarnings(True)
    silence(verbose)


def close_log_file() -> None:
    """Detach `<run dir>/train.log` (the run is over; later messages of this process are not its)."""
    root = logging.getLogger()
    for handler in [h for h in _HANDLERS if isinstance(h, logging.FileHandler)]:
        root.removeHandler(handler)
        handler.close()
        _HANDLERS.remove(handler)


def silence(verbose: bool) -> None:
    for message, module in SILENCED:
        warnings.filterwarnings("default" if verbose else "ignore", message=message, module=module)


def fmt(value: Any) -> str:
    """Numbers as people read them: 4 decimals below 10, thousands separators above."""
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 10 else f"{value:,.1f}"
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)


def _mmacs(macs: float | None) -> str:
    return "–" if macs is None else f"{macs / 1e6:,.1f} MMACs"


def _images(record: dict[str, Any]) -> str:
    """` (45,000/5,000/10,000 train/val/test images, 4,500/500/1,000 per class)`; a range where classes differ."""
    splits = [s for s in ("train", "val", "test") if record.get(f"data/{s}_per_class")]
    if not splits:
        return ""

    def per_class(counts: list[int]) -> str:
        return f"{min(counts):,}" if min(counts) == max(counts) else f"{min(counts):,}-{max(counts):,}"

    sizes = "/".join(f"{record[f'data/{s}_size']:,}" for s in splits)
    classes = "/".join(per_class(record[f"data/{s}_per_class"]) for s in splits)
    return f" ({sizes} {'/'.join(splits)} images, {classes} per class)"


def start_line(record: dict[str, Any], resume: dict[str, Any] | None, total_steps: int | None) -> str:
    """`resnet20 (269,722 params, 10.1 MMACs/image at 16 px) on digits: starting ...` or `... resuming ...`."""
    what = (f"{record['model']} ({record['params']:,} params, {_mmacs(record.get('macs'))}/image at "
            f"{record['data/image_size']} px) on {record['data']}{_images(record)}")
    length = f"{total_steps:,} steps" if total_steps else "open-ended"
    where = f"{record.get('hardware/device_type', '?')}, {record.get('precision', '?')}"
    if resume:
        return (f"{what}: resuming from {resume['path']} at epoch {resume['epoch']}, step {resume['step']:,} of "
                f"{length} ({where}) in {record['run_dir']}")
    return f"{what}: starting, {length} ({where}) in {record['run_dir']}"


def result_line(record: dict[str, Any]) -> str:
    """One line: the run's outcome and its headline numbers."""
    status = record["status"]
    if status == "diverged":
        return f"diverged at step {record.get('diverged_at_step')}: {record.get('error', '')}"
    parts = [f"test/acc {fmt(record['test/acc'])}" if record.get("test/acc") is not None else None,
             f"val/acc_best {fmt(record['val/acc_best'])}" if record.get("val/acc_best") is not None else None,
             f"{fmt(record['train/images_per_s'])} img/s" if record.get("train/images_per_s") else None,
             f"{record.get('steps', 0):,} steps in {record.get('wall_time_s', 0.0):.1f} s"]
    caveat = " (test = the val split that picked the checkpoint)" if record.get("data/val_is_test") else ""
    return f"{status}: " + ", ".join(p for p in parts if p) + caveat + f" -> {record['run_dir']}/results.json"


SUMMARY_KEYS = (("run", "run_dir"), ("status", "status"), ("model", "model"), ("data", "data"), ("params", "params"),
                ("MACs", "macs"), ("val/acc_best", "val/acc_best"), ("test/acc", "test/acc"),
                ("test/acc_top5", "test/acc_top5"), ("test_last/acc", "test_last/acc"),
                ("train images/s", "train/images_per_s"), ("epochs", "epochs"), ("wall time s", "wall_time_s"))


def summary_table(record: dict[str, Any]) -> str:
    rows = [(label, record.get(key)) for label, key in SUMMARY_KEYS]
    if record.get("data/test_source"):
        rows.append(("splits", f"val = {record.get('data/val_source')}, test = {record['data/test_source']}"))
    if record.get("data/val_is_test"):
        rows.append(("note", "test/acc is on the val split that also picked the checkpoint (data.val_size=0)"))
    if record.get("wandb_dir"):
        rows.append(("wandb", f"{record['wandb_dir']} (offline: wandb sync {record['wandb_dir']})"))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {fmt(v)}" for k, v in rows if v is not None)


def report(record: dict[str, Any], summary: bool) -> None:
    """The end of a run on the console: the summary table, or the one-line result."""
    log.info(summary_table(record) if summary else result_line(record))


class Announce(Callback):
    """Says, once the Trainer knows it, whether the run starts or resumes (from which checkpoint, epoch and step)
    and how many optimizer steps its schedule covers."""

    def __init__(self, record: Any) -> None:
        self.record = record  # the run's Recorder

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        if not trainer.is_global_zero:
            return
        resume = ({"path": trainer.ckpt_path, "epoch": trainer.current_epoch, "step": trainer.global_step}
                  if trainer.ckpt_path else None)
        self.record.update({"resumed_at_step": trainer.global_step if resume else None})
        log.info(start_line(self.record.data, resume, getattr(pl_module, "total_steps", None)))
        if self.record.data.get("time/reliable") is False:
            log.warning("warning: per-part times unreliable on this busy machine (results.json time/problems; "
                        "reports mark them ‡): time them alone with scripts/complexity.py measure=true")


class ProgressBar(RichProgressBar):
    """Lightning's rich bar, one line on an 80-column terminal: description, a short bar, batches, elapsed time and
    the epoch's metrics under short names (no logger version, no per-step values: those would cost a device sync on
    every step). The epoch's training loss is the epoch that just ended (Lightning calls callbacks' epoch-end hooks
    before the module's, which logs it: the bar asks the module itself). Off a terminal (logs, CI) it is drawn once
    per bar, 132 columns wide."""

    SHOWN = {"train/loss_epoch": "loss", "val/acc": "val", "val/acc_best": "best"}

    def __init__(self, width: int | None = None, file: Any = None, refresh_rate: int = 1) -> None:
        kwargs: dict[str, Any] = {} if file is None else {"file": file}
        if width or not sys.stdout.isatty():
            kwargs["width"] = width or 132
        super().__init__(refresh_rate=refresh_rate, console_kwargs=kwargs or None)
        self._epoch_loss: tuple[int, float] | None = None

    def configure_columns(self, trainer: Any) -> list:
        from lightning.pytorch.callbacks.progress.rich_progress import BatchesProcessedColumn, CustomBarColumn
        from rich.progress import TextColumn, TimeElapsedColumn

        return [TextColumn("[progress.description]{task.description}"),
                CustomBarColumn(bar_width=12, complete_style=self.theme.progress_bar,
                                finished_style=self.theme.progress_bar_finished,
                                pulse_style=self.theme.progress_bar_pulse),
                BatchesProcessedColumn(style=self.theme.batch_progress), TimeElapsedColumn()]

    def get_metrics(self, trainer: Any, pl_module: Any) -> dict[str, Any]:
        metrics = trainer.progress_bar_metrics
        shown = {short: f"{float(metrics[key]):.3f}" for key, short in self.SHOWN.items() if key in metrics}
        if self._epoch_loss is not None and self._epoch_loss[0] == trainer.current_epoch:
            shown["loss"] = f"{self._epoch_loss[1]:.3f}"
        return {k: shown[k] for k in ("loss", "val", "best") if k in shown}

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        loss = pl_module.epoch_train_loss() if hasattr(pl_module, "epoch_train_loss") else None  # every rank
        self._epoch_loss = (trainer.current_epoch, loss) if loss is not None else None
        super().on_train_epoch_end(trainer, pl_module)

    def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
        super().on_fit_end(trainer, pl_module)
        self.disable()  # the test passes after training take a second; the result line says what they found

    def _get_train_description(self, current_epoch: int) -> str:
        """`Epoch 1/3` .. `Epoch 3/3` (Lightning counts from 0: `Epoch 0/2`, and `Epoch 0/0` for a one-epoch run)."""
        total = self.trainer.max_epochs
        text = f"Epoch {current_epoch + 1}/{total}" if total and total > 0 else f"Epoch {current_epoch + 1}"
        return f"{text:{len(self.validation_description)}}"  # as wide as the validation bar's: no flicker

    def _stop_progress(self) -> None:
        if not self._progress_stopped:  # stopping a stopped live display prints an empty line each time
            super()._stop_progress()
