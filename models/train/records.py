"""Run records on disk: atomic writes and `results.json` (the source of truth every report reads).

Crash safety: every file a later run trusts (results.json, last.ckpt, best.ckpt) is written to a temporary file in
the same directory, fsync'ed, then `os.replace`d over the old one. A kill at any moment leaves either the previous
good file or the new one, never a torn file. No torch import here: reports read records without loading torch.
"""

from __future__ import annotations

import errno
import json
import math
import os
import shutil
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
    """Write `data` to `path` atomically (see the module docstring); a failed write (a full disk) raises OSError
    naming `path`, and leaves the previous file as it was."""
    try:
        _atomic_write_bytes(path, data)
    except OSError as e:
        raise with_path(e, path) from None


def with_path(error: OSError, path: Path | str) -> OSError:
    """`error` naming `path` (a failed write() names no file: the message must)."""
    if error.filename:
        return error
    return type(error)(error.errno, error.strerror or str(error), str(path))


WRITE_ERRORS = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is used up",
                errno.EROFS: "the filesystem became read-only", errno.EIO: "the disk reported an I/O error",
                errno.EFBIG: "the file grew past the filesystem's limit"}


def write_failure(error: BaseException) -> str | None:
    """One line for a write that failed because of the disk (full, over quota, read-only, I/O error): the path, the
    space left there and what to do; None for any other error."""
    if not isinstance(error, OSError) or error.errno not in WRITE_ERRORS:
        return None
    path = Path(error.filename) if error.filename else None
    where = next((p for p in ([path, *path.parents] if path else []) if p.exists()), None)
    try:
        usage = shutil.disk_usage(where) if where else None
    except OSError:
        usage = None
    space = f"; {_size(usage.free)} free of {_size(usage.total)} there" if usage else ""
    target = f"cannot write {path}" if path else "a write failed"
    return (f"{target}: {WRITE_ERRORS[error.errno]} ({error.strerror}{space}): free space there, or give the run "
            "another disk (hydra.run.dir), then re-run the same command: it resumes from its last checkpoint, which "
            "a failed write never touches")


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def _atomic_write_bytes(path: Path, data: bytes) -> None:
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
    record, _ = read_results_or_why(path)
    return record


def read_results_or_why(path: str | Path) -> tuple[dict[str, Any] | None, str]:
    """(the record, "") or (None, why it cannot be read: missing, not JSON (where), not a JSON object)."""
    path = Path(path)
    if path.is_dir():
        path = path / RESULTS
    try:
        data = json.loads(path.read_text())
    except OSError as e:
        return None, e.strerror or str(e)
    except UnicodeDecodeError:
        return None, "not text"
    except ValueError as e:
        return None, f"not valid JSON: {e}"
    return (data, "") if isinstance(data, dict) else (None, f"holds a JSON {type(data).__name__}, not a record")


def run_status(run_dir: str | Path) -> str | None:
    record = read_results(run_dir)
    return record.get("status") if record else None


def is_done(run_dir: str | Path) -> bool:
    return run_status(run_dir) in DONE
