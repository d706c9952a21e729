"""Run records on disk: atomic JSON/checkpoint writes, results.json status, safe checkpoint loading.

Crash safety: every file a later run trusts (results.json, last.ckpt, best.ckpt) is written to a temporary file in
the same directory, fsync'ed, then `os.replace`d over the old one. A kill at any moment leaves either the previous
good file or the new one, never a torn file. Lightning's own `_atomic_save` goes through an fsspec transaction
that writes the temp file under /tmp and `shutil.move`s it (a copy across filesystems, no fsync), hence ours.
"""

from __future__ import annotations

import io
import json
import math
import os
import tempfile
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from models.errors import ConfigError

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
    if isinstance(obj, torch.Tensor):
        return _jsonable(obj.item() if obj.numel() == 1 else obj.tolist())
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalar
        return _jsonable(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    return str(obj)


def atomic_write_json(path: str | Path, obj: Any) -> None:
    _atomic_write_bytes(Path(path), (json.dumps(_jsonable(obj), indent=2, sort_keys=False) + "\n").encode())


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


def nonfinite_tensors(state_dict: dict[str, Any]) -> list[str]:
    """Names of floating-point tensors holding NaN/inf."""
    return [k for k, v in state_dict.items()
            if isinstance(v, torch.Tensor) and v.is_floating_point() and not torch.isfinite(v).all()]


class AtomicCheckpointIO(TorchCheckpointIO):
    """torch.save into memory, then temp file + fsync + os.replace. Refuses to write non-finite weights, so a
    diverging run can never overwrite a good last.ckpt/best.ckpt with NaNs. Loads with weights_only=True."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        bad = nonfinite_tensors(checkpoint.get("state_dict", {}))
        if bad:
            raise Diverged(int(checkpoint.get("global_step", -1)),
                           f"non-finite {bad[0]} (+{len(bad) - 1} more tensors), so {Path(path).name} was not saved,")
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        _atomic_write_bytes(Path(path), buffer.getvalue())

    def load_checkpoint(self, path: Any, map_location: Any | None = None, weights_only: bool | None = None
                        ) -> dict[str, Any]:
        return load_checkpoint(path, map_location=map_location or "cpu")


def load_checkpoint(path: str | Path, map_location: Any = "cpu", mmap: bool = False) -> dict[str, Any]:
    """torch.load(weights_only=True): our checkpoints hold only tensors and plain Python values (hyper-parameters
    are stored as plain dicts, RNG states as tensors/tuples), so no arbitrary unpickling is ever needed.
    Damage of any kind becomes a ConfigError naming the file."""
    path = Path(path)
    try:
        mmap = mmap and zipfile.is_zipfile(path)  # torch's legacy (non-zip) format cannot be memory-mapped
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": the verdict below says it all
            warnings.simplefilter("ignore")
            return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except FileNotFoundError:
        raise ConfigError(f"checkpoint {path} not found: check the path or drop the resume") from None
    except Exception as e:  # noqa: BLE001 - truncated zip, bad pickle, refused global: all mean "unusable file"
        detail = " ".join(str(e).split())[:160]
        refused = "weights_only" in str(e) or "Unsupported global" in str(e)
        what = "holds objects that weights_only loading refuses" if refused else "is corrupt or truncated"
        raise ConfigError(
            f"checkpoint {path} {what} ({type(e).__name__}: {detail}): delete it to restart this run from scratch, "
            f"or restore a good copy"
        ) from None
