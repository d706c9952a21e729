"""Pre-resized uint8 image cache: one memory-mapped ``.npy`` (N,3,S,S) per image folder and size, keyed by content.

The key hashes every file's path (relative to the folder), size and bytes, plus S and the preprocessing version:
the same images give the same cache whatever the dataset is called (`data=imagefolder` vs `data=imagenette`) or
where the folder lives, and any edited, added or removed image gives a new one. Reading every byte once per run
would be slow for large trees, so ``index.json`` remembers the content key of each (path, size, mtime) signature:
an unchanged folder costs one ``stat`` per file. Caches live under the user's cache directory
(``$XDG_CACHE_HOME/vgg-vs-resnet/images``, else ``~/.cache/...``) unless ``data.cache_dir`` says otherwise; never
inside the dataset. A build writes ``*.partial`` and renames it at the end, so an interrupted build is never picked
up; a folder's superseded cache is deleted once no other folder uses it. Runs that start together (a sweep, packed
runs) take turns (`models.utils.locks`): the first decodes, the others wait and find its cache.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from rich.progress import Progress

from data.checks import UnreadableImages
from models.errors import ConfigError
from models.utils.locks import DirLock

CACHE_VERSION = 2  # 2: resize shorter side + centre crop (data.images.base_image); 1 squashed images to a square
INDEX = "index.json"


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "vgg-vs-resnet" / "images"


def _stat_signature(files: Sequence[Path], folder: Path, size: int) -> str:
    h = hashlib.sha256(f"v{CACHE_VERSION} size={size}\n".encode())
    for p in files:
        st = p.stat()
        h.update(f"{p.relative_to(folder)}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def content_key(files: Sequence[Path], folder: Path, size: int) -> str:
    """sha256 over (relative path, size, sha256 of the bytes) of every file, S and the preprocessing version."""
    h = hashlib.sha256(f"v{CACHE_VERSION} size={size}\n".encode())
    for p in files:
        data = p.read_bytes()
        h.update(f"{p.relative_to(folder)}\t{len(data)}\t{hashlib.sha256(data).hexdigest()}\n".encode())
    return h.hexdigest()[:24]


def unreadable(files: list[str]) -> UnreadableImages:
    """Images a cache build could not decode: all of them (the message names the first few, then a count)."""
    return UnreadableImages(files, "delete or replace them (the cache decodes every image, so nothing was trained)",
                            " while building the image cache")


def _read_index(cache_dir: Path) -> dict[str, dict[str, str]]:
    try:
        index = json.loads((cache_dir / INDEX).read_text())
        return {"signatures": dict(index.get("signatures", {})), "folders": dict(index.get("folders", {}))}
    except (OSError, ValueError, AttributeError):
        return {"signatures": {}, "folders": {}}


def _write_index(cache_dir: Path, index: dict[str, dict[str, str]]) -> None:
    tmp = cache_dir / f".{INDEX}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(index, indent=1, sort_keys=True))
    os.replace(tmp, cache_dir / INDEX)  # atomic: concurrent runs never see half a file


def _decode_all(files: Sequence[Path], out: np.ndarray, decode: Callable[[Path], np.ndarray], threads: int,
                label: str) -> None:
    """Decode every file into ``out``; every unreadable file is in one UnreadableImages (the first few named)."""
    def one(i: int) -> str | None:
        try:
            out[i] = decode(files[i])
            return None
        except ConfigError as e:
            return str(e)

    with ThreadPoolExecutor(max(1, threads)) as pool, Progress(transient=True) as bar:
        task = bar.add_task(f"caching {label}", total=len(files))
        bad = []
        for why in pool.map(one, range(len(files))):
            bar.advance(task)
            if why:
                bad.append(why.split(": delete or replace")[0].removeprefix("cannot read image "))
    if bad:
        raise unreadable(bad)


def load_or_build(files: Sequence[Path], folder: Path, cache_dir: Path, size: int,
                  decode: Callable[[Path], np.ndarray], threads: int = 4) -> tuple[np.ndarray, Path, bool]:
    """(memmap uint8 (N,3,size,size), its path, whether this call built it) for ``files`` under ``folder``.

    ``decode(path)`` returns one uint8 (3,size,size) array (and raises ConfigError on an unreadable file). Decoding
    runs in ``threads`` threads (PIL releases the GIL while decoding)."""
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"cannot write the image cache in data.cache_dir={cache_dir} ({e.strerror}): set "
                          "data.cache_dir=<writable dir>") from None
    with DirLock(cache_dir, "the image cache", wait=True):  # one process decodes; the others wait, then reuse it
        return _load_or_build(files, folder, cache_dir, size, decode, threads)


def _load_or_build(files: Sequence[Path], folder: Path, cache_dir: Path, size: int,
                   decode: Callable[[Path], np.ndarray], threads: int) -> tuple[np.ndarray, Path, bool]:
    index = _read_index(cache_dir)
    signature = _stat_signature(files, folder, size)
    key = index["signatures"].get(signature) or content_key(files, folder, size)
    path = cache_dir / f"images-{key}-{size}px.npy"
    built = not path.is_file()
    if built:
        _build(files, path, size, decode, threads, f"{folder.name}/ at {size}px")
    previous = index["folders"].get(f"{folder.resolve()}|{size}")
    index["signatures"][signature] = key
    index["folders"][f"{folder.resolve()}|{size}"] = key
    if previous and previous != key and previous not in index["folders"].values():
        (cache_dir / f"images-{previous}-{size}px.npy").unlink(missing_ok=True)  # superseded, used by no folder
    try:
        _write_index(cache_dir, index)
    except OSError:
        pass  # a read-only shared cache: the next run finds the caches by content again
    return np.load(path, mmap_mode="c"), path, built  # copy-on-write: writable for torch, file untouched


def _build(files: Sequence[Path], path: Path, size: int, decode: Callable[[Path], np.ndarray], threads: int,
           label: str) -> None:
    partial = path.with_name(f"{path.stem}.{os.getpid()}.partial")
    try:
        arr = np.lib.format.open_memmap(partial, mode="w+", dtype=np.uint8, shape=(len(files), 3, size, size))
    except OSError as e:
        raise ConfigError(f"cannot write the image cache in data.cache_dir={path.parent} ({e.strerror}): set "
                          "data.cache_dir=<writable dir>") from None
    try:
        _decode_all(files, arr, decode, threads, label)
        arr.flush()
        del arr
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
