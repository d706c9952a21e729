"""Run records grouped into configurations: one `Configuration` per set of config values, its runs (every status),
the grid jobs with no record yet (`missing`), and the statistics over its seeds.

Reads only `results.json` files (JSON; never checkpoints, never pickles) or the same fields from the wandb API.
A configuration is everything in a run's config keys (`model*`, `data*`, `optim/*`, ...) except `seed` and the noise
keys of `configs/ablation/_sweep.yaml`.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from models.analysis.ablation import SEED, job_identity, noise_keys
from models.errors import ConfigError
from models.train.records import RESULTS, read_results_or_why
from models.utils.tables import cell

CONFIG_KEYS = ("model", "data", "optim", "sched", "trainer", "precision", "label_smoothing", "experiment", "ablation")
# Record keys under data/ that describe where/how data was read, not what was trained on.
DATA_NOISE = ("data/root", "data/num_workers", "data/download", "data/verify", "data/cache", "data/cache_dir",
              "data/device_resident", "data/source", "data/batch_size_per_device")
# The columns readers look for first; other varied keys are shown only when these do not already determine them.
HEADLINE = ("ablation/variant", "data", "data/image_size", "model", "model/stem", "model/block", "model/residual",
            "model/head", "model/depth")
STATUSES = ("finished", "diverged", "failed", "running", "missing")
ACC = "test/acc"


def _hashable(value: Any) -> Any:
    return json.dumps(value, sort_keys=True)


def is_config_key(key: str) -> bool:
    noise = {k.replace(".", "/") for k in noise_keys()} | set(DATA_NOISE)
    return key != SEED and key not in noise and any(key == p or key.startswith(p + "/") for p in CONFIG_KEYS)


@dataclass
class Configuration:
    """One configuration: its config values, its runs (all statuses) and how many expected runs are missing."""

    config: dict[str, Any]
    runs: list[dict[str, Any]] = field(default_factory=list)
    missing: int = 0
    label: str = ""
    order: float = math.inf  # position of its first job in the grid (grid order in tables)
    planned: dict[str, Any] = field(default_factory=dict)  # accounting-code values when no run exists yet

    def value(self, key: str) -> Any:
        """A per-configuration quantity (params, MACs, ...): the same in every run, so the first one recorded."""
        return next((r[key] for r in self.runs if r.get(key) is not None), self.planned.get(key))

    def finished(self) -> list[dict[str, Any]]:
        return [r for r in self.runs if r.get("status") == "finished"]

    def stat(self, key: str) -> tuple[float | None, float | None, int]:
        """Mean, sample std (n-1; None for n < 2) and n over the finished runs that recorded `key`."""
        values = [float(r[key]) for r in self.finished() if isinstance(r.get(key), (int, float))]
        if not values:
            return None, None, 0
        return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None, len(values)

    def counts(self) -> dict[str, int]:
        out = {s: sum(r.get("status") == s for r in self.runs) for s in STATUSES}
        out["missing"] = self.missing
        out["other"] = len(self.runs) - sum(out[s] for s in STATUSES if s != "missing")
        return out



# ------------------------------------------------------------------------------------------------- reading runs
def load_runs(root: str | Path) -> list[dict[str, Any]]:
    """Every readable `results.json` under `root` (a sweep dir or a single run dir)."""
    return read_tree(root)[0]


def read_tree(root: str | Path) -> tuple[list[dict[str, Any]], list[tuple[Path, str]]]:
    """(every readable `results.json` under `root`, [(path, why) of each one that cannot be read]): a report counts
    only the first and names the second."""
    records, skipped = [], []
    for path in sorted(Path(root).rglob(RESULTS)):
        record, why = read_results_or_why(path)
        if record is None:
            skipped.append((path, why))
            continue
        record.setdefault("run_dir", str(path.parent))
        record[SOURCE] = str(path)  # where it was read (its CSV history sits beside it); never written back
        records.append(record)
    return records, skipped


SOURCE = "_source"
HISTORY = Path("csv") / "metrics.csv"


def epoch_history(record: Mapping[str, Any]) -> list[tuple[int, float | None, float | None]]:
    """(epoch, train top-1, validation top-1) of each epoch, from the run's CSV history beside its results.json
    ([] without one): what a training curve is drawn from (results.json keeps only the validation points)."""
    import csv

    source = record.get(SOURCE)
    path = Path(source).parent / HISTORY if source else None
    if path is None or not path.is_file():
        return []
    by_epoch: dict[int, dict[str, float]] = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            for key in ("train/acc", "val/acc"):
                if row.get(key) and row.get("epoch"):
                    by_epoch.setdefault(int(row["epoch"]), {})[key] = float(row[key])
    return [(e, v.get("train/acc"), v.get("val/acc")) for e, v in sorted(by_epoch.items())]


def _flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and not (set(v) == {"value"} or set(v) >= {"desc", "value"}):
            out.update(_flatten(v, key + "/"))
        else:
            out[key] = v["value"] if isinstance(v, Mapping) and "value" in v else v
    return out


WANDB_STATES = {"finished": "finished", "running": "running", "crashed": "failed", "failed": "failed",
                "killed": "failed"}


def from_wandb(summary: Mapping[str, Any], config: Mapping[str, Any], state: str = "finished",
               name: str = "") -> dict[str, Any]:
    """A results.json-shaped record from a wandb run's summary and config (nested dicts flattened with "/").
    The summary wins (it carries our final `status`); wandb's run state is the fallback status."""
    record = _flatten(config)
    record.update({k: v for k, v in _flatten(summary).items() if not k.startswith("_")})
    record.setdefault("status", WANDB_STATES.get(state, "failed"))
    record.setdefault("run_dir", f"wandb:{name}")
    return record


