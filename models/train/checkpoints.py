"""Checkpoints: atomic writes that refuse non-finite weights, and loading with `weights_only=True` only.

Lightning's own `_atomic_save` goes through an fsspec transaction that writes the temp file under /tmp and
`shutil.move`s it (a copy across filesystems, no fsync), hence `AtomicCheckpointIO` (see `records.atomic_write_bytes`).
"""

from __future__ import annotations

import io
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from models.errors import ConfigError
from models.train.records import Diverged, atomic_write_bytes


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
        atomic_write_bytes(Path(path), buffer.getvalue())

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
    except Exception as e:
        detail = " ".join(str(e).split())[:160]
        refused = "weights_only" in str(e) or "Unsupported global" in str(e)
        what = "holds objects that weights_only loading refuses" if refused else "is corrupt or truncated"
        raise ConfigError(
            f"checkpoint {path} {what} ({type(e).__name__}: {detail}): delete it to restart this run from scratch, "
            f"or restore a good copy"
        ) from None
