"""One writer at a time: a run directory, or the image cache, held by one process (`filelock`, i.e. flock).

The kernel releases an flock when its process dies however it dies (kill -9, out of memory), and an NFS server
when its client's lease runs out (a lost node), so a dead holder never blocks the next run: its lock is simply
free. Who holds a lock (host, pid, start time, SLURM job) is written beside it, for the message a second
invocation gets. A requeued SLURM job is the same job: it waits for its previous incarnation to let go instead of
being refused.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import socket
import time
from pathlib import Path
from typing import Any

from models.errors import ConfigError

log = logging.getLogger(__name__)
LOCK, HOLDER = ".lock", ".lock.json"
REQUEUE_WAIT_S = 120  # a requeued SLURM task waits this long for the task it replaces to exit


class Busy(ConfigError):
    """The directory is held by another live process."""


def slurm_job() -> str | None:
    """This process's SLURM job (array jobs: <array job>_<task>), or None outside SLURM."""
    job, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    if job and task:
        return f"{job}_{task}"
    return os.environ.get("SLURM_JOB_ID")


def holder_line(holder: dict[str, Any]) -> str:
    """`pid 123 on host since 17:03:05 UTC (SLURM job 99)` from a holder record (what is known of it)."""
    since = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(holder["since"])) if holder.get("since") else "?"
    job = f", SLURM job {holder['slurm_job']}" if holder.get("slurm_job") else ""
    return f"pid {holder.get('pid', '?')} on {holder.get('host', '?')} since {since}{job}"


def read_holder(folder: Path) -> dict[str, Any]:
    try:
        return json.loads((folder / HOLDER).read_text())
    except (OSError, ValueError):
        return {}


class DirLock:
    """`with DirLock(folder, what):` holds `folder/.lock` for the block. `wait=False` refuses at once (a run
    directory: one line naming the holder); `wait=True` waits, saying once whom it waits for (the image cache)."""

    def __init__(self, folder: Path, what: str, wait: bool = False) -> None:
        from filelock import FileLock

        self.folder, self.what, self.wait = Path(folder), what, wait
        self._lock = FileLock(str(self.folder / LOCK))
        self.held = False

    def __enter__(self) -> DirLock:
        from filelock import Timeout

        self.folder.mkdir(parents=True, exist_ok=True)
        try:
            self._lock.acquire(timeout=0)
        except Timeout:
            self._wait_or_refuse()
        except OSError as e:
            if e.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                raise
            log.warning(f"warning: {self.folder} is on a filesystem without locks: nothing stops a second process "
                        f"from writing {self.what} at the same time")
            return self
        self.held = True
        holder = {"host": socket.gethostname(), "pid": os.getpid(), "since": time.time(), "slurm_job": slurm_job()}
        tmp = self.folder / f".{HOLDER}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(holder))
        os.replace(tmp, self.folder / HOLDER)
        return self

    def _wait_or_refuse(self) -> None:
        holder = read_holder(self.folder)
        same_job = holder.get("slurm_job") and holder.get("slurm_job") == slurm_job()
        if not self.wait and not same_job:
            raise Busy(f"{self.folder} is in use by another run ({holder_line(holder)}): wait for it to end, or stop "
                       f"it (kill {holder.get('pid', '<pid>')} on {holder.get('host', 'its host')}); a run directory "
                       "has one writer at a time. For a new run, use another hydra.run.dir")
        log.info(f"waiting for {holder_line(holder)}, which holds {self.what} ({self.folder})")
        from filelock import Timeout

        try:
            self._lock.acquire(timeout=REQUEUE_WAIT_S if same_job and not self.wait else -1)
        except Timeout:
            raise Busy(f"{self.folder} is still held by {holder_line(holder)} after {REQUEUE_WAIT_S} s: stop that "
                       "process, then re-run") from None

    def __exit__(self, *_: object) -> None:
        if self.held:
            (self.folder / HOLDER).unlink(missing_ok=True)
            self._lock.release()
            self.held = False