def fetch_wandb(path: str, ablation: str | None = None) -> list[dict[str, Any]]:
    """Records of the runs of `ENTITY/PROJECT` (only those of `ablation` if given) via wandb's public API."""
    import wandb

    if path.count("/") != 1:
        raise ConfigError(f"--wandb {path!r} must be ENTITY/PROJECT, e.g. --wandb my-team/vgg-vs-resnet")
    runs = wandb.Api().runs(path, filters={"group": ablation} if ablation else None)  # train.py: group = ablation
    return [from_wandb(dict(r.summary_metrics), dict(r.config), r.state, r.name) for r in runs]


# ------------------------------------------------------------------------------------------------- grouping
def _label(overrides: Iterable[str], common: Mapping[str, str] | None = None) -> str:
    """`model=plain20 model.head=gap +ablation/variant=vgg16_gap` -> 'plain20 head=gap vgg16_gap' (seed, noise and
    the overrides `common` to every run left out)."""
    parts = []
    for key, value in job_identity(overrides, drop_seed=True).items():
        if common and common.get(key) == value:
            continue
        if "." in key:
            parts.append(f"{key.rsplit('.', 1)[1]}={value}")
        else:  # a config-group choice (model=, data=, ablation/variant=) reads best as its bare value
            parts.append(value)
    return " ".join(parts) or "all"


def _config(record: Mapping[str, Any], overrides: Mapping[str, str]) -> dict[str, Any]:
    """A run's configuration: its recorded config keys, plus the overrides results.json has no key for
    (`optim.lr=0.01` -> `optim/lr`, `+ablation/variant=vgg16_gap` -> `ablation/variant`). Seed and noise excluded."""
    config = {k: v for k, v in record.items() if is_config_key(k)}
    for key, value in overrides.items():
        key = key.replace(".", "/")
        if key not in record and is_config_key(key):
            config[key] = value
    return config


def group_runs(records: Sequence[Mapping[str, Any]], jobs: Sequence[Sequence[str]] | None = None,
               plan: Callable[[Sequence[str]], dict[str, Any]] | None = None) -> list[Configuration]:
    """Rows in grid order (when `jobs`, the expected overrides of each job, is given), then by label.

    Expected jobs with no record become `missing` in the row of the same configuration, or in a row of their own
    when no seed of that configuration has run: its config from `plan(job)` (what the job would train, see
    `models.ablation.planned`) or else from the job's overrides."""
    identities = [job_identity(rec.get("overrides") or []) for rec in records]  # parsed once per record
    every = [job_identity(job) for job in jobs] if jobs else identities
    common = dict(set.intersection(*(set(i.items()) for i in every))) if every else {}
    rows: dict[str, Configuration] = {}
    row_of: list[str] = []  # each record's row key
    for rec, ident in zip(records, identities):
        config = _config(rec, ident)
        row_of.append(_hashable(config))
        row = rows.setdefault(row_of[-1], Configuration(config))
        row.runs.append(dict(rec))
        row.label = row.label or _label(rec.get("overrides") or [], common)
    items = [frozenset(i.items()) for i in identities]
    exact: dict[frozenset, str] = {}  # seedless identity -> the first row holding it
    for i, key in zip(identities, row_of):
        exact.setdefault(frozenset((k, v) for k, v in i.items() if k != SEED), key)

    for index, job in enumerate(jobs or []):
        want = frozenset(job_identity(job).items())
        ran = any(want <= i for i in items)
        same_config = job_identity(job, drop_seed=True)
        sibling = exact.get(frozenset(same_config.items())) or next(
            (key for i, key in zip(items, row_of) if frozenset(same_config.items()) <= i), None)
        if sibling is not None:
            row = rows[sibling]
            if row.order == math.inf:
                row.label = _label(job, common)
        else:  # nothing of this configuration ran: a row of its own
            key = "missing:" + _hashable(same_config)
            if key not in rows:
                values = plan(job) if plan else {}
                rows[key] = Configuration(_config(values, same_config), label=_label(job, common), planned=values)
            row = rows[key]
        row.order = min(row.order, index)
        row.missing += 0 if ran else 1
    return sorted(rows.values(), key=lambda r: (r.order, r.label))


