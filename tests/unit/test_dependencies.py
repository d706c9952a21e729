"""Every private API of a library the project still relies on, each with a check that fails loudly when the library
changes it, and docs/dependencies.md generated from the same list (`make regen`: `render_table` below).

A private name stays only where no public one does the job; each row says why, where, and which behaviour tests
would also break. pyproject.toml bounds every such library below its next major version, and a test holds it to that.
"""

from __future__ import annotations

import ast
import inspect
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from helpers.runs import REPO


# ------------------------------------------------------------------ the checks (each asserts the private still works)
def sigterm_flag() -> None:
    import lightning.pytorch as pl

    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False)
    assert trainer._signal_connector.received_sigterm is False
    trainer._signal_connector.received_sigterm = True
    assert trainer.received_sigterm is True  # the public property the fit loop reads


def csv_log_dir_check() -> None:
    from lightning.pytorch.loggers.csv_logs import ExperimentWriter

    from models.train.loggers import _ResumableWriter

    init = "".join(inspect.getsource(vars(c)["__init__"]) for c in ExperimentWriter.__mro__
                   if c is not object and "__init__" in vars(c))
    assert "self._check_log_dir_exists()" in init  # where Lightning deletes an old metrics.csv
    assert "_check_log_dir_exists" in vars(_ResumableWriter)


def wandb_init_kwargs(tmp: Path) -> None:
    from lightning.pytorch.loggers import WandbLogger

    logger = WandbLogger(save_dir=str(tmp), offline=True)
    assert isinstance(logger._wandb_init, dict) and "anonymous" in logger._wandb_init
    assert logger._experiment is None  # not started until .experiment is read


def subprocess_launcher() -> None:
    from lightning.fabric.plugins.environments import LightningEnvironment
    from lightning.pytorch.strategies.launchers.subprocess_script import _SubprocessScriptLauncher

    launcher = _SubprocessScriptLauncher(LightningEnvironment(), num_processes=2, num_nodes=1)
    assert launcher.procs == [] and callable(launcher.kill)


def fit_loop_validation_rule() -> None:
    import lightning.pytorch as pl
    from lightning.pytorch.loops import _FitLoop, _TrainingEpochLoop

    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False)
    assert hasattr(trainer.fit_loop, "_data_fetcher") and isinstance(trainer.fit_loop, _FitLoop)
    rule = _TrainingEpochLoop._should_check_val_fx
    assert list(inspect.signature(rule).parameters) == ["self", "data_fetcher"]


def rich_bar_internals() -> None:
    from lightning.pytorch.callbacks import RichProgressBar

    bar = RichProgressBar()
    assert bar._progress_stopped is False
    assert callable(RichProgressBar._stop_progress)
    assert list(inspect.signature(RichProgressBar._get_train_description).parameters) == ["self", "current_epoch"]
    assert "self._get_train_description(" in inspect.getsource(RichProgressBar)  # where the bar asks for it


def csv_writer_filesystem() -> None:
    from lightning.pytorch.loggers.csv_logs import ExperimentWriter

    writer = ExperimentWriter.__new__(ExperimentWriter)
    ExperimentWriter.__init__(writer, "/tmp/vgg_vs_resnet_dependency_check")
    assert callable(writer._fs.makedirs)


def module_compiled_flag() -> None:
    import torch

    net = torch.nn.Linear(1, 1)
    assert net._compiled_call_impl is None
    net.compile()
    assert net._compiled_call_impl is not None


def sympy_logger() -> None:
    import torch.utils._sympy.interp as interp

    assert interp.log.name.startswith("torch.utils._sympy")  # the warnings gpu-check keeps off its console


def dynamo_counters() -> None:
    from torch._dynamo.utils import counters, guard_failures

    from models.train.graphs import CompileWatch

    assert isinstance(guard_failures, dict)
    for group in ("stats", "graph_break", "inductor"):
        assert hasattr(counters[group], "values")
    assert set(CompileWatch(None, False)._counts()) == {"graphs", "recompiles", "graph_breaks", "cudagraph_skips"}


def inductor_loggers() -> None:
    """Each logger the CUDA-graph skip reasons are heard on: its module exists and its artifact is registered."""
    import importlib

    from torch._logging._internal import log_registry

    from models.train.graphs import SKIP_LOGGERS

    for name in SKIP_LOGGERS:
        module, artifact = name.rsplit(".__", 1)
        importlib.import_module(module)
        assert artifact in log_registry.artifact_names, name


