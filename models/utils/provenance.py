"""Which code produced a number: the git commit of the checkout, whether it had uncommitted changes (and a hash of
them), or the installed package's version outside a git checkout. Recorded by every run (`code/*`), compared by
reports (one configuration's seeds must come from one version of the code) and by a resumed run."""

from __future__ import annotations

import hashlib
import subprocess
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
CODE_KEYS = ("code/commit", "code/dirty", "code/diff_hash")  # what tells one checkout's code from another


def _git(*args: str) -> subprocess.CompletedProcess | None:
    try:
        return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None


@lru_cache(maxsize=1)
def code_version() -> dict[str, Any]:
    """code/commit, code/dirty, code/diff_hash (when dirty; tracked files only), code/version."""
    try:
        version = metadata.version("vgg-vs-resnet")
    except metadata.PackageNotFoundError:
        version = None
    head = _git("rev-parse", "HEAD")
    if head is None or head.returncode != 0:
        return {"code/commit": None, "code/dirty": None, "code/diff_hash": None, "code/version": version}
    diff = _git("diff", "HEAD", "--no-ext-diff", "--binary")
    changes = diff.stdout if diff is not None and diff.returncode == 0 else b""
    return {"code/commit": head.stdout.decode().strip(), "code/dirty": bool(changes),
            "code/diff_hash": hashlib.sha256(changes).hexdigest()[:16] if changes else None, "code/version": version}


def code_label(record: dict[str, Any]) -> str:
    """`abc1234`, `abc1234+dirty:1f2e3d4c`, `v0.1.0` (no git) or `unknown` (a record from before code/* existed)."""
    commit = record.get("code/commit")
    if commit:
        return commit[:7] + (f"+dirty:{str(record.get('code/diff_hash'))[:8]}" if record.get("code/dirty") else "")
    return f"v{record['code/version']}" if record.get("code/version") else "unknown"


def same_code(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return code_label(a) == code_label(b)
