"""The entry points run IN THIS PROCESS, through exactly the code a shell runs: `scripts/<name>.py` executed as
`__main__` (runpy) under its own argv and working directory, stdout and stderr captured, its exit status taken from
SystemExit. Saves the ~7 s of imports a subprocess pays per command; what only a real process shows (a traceback
that reaches the shell, the exit status the OS reports, signals) stays with the subprocess tests."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import runpy
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

from helpers.runs import SCRIPTS


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str
    seconds: float


@contextlib.contextmanager
def _isolated(argv: list[str], cwd: Path, env: dict[str, str]) -> object:
    """argv, cwd, environment, logging handlers and warning filters as they were, afterwards."""
    from hydra.core.global_hydra import GlobalHydra

    saved_argv, saved_cwd, saved_env = sys.argv[:], os.getcwd(), dict(os.environ)
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    # Hydra configures logging with dictConfig, which disables every logger that exists: give them back
    disabled = {name: lg.disabled for name, lg in logging.root.manager.loggerDict.items()
                if isinstance(lg, logging.Logger)}
    GlobalHydra.instance().clear()
    sys.argv = argv
    os.chdir(cwd)
    os.environ.update(env)
    try:
        with warnings.catch_warnings():
            yield
    finally:
        sys.argv = saved_argv
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
        for handler in root.handlers[:]:
            if handler not in saved_handlers:
                root.removeHandler(handler)
                handler.close()
        for handler in saved_handlers:
            if handler not in root.handlers:
                root.addHandler(handler)
        root.setLevel(saved_level)
        for name, was in disabled.items():
            logging.getLogger(name).disabled = was
        logging.captureWarnings(False)
        GlobalHydra.instance().clear()


def run_cli(script: str, args: list[str], cwd: Path, env: dict[str, str] | None = None) -> Result:
    """`python scripts/<script>.py *args` from `cwd`, in this process."""
    if str(SCRIPTS) not in sys.path:
        sys.path.insert(0, str(SCRIPTS))  # what `python scripts/x.py` puts first: `import _cli` works
    path = SCRIPTS / f"{script}.py"
    out, err = io.StringIO(), io.StringIO()
    code, t0 = 0, time.perf_counter()
    with _isolated([str(path), *args], cwd, env or {}), contextlib.redirect_stdout(out), \
            contextlib.redirect_stderr(err):
        try:
            runpy.run_path(str(path), run_name="__main__")
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return Result(code, out.getvalue(), err.getvalue(), time.perf_counter() - t0)
