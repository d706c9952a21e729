"""Metric loggers of a run (`logger=wandb|csv|none`): built from the config, started with the run's flat config
and per-layer table, finished with its record. wandb runs offline unless the user chose online."""

from __future__ import annotations

import csv
import os
import secrets
import string
from pathlib import Path
from typing import Any

import hydra
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment
from omegaconf import DictConfig, OmegaConf

from models.complexity import Complexity
from models.timing import ModelTiming
from models.train.records import with_path

WANDB_ID_FILE = "wandb_id.txt"


SUPERSEDED = "superseded.csv"


class _ResumableWriter(ExperimentWriter):
    """metrics.csv kept as the history up to the resumed checkpoint (its first `keep_rows` rows; None = all), later
    rows appended with the same columns. Rows an interrupted invocation wrote after that checkpoint are moved, not
    deleted, to superseded.csv: the resumed run logs those steps again."""

    def __init__(self, log_dir: str, keep_rows: int | None) -> None:
        self._keep_rows, self.rows = keep_rows, 0
        super().__init__(log_dir)

    def _check_log_dir_exists(self) -> None:  # Lightning's deletes the old metrics.csv here
        path = Path(self.metrics_file_path)
        if not path.is_file():
            return
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            header, rows = list(reader.fieldnames or []), list(reader)
        keep = len(rows) if self._keep_rows is None else min(self._keep_rows, len(rows))
        if rows[keep:]:
            _append_rows(path.with_name(SUPERSEDED), header, rows[keep:])
        _write_rows(path, header, rows[:keep])
        self.metrics_keys, self.rows = header, keep

    def save(self) -> None:
        pending = len(self.metrics)
        try:
            super().save()
        except OSError as e:  # a full disk: the message must name the file (the resume truncates a torn row)
            raise with_path(e, self.metrics_file_path) from None
        self.rows += pending