def storage_identity() -> None:
    import torch

    x = torch.empty(4, 4, device="meta")
    assert isinstance(x.untyped_storage()._cdata, int)
    assert x.untyped_storage()._cdata == x[1:].untyped_storage()._cdata  # a view shares its storage
    assert x.untyped_storage()._cdata != torch.empty(4, device="meta").untyped_storage()._cdata


def imagenette_tables() -> None:
    from torchvision.datasets import Imagenette

    assert set(Imagenette._ARCHIVES) == {"full", "320px", "160px"}
    assert all(url.startswith("https://") for url, _ in Imagenette._ARCHIVES.values())
    assert len(Imagenette._WNID_TO_CLASS) == 10


def hydra_error_reporter() -> None:
    import hydra._internal.utils as hydra_utils

    assert callable(hydra_utils.run_and_report)
    assert "run_and_report(" in inspect.getsource(hydra_utils._run_hydra)


def hydra_error_texts() -> None:
    from hydra.errors import ConfigCompositionException, MissingConfigException

    from helpers.runs import compose_train

    with pytest.raises(MissingConfigException, match=r"Could not find 'model/resnet21'"):
        compose_train(["model=resnet21"])
    with pytest.raises(ConfigCompositionException, match=r"Could not override 'trainer\.max_epoch'"):
        compose_train(["trainer.max_epoch=3"])


def hydra_job_return() -> None:
    from dataclasses import fields

    from hydra.core.utils import JobReturn

    assert "_return_value" in {f.name for f in fields(JobReturn)}
    assert isinstance(JobReturn.return_value, property) and JobReturn.return_value.fset is not None


def basic_sweeper_split() -> None:
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

    from models.analysis.ablation import grid

    assert callable(BasicSweeper.split_arguments)
    jobs = grid("residual_vs_plain_tiny")
    assert len(jobs) == 12 and sorted(jobs[0]) == ["model=plain20", "seed=0"]


def submitit_failure_text() -> None:
    from submitit.core.utils import FailedJobError

    from models.utils.slurm import cause

    sep = "\n" + "-" * 22 + "\n"
    error = FailedJobError(f"Job (task=0) failed during processing with trace:{sep}Traceback (most recent call last):"
                           f"\n  File x\nmodels.errors.TaskFailed: data.root=/nope not found{sep}You can check logs")
    assert cause(error) == "data.root=/nope not found"
    assert "with trace:" in inspect.getsource(sys.modules["submitit.core.core"])


@dataclass(frozen=True)
class Private:
    library: str
    name: str
    where: str  # our module
    why: str  # why no public API does it
    guards: str  # behaviour tests that break too
    check: Callable[..., None]


