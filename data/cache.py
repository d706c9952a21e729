"""Pre-resized uint8 image cache: one memory-mapped ``.npy`` (N,3,S,S) per split, keyed by the source files.

The key hashes every file's relative path, size and mtime plus the cache size, so any change to the source
(an edited, added or removed image) selects a new file and triggers a rebuild; otherwise the file is reused.
A build writes ``*.partial`` and renames it at the end, so an interrupted build is never picked up.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from rich.progress import Progress

from models.errors import ConfigError

CACHE_VERSION = 1


def cache_key(files: Sequence[Path], root: Path, size: int) -> str:
    h = hashlib.sha256(f"v{CACHE_VERSION} size={size}\n".encode())
    for p in files:
        st = p.stat()
        h.update(f"{p.relative_to(root)}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:20]


def load_or_build(
    files: Sequence[Path],
    root: Path,
    cache_dir: Path,
    tag: str,
    size: int,
    decode: Callable[[Path], np.ndarray],
    threads: int = 4,
) -> tuple[np.ndarray, Path, bool]:
    """Return (memmap uint8 (N,3,size,size), its path, whether it was built now).

    ``tag`` names the split/class selection; older caches with the same tag but another key are deleted after
    a successful build. ``decode(path)`` returns one uint8 (3,size,size) array (and raises ConfigError on
    unreadable files). Decoding runs in ``threads`` threads (PIL releases the GIL while decoding).
    """
    key = cache_key(files, root, size)
    path = cache_dir / f"{tag}-{size}px-{key}.npy"
    if path.is_file():
        return np.load(path, mmap_mode="c"), path, False  # copy-on-write: writable for torch, file untouched
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f"{path.stem}.{os.getpid()}.partial")
        arr = np.lib.format.open_memmap(partial, mode="w+", dtype=np.uint8, shape=(len(files), 3, size, size))
    except OSError as e:
        raise ConfigError(
            f"cannot write the image cache in data.cache_dir={cache_dir} ({e}): set data.cache_dir=<writable dir>"
        ) from None
    try:
        with ThreadPoolExecutor(max(1, threads)) as pool, Progress(transient=True) as bar:
            task = bar.add_task(f"caching {tag} at {size}px", total=len(files))
            for i, img in enumerate(pool.map(decode, files)):
                arr[i] = img
                bar.advance(task)
        arr.flush()
        del arr
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    for old in cache_dir.glob(f"{tag}-{size}px-*.npy"):
        if old != path:
            old.unlink(missing_ok=True)  # superseded by this build
    return np.load(path, mmap_mode="c"), path, True