def _write_rows(path: Path, header: list[str], rows: list[dict[str, str]]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def _append_rows(path: Path, header: list[str], rows: list[dict[str, str]]) -> None:
    old_header, old = [], []
    if path.is_file():
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            old_header, old = list(reader.fieldnames or []), list(reader)
    _write_rows(path, list(dict.fromkeys([*old_header, *header])), [*old, *rows])


class ResumableCSVLogger(CSVLogger):
    """Lightning's CSVLogger (`<run dir>/csv/metrics.csv`) that never loses history on a resume (see
    `_ResumableWriter`); `keep_rows` is the row count the resumed checkpoint recorded (0 for a fresh start)."""

    def __init__(self, *args: Any, keep_rows: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._keep_rows = keep_rows

    @property
    @rank_zero_experiment
    def experiment(self) -> _ResumableWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _ResumableWriter(self.log_dir, self._keep_rows)
        return self._experiment

    def rows_written(self) -> int:
        """Flush, then the number of rows in metrics.csv: what a checkpoint taken now covers."""
        self.save()
        return self.experiment.rows


def wandb_mode(offline: bool | None) -> str:
    """Offline unless the user chose online (WANDB_MODE in the environment or logger.wandb.offline=false)."""
    if offline is not None:
        return "offline" if offline else "online"
    env = os.environ.get("WANDB_MODE", "").lower()
    return env if env in ("online", "offline", "disabled") else "offline"


def _wandb_id(run_dir: Path) -> str:
    """The run's wandb id, kept in the run dir: a resumed run continues the same wandb run."""
    id_file = run_dir / WANDB_ID_FILE
    if not id_file.exists():
        alphabet = string.ascii_lowercase + string.digits  # wandb's own id alphabet and length
        id_file.write_text("".join(secrets.choice(alphabet) for _ in range(8)))
    return id_file.read_text().strip()


def _wandb(cfg: DictConfig, lcfg: dict[str, Any], run_dir: Path, run_name: str, record: dict[str, Any]) -> Any:
    """Lightning's WandbLogger: offline by default, silent unless verbose (the run prints its own wandb line)."""
    group = cfg.get("ablation") or cfg.experiment
    tags = sorted({str(t) for t in [cfg.experiment, *(cfg.get("tags") or []), record["model"], record["data"],
                                    *([cfg.ablation] if cfg.get("ablation") else [])]})
    # `mode` instead of Lightning's `offline`, which would set WANDB_MODE for the rest of the process.
    mode = wandb_mode(lcfg.pop("offline", None))
    lcfg["settings"] = {"silent": not cfg.get("verbose", False), **(lcfg.get("settings") or {})}
    # _convert_="all": wandb.init ignores a DictConfig `settings` (it took neither `console` nor `silent` from one)
    logger = hydra.utils.instantiate(lcfg, _convert_="all", offline=False, mode=mode, save_dir=str(run_dir),
                                     id=_wandb_id(run_dir), name=run_name, group=str(group), tags=tags[:64],
                                     resume="allow")
    logger._wandb_init.pop("anonymous", None)  # Lightning passes it unasked; wandb warns it has no effect
    return logger


def build_loggers(cfg: DictConfig, run_dir: Path, run_name: str, record: dict[str, Any],
                  resume: dict[str, Any] | None = None) -> list[Any]:
    """The loggers of `logger.*`; `resume` holds what the resumed checkpoint recorded (e.g. its CSV row count)."""
    loggers: list[Any] = []
    for key, lcfg in (cfg.get("logger") or {}).items():
        lcfg = OmegaConf.to_container(lcfg, resolve=True)
        target = str(lcfg.get("_target_", ""))
        if target.endswith("WandbLogger"):
            loggers.append(_wandb(cfg, lcfg, run_dir, run_name, record))
        elif target.endswith("CSVLogger"):
            keep = resume.get("csv_rows") if resume else 0  # a fresh start: earlier rows belong to nothing
            loggers.append(hydra.utils.instantiate(lcfg, save_dir=str(run_dir), name=key, version="",
                                                   keep_rows=keep))
        elif target:
            loggers.append(hydra.utils.instantiate(lcfg))
    return loggers


def _wandb_runs(loggers: list[Any], started_only: bool = False) -> list[Any]:
    from lightning.pytorch.loggers import WandbLogger

    return [lg.experiment for lg in loggers if isinstance(lg, WandbLogger)
            and (not started_only or lg._experiment is not None)]


def wandb_start(loggers: list[Any], config: dict[str, Any], complexity: Complexity,
                timing: ModelTiming | None = None) -> str | None:
    """Flat config keys (model knobs, params, MACs, hardware), the per-layer table, the measured time per part,
    val/acc summarised as max. Returns the wandb run's local directory (None without wandb)."""
    where = None
    for run in _wandb_runs(loggers):
        import wandb

        # accuracy against compute: every validation point also logs train/pflops and train/wall_s (the recorder);
        # they are declared as x-axes, and val/* and test/* are plotted against training PFLOPs by default
        run.define_metric("train/pflops", summary="max")
        run.define_metric("train/wall_s", summary="max")
        run.define_metric("val/acc", summary="max", step_metric="train/pflops")
        run.define_metric("val/acc_best", summary="max", step_metric="train/pflops")
        for pattern in ("val/*", "test/*", "test_last/*"):
            run.define_metric(pattern, step_metric="train/pflops")
        run.config.update(config, allow_val_change=True)
        run.summary.update({k: v for k, v in config.items() if k in ("params", "macs", "flops", "trainable_params")})
        columns = ["name", "kind", "part", "params", "macs", "activations", "output_shape"]
        rows = [[layer.name, layer.kind, layer.part, layer.params, layer.macs, layer.activations,
                 "x".join(map(str, layer.output_shape))] for layer in complexity.layers]
        run.log({"complexity/layers": wandb.Table(columns=columns, data=rows)})
        if timing is not None:
            parts = [[p.name, p.fwd_ms, p.fwdbwd_ms, timing.share(p.name)] for p in timing.parts]
            run.log({"time/parts": wandb.Table(columns=["part", "fwd_ms", "fwdbwd_ms", "share"], data=parts)})
        where = str(Path(run.dir).parent)
    return where


def wandb_finish(loggers: list[Any], record: dict[str, Any]) -> None:
    for run in _wandb_runs(loggers, started_only=True):
        # val/* stay as logged: define_metric keeps val/acc's max there, the record has the last value
        run.summary.update({k: v for k, v in record.items() if v is not None and not k.startswith("val/")
                            and (isinstance(v, (int, float, str, bool)) or k.endswith("/images_per_class"))})
        run.finish(exit_code=0 if record.get("status") in ("finished", "running") else 1)