PRIVATE: list[Private] = [
    Private("lightning", "`Trainer._signal_connector.received_sigterm = True`", "models/train/preempt.py",
            "the one flag that makes the loops stop after the current batch and raise SIGTERMException (what a SIGTERM "
            "does); `trainer.received_sigterm` is read-only, `should_stop` ends the epoch instead",
            "tests/unit/test_preempt.py, tests/integration/test_slurm*.py", sigterm_flag),
    Private("lightning", "`_ExperimentWriter._check_log_dir_exists` (overridden)", "models/train/loggers.py",
            "Lightning's CSV writer deletes an existing metrics.csv there; a resumed run must keep its history",
            "tests/reliability/test_resume.py, test_crash.py (CSV history equal to an uninterrupted run)",
            csv_log_dir_check),
    Private("lightning", "`WandbLogger._wandb_init`, `WandbLogger._experiment`", "models/train/loggers.py",
            "drop the `anonymous` argument Lightning passes unasked (wandb warns); tell a started run from one that "
            "reading `.experiment` would start",
            "tests/integration/test_wandb.py", wandb_init_kwargs),
    Private("lightning", "`_SubprocessScriptLauncher.procs/.kill`", "models/train/run.py",
            "rank 0 failing kills the rank processes it started (no public handle on them)",
            "tests/reliability/test_ddp_faults.py", subprocess_launcher),
    Private("lightning", "`fit_loop._data_fetcher`, `_TrainingEpochLoop._should_check_val_fx`",
            "models/train/callbacks.py", "whether validation runs after this batch, by Lightning's own rule: a "
            "periodic checkpoint of such a batch would resume as if that validation had happened",
            "tests/reliability/test_crash.py (a kill during validation resumes identically)", fit_loop_validation_rule),
    Private("lightning", "`RichProgressBar._stop_progress`, `_progress_stopped`, `_get_train_description` "
            "(overridden)", "models/train/console.py", "one stop of the live display (each further stop prints an "
            "empty line); the bar's `Epoch k/n` text, counted from 1 (Lightning's reads `Epoch 0/0` for one epoch)",
            "tests/integration/test_console.py", rich_bar_internals),
    Private("lightning", "`ExperimentWriter._fs`", "models/train/loggers.py", "the filesystem Lightning's CSV "
            "writer writes through (local or remote), to create the log dir the same way it would",
            "tests/reliability/test_resume.py", csv_writer_filesystem),
    Private("torch", "`nn.Module._compiled_call_impl`", "models/bench/minimal.py", "whether `Module.compile()` "
            "was applied (no public flag)", "tests/integration/test_benchmark.py", module_compiled_flag),
    Private("torch", "logger name `torch.utils._sympy`", "models/bench/gpu_check.py", "the symbolic-shape "
            "warnings a compile prints by the dozen on torch 2.11 come only through that logger",
            "none (a rename brings the warnings back, harmless)", sympy_logger),
    Private("torch", "`torch._dynamo.utils.counters`, `guard_failures`", "models/train/graphs.py",
            "graphs compiled, recompiles, graph breaks and CUDA-graph skips of a run (recorded as compile/*); torch "
            "offers them nowhere else", "tests/reliability/test_crash.py, tests/unit/test_lightning.py",
            dynamo_counters),
    Private("torch", "Inductor logger names (`graphs.SKIP_LOGGERS`)", "models/train/graphs.py",
            "the reason Inductor gives for skipping CUDA graphs is only logged",
            "tests/unit/test_lightning.py::test_compile_watch_hears_cudagraph_skips_on_the_perf_hints_logger_too",
            inductor_loggers),
    Private("torch", "`UntypedStorage._cdata`", "models/memory.py",
            "the identity of a storage (meta tensors have no data pointer) to count each saved storage once",
            "tests/unit/test_memory.py (hand-counted bytes)", storage_identity),
    Private("torchvision", "`Imagenette._ARCHIVES`, `_WNID_TO_CLASS`", "data/folder.py, data/folder_tree.py",
            "the archive sizes, URLs and class names torchvision downloads from", "tests/unit/test_data_folder.py",
            imagenette_tables),
    Private("hydra-core", "`hydra._internal.utils.run_and_report` (replaced)", "scripts/_cli.py",
            "Hydra prints its errors over several lines there; ours are one line",
            "tests/reliability/test_bad_inputs.py (every row)", hydra_error_reporter),
    Private("hydra-core", "error texts `Could not find '...'`, `Could not override '...'`", "scripts/_cli.py",
            "Hydra's exceptions carry the option or key only in their text",
            "tests/reliability/test_bad_inputs.py rows unknown-preset, unknown-key, unknown-dataset",
            hydra_error_texts),
    Private("hydra-core", "`JobReturn._return_value`, `JobReturn.return_value` (patched)",
            "scripts/_cli.py, models/utils/launcher.py, models/utils/slurm.py",
            "a failed job's exception without Hydra's extra error line; a job's record without re-raising",
            "tests/reliability/test_bad_inputs.py, tests/integration/test_slurm*.py", hydra_job_return),
    Private("hydra-core", "`hydra._internal.core_plugins.basic_sweeper.BasicSweeper.split_arguments`",
            "models/analysis/ablation.py", "a grid's jobs expanded exactly as `-m` expands them, without launching",
            "tests/unit/test_ablation.py", basic_sweeper_split),
    Private("submitit", "`FailedJobError` text (traceback between dashed lines)", "models/utils/slurm.py",
            "a failed task's cause is only in that text", "tests/integration/test_slurm*.py (failed task rows)",
            submitit_failure_text),
]

UPPER_BOUNDS = {"lightning": "<3", "torchmetrics": "<2", "hydra-core": "<2", "omegaconf": "<3",
                "hydra-submitit-launcher": "<2", "submitit": "<2", "torch": "<3", "torchvision": "<1", "wandb": "<1"}


# ------------------------------------------------------------------ the doc table
def render_table() -> str:
    lines = ["| library | private name | where | why no public API | also broken then |", "|---|---|---|---|---|"]
    lines += [f"| {p.library} | {p.name} | `{p.where}` | {p.why} | {p.guards} |" for p in PRIVATE]
    return "\n".join(lines)


