"""Run records on disk: atomic writes and `results.json` (the source of truth every report reads).

Crash safety: every file a later run trusts (results.json, last.ckpt, best.ckpt) is written to a temporary file in
the same directory, fsync'ed, then `os.replace`d over the old one. A kill at any moment leaves either the previous
good file or the new one, never a torn file. No torch import here: reports read records without loading torch.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

RESULTS = "results.json"
STATUSES = ("running", "finished", "diverged", "failed")
DONE = ("finished", "diverged")
_UMASK = os.umask(0)
os.umask(_UMASK)  # re-running such a run returns its record instead of training again


class Diverged(RuntimeError):
    """Training produced NaN/inf (loss, or weights/buffers about to be checkpointed) at `step` (optimizer steps)."""

    def __init__(self, step: int, what: str) -> None:
        super().__init__(f"{what} at step {step}: the run diverged (lower optim.lr or add sched.warmup_steps)")
        self.step = step


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp creates 0600; give the file normal permissions
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass


def _jsonable(obj: Any) -> Any:
    """Plain JSON: tensors/numpy scalars to numbers, tuples to lists, NaN/inf to null (JSON has no NaN)."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if hasattr(obj, "numel") and hasattr(obj, "tolist"):  # a torch tensor
        return _jsonable(obj.item() if obj.numel() == 1 else obj.tolist())
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalar
        return _jsonable(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    return str(obj)


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_bytes(Path(path), (json.dumps(_jsonable(obj), indent=2, sort_keys=False) + "\n").encode())


def read_results(path: str | Path) -> dict[str, Any] | None:
    """results.json of a run dir (or the file itself); None when absent or unreadable (treated as not run)."""
    path = Path(path)
    if path.is_dir():
        path = path / RESULTS
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def run_status(run_dir: str | Path) -> str | None:
    record = read_results(run_dir)
    return record.get("status") if record else None


def is_done(run_dir: str | Path) -> bool:
    return run_status(run_dir) in DONE