def varied_columns(rows: Sequence[Configuration]) -> list[str]:
    """Config keys whose values differ across rows: the headline knobs, then any other varied key not already
    determined by the columns chosen so far (e.g. `model/depths` follows from `model`)."""
    keys = list(dict.fromkeys(k for row in rows for k in row.config))
    # A key absent from a row is a difference only where the row's record is complete: failed runs may stop before
    # recording their config, and rows of missing runs know only what the grid and the accounting code say.
    complete = [r for r in rows if any(run.get("status") != "failed" for run in r.runs)]
    varied = [k for k in keys if len({_hashable(r.config[k]) for r in rows if r.config.get(k) is not None}
                                     | {_hashable(r.config.get(k)) for r in complete}) > 1]
    chosen = [k for k in HEADLINE if k in varied]
    for key in (k for k in varied if k not in chosen):
        seen: dict[str, str] = {}
        determined = True
        for r in rows:
            if key not in r.config:
                continue
            ident = _hashable([r.config.get(c) for c in chosen])
            if seen.setdefault(ident, _hashable(r.config[key])) != _hashable(r.config[key]):
                determined = False
        if not determined or not chosen:
            chosen.append(key)
    return chosen


def column_name(key: str, keys: Sequence[str] = ()) -> str:
    """Readable column header: `model/residual` -> 'residual', `data/image_size` -> 'image size' (full key on clash)."""
    short = key.rsplit("/", 1)[-1]
    if sum(k.rsplit("/", 1)[-1] == short for k in keys) > 1:
        short = key
    return short.replace("_", " ").replace("/", " ")


def config_without(row: Configuration, skip: Collection[str]) -> str:
    """A key for the row's configuration without the `skip` knobs: equal for rows that differ only in those."""
    return repr(sorted((k, repr(v)) for k, v in row.config.items() if k not in skip))


def _values(rows: Sequence[Configuration], key: str) -> list[str]:
    """The distinct values of `key` over the finished runs, in order."""
    runs = [run for r in rows for run in r.finished()]
    return list(dict.fromkeys(cell(run.get(key)) for run in runs if run.get(key) is not None))


def data_sources(rows: Sequence[Configuration]) -> list[str]:
    """Where each finished run read its data from, and whether the files were checked against the originals
    (`data.verify`: a re-encoded copy, like the JPEG-derived CIFAR-10 in ../shared, passes only unchecked)."""
    out = []
    for run in (run for r in rows for run in r.finished()):
        where = run.get("data/root") or run.get("data/source")
        if not where:
            continue
        checked = {True: "md5 checked", False: "NOT checked against the original files (data.verify=false)"}.get(
            run.get("data/verify"), "")
        out.append(f"{where}" + (f" ({checked})" if checked else ""))
    return list(dict.fromkeys(out))


def evaluated_images(rows: Sequence[Configuration]) -> str:
    """How many test images test/* was measured on, as the finished runs recorded it: "all 10,000 (1,000 per
    class)", or "128 of 10,000 (12-13 per class; a stratified part: trainer.limit_test_batches)"."""
    seen = []
    for run in (run for r in rows for run in r.finished()):
        images, size, per_class = run.get("test/images"), run.get("data/test_size"), run.get("test/images_per_class")
        if images is None:
            seen.append("not recorded (runs older than the count)")
            continue
        lo, hi = (min(per_class), max(per_class)) if per_class else (None, None)
        spread = "" if lo is None else f"{lo:,} per class" if lo == hi else f"{lo:,}-{hi:,} per class"
        if size is None or images >= size:
            seen.append(f"all {int(images):,}" + (f" ({spread})" if spread else ""))
        else:
            seen.append(f"{int(images):,} of {int(size):,} ({spread + '; ' if spread else ''}a stratified part: "
                        "trainer.limit_test_batches)")
    return " / ".join(dict.fromkeys(seen))


def context(rows: Sequence[Configuration]) -> str:
    """Hardware, epochs, data and precision as recorded by the (finished) runs themselves."""
    pairs = dict.fromkeys((run.get("data"), run.get("data/image_size")) for r in rows for run in r.finished())
    data = " / ".join(f"{d} at {s}x{s}" for d, s in pairs if d) or "–"
    parts = [f"hardware: {' / '.join(_values(rows, 'hardware/device')) or '–'}"
             f" ({' / '.join(_values(rows, 'hardware/device_type')) or '?'})",
             f"epochs: {' / '.join(_values(rows, 'epochs')) or '–'}", f"data: {data}",
             f"precision: {' / '.join(_values(rows, 'precision')) or '–'}"]
    tests = _values(rows, "data/test_source")
    if tests:
        parts.append(f"test split: {' / '.join(tests)}")
    evaluated = evaluated_images(rows)
    if evaluated:
        parts.append(f"test images evaluated: {evaluated}")
    sources = data_sources(rows)
    if sources:
        parts.append(f"data source: {' / '.join(sources)}")
    if "yes" in _values(rows, "data/val_is_test"):
        parts.append("CAVEAT: some runs report test on the val split that picked their checkpoint (data.val_size=0)")
    return "; ".join(parts)