# ------------------------------------------------------------------ tests
@pytest.mark.parametrize("private", PRIVATE, ids=[f"{p.library}:{p.check.__name__}" for p in PRIVATE])
def test_the_private_api_still_works(private: Private, tmp_path: Path) -> None:
    check = private.check
    check(tmp_path) if "tmp" in inspect.signature(check).parameters else check()


def test_no_other_private_import_from_a_library() -> None:
    """A new `from <library>._x import` / `<library>._x` anywhere in the code must be added to PRIVATE (and the doc)."""
    code = [p for d in ("models", "data", "scripts", "hydra_plugins") for p in (REPO / d).rglob("*.py")]
    found = set()
    for path in code:
        for match in re.finditer(r"\b(torch|lightning|hydra|torchvision|submitit|torchmetrics)((?:\.\w+)*?\._[a-z]\w*)",
                                 path.read_text()):
            found.add(match.group(1) + match.group(2))
    listed = " ".join(p.name for p in PRIVATE) + " " + " ".join(n for n in _logger_names())
    unlisted = sorted(f for f in found if f.split(".")[-1] not in listed and f not in listed)
    assert unlisted == [], f"private API used but not in tests/unit/test_dependencies.py PRIVATE: {unlisted}"


def _own_names(tree: ast.AST) -> set[str]:
    """Private names a module of ours defines (functions, classes, assignments, attributes it sets, imports)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.alias):
            names.add(node.asname or node.name.split(".")[-1])
        elif isinstance(node, ast.arg):
            names.add(node.arg)
    return names


def _private_reads(tree: ast.AST) -> set[str]:
    """Private attributes a module reads: `x._name` and `getattr(x, "_name"[, default])`."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            found.add(node.attr)
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("getattr", "hasattr")
              and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant)
              and str(node.args[1].value).startswith("_") and not str(node.args[1].value).startswith("__")):
            found.add(str(node.args[1].value))
    return found


def test_every_private_attribute_read_from_a_library_is_listed() -> None:
    """A private attribute the code reads (`obj._x`, `getattr(obj, "_x", None)`) that no module of ours defines
    belongs to a library: it must be a PRIVATE row, with a check, so that a rename fails a test instead of quietly
    switching a feature off."""
    code = [p for d in ("models", "data", "scripts", "hydra_plugins") for p in (REPO / d).rglob("*.py")]
    trees = {p: ast.parse(p.read_text()) for p in code}
    ours = set().union(*(_own_names(t) for t in trees.values()))
    listed = " ".join(p.name for p in PRIVATE) + " " + " ".join(_logger_names())
    unlisted = sorted({f"{name} ({path.relative_to(REPO)})" for path, tree in trees.items()
                       for name in _private_reads(tree) - ours if name not in listed})
    assert unlisted == [], f"private attributes read but not in PRIVATE: {unlisted}"


def test_every_private_method_of_a_library_we_override_is_listed() -> None:
    """Overriding a library class's private method depends on it as much as calling it."""
    import importlib
    import pkgutil

    import data
    import models

    listed = " ".join(p.name for p in PRIVATE)
    overrides = set()
    for package in (models, data):
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            module = importlib.import_module(info.name)
            for cls in vars(module).values():
                if not inspect.isclass(cls) or cls.__module__ != module.__name__:
                    continue
                for name in vars(cls):
                    if name.startswith("_") and not name.startswith("__") and name != "_abc_impl" and any(
                            name in vars(base) for base in cls.__mro__[1:]
                            if not base.__module__.startswith(("models", "data", "builtins"))):
                        overrides.add((f"{cls.__name__}.{name}", name))
    unlisted = sorted(full for full, name in overrides if name not in listed)
    assert unlisted == [], f"private methods of a library overridden but not in PRIVATE: {unlisted}"


def _logger_names() -> tuple[str, ...]:
    from models.train.graphs import SKIP_LOGGERS

    return (*SKIP_LOGGERS, "torch._dynamo", "torch._inductor", "torch._functorch")  # module.compiler_error: names


def test_every_library_with_a_private_use_is_bounded_below_its_next_major() -> None:
    text = (REPO / "pyproject.toml").read_text()
    for library, bound in UPPER_BOUNDS.items():
        assert re.search(rf'"{re.escape(library)}>=[\d.]+,{re.escape(bound)}"', text), f"{library}{bound} missing"
