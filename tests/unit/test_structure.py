"""The layout the README promises, checked: the model core alone at the top of models/, every package on a floor of
the import contract (.importlinter, checked by `make lint`), short functions and modules (AST), one Hydra compose,
one machine description, one table writer, and test helpers imported only from tests/helpers."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from helpers.runs import REPO

MODEL_CORE = {"__init__", "errors", "spec", "layers", "network", "presets", "complexity", "timing", "memory"}
ROOMS = {"train", "analysis", "bench", "utils"}
MAX_FUNCTION_LINES, MAX_MODULE_LINES = 60, 400
CODE = sorted(p for d in ("models", "data", "scripts") for p in (REPO / d).rglob("*.py"))


def _rel(path: Path) -> str:
    return str(path.relative_to(REPO))


def test_models_top_level_is_the_model_core() -> None:
    top = REPO / "models"
    assert {p.stem for p in top.glob("*.py")} == MODEL_CORE
    assert {p.name for p in top.iterdir() if p.is_dir() and p.name != "__pycache__"} == ROOMS
    for room in ROOMS:
        assert (top / room / "__init__.py").is_file(), room


def _floors() -> list[str]:
    from configparser import ConfigParser

    parser = ConfigParser()
    parser.read(REPO / ".importlinter")
    floors = parser["importlinter:contract:floors"]["layers"]
    return [m.strip() for line in floors.splitlines() for m in re.split(r"[|:]", line) if m.strip()]


def test_every_module_stands_on_a_floor() -> None:
    """A module the floors contract does not name is checked by nothing: each top-level module and room of models/,
    and data/, must be on a floor."""
    floors = set(_floors())
    top = REPO / "models"
    expected = {f"models.{p.stem}" for p in top.glob("*.py") if p.stem != "__init__"} | {f"models.{r}" for r in ROOMS}
    assert expected | {"data"} <= floors, sorted(expected | {"data"} - floors)


@pytest.mark.parametrize("path", CODE, ids=_rel)
def test_short_functions_and_modules(path: Path) -> None:
    source = path.read_text()
    assert len(source.splitlines()) <= MAX_MODULE_LINES, f"{_rel(path)} has {len(source.splitlines())} lines"
    long = [(node.name, node.end_lineno - node.lineno + 1) for node in ast.walk(ast.parse(source))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]
    assert not long, f"{_rel(path)}: functions over {MAX_FUNCTION_LINES} lines: {long}"


def _calls(pattern: str) -> list[str]:
    return sorted({_rel(p) for p in CODE if re.search(pattern, p.read_text())})


def test_one_compose_and_one_machine_description() -> None:
    assert _calls(r"initialize_config_dir\(") == ["models/utils/hydra.py"]
    assert _calls(r"csv\.DictWriter\(|def markdown\(") == ["models/train/loggers.py", "models/utils/tables.py"]
    assert _calls(r"/proc/cpuinfo|get_device_name\(") == ["models/utils/system.py"]
    assert _calls(r"def (compose|machine|cpu_model)\(") == ["models/utils/hydra.py", "models/utils/system.py"]


def test_tests_import_helpers_not_each_other() -> None:
    tests = sorted((REPO / "tests").rglob("test_*.py"))
    assert {p.parent.name for p in tests} == {"unit", "integration", "reliability"}
    for path in tests:
        text = path.read_text()
        assert not re.search(r"^from (conftest|test_\w+) import", text, re.M), _rel(path)
        assert not re.search(r"^REPO = ", text, re.M), _rel(path)


def test_data_package_ships_no_test_helpers() -> None:
    assert not (REPO / "data" / "fixtures.py").exists()
    assert _calls(r"class TinyMLP|def smoke_fit") == []


def test_what_the_commands_write_into_the_checkout_is_ignored_by_git() -> None:
    """Runs, sweeps, Hydra outputs and reports (scripts/complexity.py, scripts/explain.py default to reports/)
    never show up in `git status`."""
    import subprocess

    paths = ["runs/x/results.json", "multirun/x/y", "outputs/x", "reports/complexity/complexity.md",
             "reports/explain/vgg16_resnet34/explain.json"]
    done = subprocess.run(["git", "check-ignore", *paths], cwd=REPO, capture_output=True, text=True)
    assert done.stdout.split() == paths
