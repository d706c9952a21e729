"""Shared by the entry points: bad input becomes ONE line on stderr and exit status 2.

Hydra reports composition errors (unknown config option, unknown key) over several lines with hints; ConfigError
from our own validation is already one line. Both go through `run_and_report` below, which replaces Hydra's: set
HYDRA_FULL_ERROR=1 for the full traceback.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import hydra._internal.utils as hydra_utils
from hydra.core.utils import JobReturn, JobStatus

from models.errors import ConfigError, TaskFailed

EXIT_BAD_INPUT = 2


def one_line(ex: BaseException) -> str:
    """A single line naming the key and the fix, from our ConfigError or Hydra's multi-line messages."""
    if isinstance(ex, (ConfigError, TaskFailed)):
        return str(ex)
    for cause in (ex, ex.__cause__, ex.__context__):
        if cause is not None and hasattr(cause, "problem_mark"):  # yaml.MarkedYAMLError (parser/scanner)
            return _yaml_message(cause)
    override = getattr(ex, "override", None)
    if type(ex).__name__ == "OverrideParseException" and override:
        detail = str(ex).split("\n")[0].replace("LexerNoViableAltException: ", "")
        return (f"override {override!r} is malformed ({detail}): write key=value, lists as key=[a,b], and quote "
                "values holding brackets, commas or spaces")
    if isinstance(ex, OSError) and ex.filename:
        return (f"cannot create or write {ex.filename} ({ex.strerror}): set hydra.run.dir (hydra.sweep.dir with -m) "
                "to a writable directory")
    text = str(ex)
    missing = re.search(r"Could not find '([^']+)'", text)
    if missing:
        options = [o for o in re.findall(r"^\t(\S+)$", text, flags=re.M) if not o.startswith("_")]  # _: includes
        group = missing.group(1).rsplit("/", 1)
        key = f"{group[0]}={group[1]}" if len(group) == 2 else missing.group(1)
        return f"{key} is not a known option: choose one of {', '.join(sorted(options))}" if options else \
            f"{key}: config not found under configs/"
    unknown = re.search(r"Could not override '([^']+)'", text)
    if unknown:
        key = unknown.group(1)
        if key.startswith("model.") and key.count(".") == 1:
            from models.spec import knob_names

            return f"unknown model knob {key.split('.', 1)[1]!r} in {key}: valid knobs are {', '.join(knob_names())}"
        return f"unknown key {key}: check the spelling (python scripts/<script>.py --cfg job lists the keys) " \
               f"or use +{key}=... to add a new one"
    cause = f" ({ex.__cause__})" if ex.__cause__ else ""
    first = " ".join(text.split())
    return f"{type(ex).__name__}: {first}{cause}"


def _yaml_message(ex: BaseException) -> str:
    mark = getattr(ex, "problem_mark", None) or getattr(ex, "context_mark", None)
    where = f"{mark.name}, line {mark.line + 1}, column {mark.column + 1}" if mark else "a YAML file"
    what = "; ".join(str(p) for p in (getattr(ex, "context", None), getattr(ex, "problem", None)) if p) or str(ex)
    return f"malformed YAML in {where} ({' '.join(what.split())}): fix the file's syntax (e.g. close brackets, " \
           "quote values containing ':' or '#')"


def run_and_report(func: Callable[[], Any]) -> Any:
    try:
        return func()
    except Exception as ex:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"error: {' '.join(one_line(ex).split())}", file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)


hydra_utils.run_and_report = run_and_report


def _job_return_value(self: JobReturn) -> Any:
    # Hydra writes "Error executing job with overrides: [...]" before re-raising: that would be a second line.
    if self.status == JobStatus.FAILED:
        raise self._return_value
    return self._return_value


JobReturn.return_value = property(_job_return_value, JobReturn.return_value.fset)
