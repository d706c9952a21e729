"""A real SLURM cluster for the tests (one node, or two): munged with its own key and socket, slurmctld and slurmd
in the foreground, everything (state, spool, logs, config) under one directory, stopped by PID.

Debian's slurm-wlm + munge (22.05) are enough; no systemd, cgroups or root services are touched.

`second_node=True` adds a node `<host>-2` (after this host in SLURM's node order, so rank 0 stays here) with its
own slurmd in a network namespace of the test's own: its own IP on a veth pair, its own hostname (a UTS namespace),
/sys and cgroups as the host's (nsenter, not `ip netns exec`, which remounts /sys). Debian's slurmd is built
without --enable-multiple-slurmd, so two slurmds cannot share one network stack; two stacks make a real two-node
cluster on one machine, for multi-node DDP. Both ends of the veth pair carry the same interface name
(`Namespace.IFACE`), so GLOO_SOCKET_IFNAME names the right one on either node. Accounting
(slurmdbd + a database) is not started: `sacct`, which submitit polls for job states, is replaced on the PATH of the
test's commands by a stand-in that answers from `squeue -t all` (finished jobs stay visible for MinJobAge = 300 s).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

ENDED = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL")
RESULTS = ("test/", "test_last/", "val/", "params", "macs", "flops", "steps", "epochs")  # results, not timings
DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "scancel")
PACKAGES = ("slurm-wlm", "munge")

SACCT = """#!/bin/sh
# sacct stand-in (this test cluster has no slurmdbd): answers submitit's
#   sacct -o JobID,State,NodeList --parsable2 -j ID [-j ID ...]
# from slurmctld's own job table, one line per array task, finished jobs included.
ids=""
while [ $# -gt 0 ]; do
  case "$1" in -j) shift; ids="${ids:+$ids,}$1" ;; esac
  shift
done
echo "JobID|State|NodeList"
[ -n "$ids" ] && exec squeue -h -r -t all -j "$ids" -o "%i|%T|%N" 2>/dev/null
exit 0
"""


def missing_tools() -> list[str]:
    return [t for t in DAEMONS if shutil.which(t) is None and not Path("/usr/sbin", t).exists()]


def install_packages() -> str | None:
    """apt-get install the Debian packages when a tool is missing (root only); None when they are there after."""
    if not missing_tools():
        return None
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return (f"SLURM tools {missing_tools()} missing and apt-get unavailable (not root): "
                f"apt-get install {' '.join(PACKAGES)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", *PACKAGES]):
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            tail = " ".join(done.stderr.split()[-30:])
            return f"`{' '.join(cmd)}` failed ({tail})"
    return f"SLURM tools still missing after apt-get: {missing_tools()}" if missing_tools() else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _memory_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    return 4096


class Namespace:
    """A network namespace joined to this host by a veth pair: the host end `host_ip`, the namespace end `node_ip`,
    both named IFACE (interface names are per namespace)."""

    IFACE = "vvr0"

    def __init__(self, name: str) -> None:
        self.name = name
        subnet = 200 + os.getpid() % 50  # distinct per test process
        self.host_ip, self.node_ip = f"10.{subnet}.0.1", f"10.{subnet}.0.2"

    def create(self) -> None:
        peer = f"{self.name}p"
        absent = [tool for tool in ("ip", "nsenter", "unshare") if shutil.which(tool) is None]
        if absent:
            raise NamespaceUnavailable(f"{', '.join(absent)} not installed (apt-get install iproute2 util-linux)")
        self.delete()  # what a killed earlier session may have left
        for cmd in (["ip", "netns", "add", self.name],
                    ["ip", "link", "add", self.IFACE, "type", "veth", "peer", "name", peer],
                    ["ip", "link", "set", peer, "netns", self.name],
                    ["ip", "addr", "add", f"{self.host_ip}/24", "dev", self.IFACE],
                    ["ip", "link", "set", self.IFACE, "up"],
                    *[["ip", "netns", "exec", self.name, *c] for c in (
                        ["ip", "link", "set", peer, "name", self.IFACE],
                        ["ip", "addr", "add", f"{self.node_ip}/24", "dev", self.IFACE],
                        ["ip", "link", "set", self.IFACE, "up"], ["ip", "link", "set", "lo", "up"],
                        ["ip", "route", "add", "default", "via", self.host_ip])]):
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
            if done.returncode != 0:
                self.delete()
                raise NamespaceUnavailable(f"`{' '.join(cmd)}` failed: {done.stderr.strip()}")

    def delete(self) -> None:
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True, timeout=30)
        subprocess.run(["ip", "link", "del", self.IFACE], capture_output=True, timeout=30)


class NamespaceUnavailable(RuntimeError):
    """This machine cannot give the test a network namespace (no CAP_NET_ADMIN / CAP_SYS_ADMIN, no iproute2)."""


class LocalSlurm:
    """`with LocalSlurm(root) as cluster:` a cluster named after this host; `cluster.env` is what a client command
    (sbatch, squeue, submitit through Hydra) needs: SLURM_CONF and the PATH holding the sacct stand-in."""

    def __init__(self, root: Path, cpus: int | None = None, second_node: bool = False) -> None:
        self.root = root
        self.host = socket.gethostname().split(".")[0]
        self.cpus = cpus or os.cpu_count() or 1
        self.net = Namespace(f"vvr{os.getpid() % 100000}") if second_node else None
        self.node2 = f"{self.host}-2"
        self.procs: dict[str, subprocess.Popen] = {}
        self.conf = root / "slurm.conf"
        self.socket = root / "munge" / "munge.socket"
        bin_dir = root / "bin"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf),
                    "PATH": f"{bin_dir}:/usr/sbin:{os.environ.get('PATH', '/usr/bin:/bin')}"}

    def __enter__(self) -> LocalSlurm:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def start(self, timeout: float = 60) -> None:
        for sub in ("munge", "state", "spool", "log", "bin"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
            (self.root / sub).chmod(0o700)
        sacct = self.root / "bin" / "sacct"
        sacct.write_text(SACCT)
        sacct.chmod(0o755)
        self._start_munge()
        if self.net is not None:
            self.net.create()
        for node, _ in self.nodes():
            (self.root / "spool" / node).mkdir(mode=0o700, exist_ok=True)
        self.conf.write_text(self._config())
        self._spawn("slurmctld", ["slurmctld", "-D", "-f", str(self.conf)])
        self._spawn("slurmd", ["slurmd", "-D", "-f", str(self.conf), "-N", self.host])
        if self.net is not None:  # in its namespace, under its own hostname
            self._spawn("slurmd-2", ["nsenter", f"--net=/run/netns/{self.net.name}", "unshare", "--uts", "sh", "-c",
                                     f"hostname {self.node2} && exec slurmd -D -f {self.conf} -N {self.node2}"])
        self._wait_idle(timeout)

    def _start_munge(self) -> None:
        key = self.root / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        m = self.root / "munge"
        self._spawn("munged", ["munged", "--foreground", "--force", f"--socket={self.socket}", f"--key-file={key}",
                               f"--pid-file={m / 'munged.pid'}", f"--log-file={self.root / 'log' / 'munged.log'}",
                               f"--seed-file={m / 'munged.seed'}"])
        self._wait(lambda: self.socket.exists(), 10, "munged did not create its socket")

    def nodes(self) -> list[tuple[str, str]]:
        """(name, address) of each node: this host, then `<host>-2` in its namespace."""
        if self.net is None:
            return [(self.host, "127.0.0.1")]
        return [(self.host, self.net.host_ip), (self.node2, self.net.node_ip)]

    def _config(self) -> str:
        r, (host, addr) = self.root, self.nodes()[0]
        return "\n".join([
            "ClusterName=vvrtest", f"SlurmctldHost={host}({addr})", "SlurmUser=root", "SlurmdUser=root",
            f"SlurmctldPort={free_port()}", f"SlurmdPort={free_port()}",
            "AuthType=auth/munge", "CredType=cred/munge", f"AuthInfo=socket={self.socket},cred_expire=5",
            f"StateSaveLocation={r / 'state'}", f"SlurmdSpoolDir={r / 'spool'}/%n",
            f"SlurmctldPidFile={r / 'slurmctld.pid'}", f"SlurmdPidFile={r / 'slurmd-%n.pid'}",
            f"SlurmctldLogFile={r / 'log' / 'slurmctld.log'}", f"SlurmdLogFile={r / 'log' / 'slurmd-%n.log'}",
            # no cgroups, no accounting daemon: what a container without systemd can run. JobRequeue=0 (as on many
            # clusters): only jobs submitted with --requeue (configs/hydra/launcher/slurm.yaml) may be requeued
            "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none", "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none", "MpiDefault=none",
            "SelectType=select/cons_tres", "SelectTypeParameters=CR_CPU",
            "JobRequeue=0", "KillWait=5", "MinJobAge=300", "SchedulerParameters=sched_interval=1",
            "ReturnToService=2", "SlurmdParameters=config_overrides", "PlugStackConfig=/dev/null",
            *[f"NodeName={name} NodeAddr={address} CPUs={self.cpus} RealMemory={_memory_mb()} State=UNKNOWN"
              for name, address in self.nodes()],
            "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP", ""])

    def _spawn(self, name: str, cmd: list[str]) -> None:
        log = open(self.root / "log" / f"{name}.out", "w")  # noqa: SIM115 (closed with the process)
        self.procs[name] = subprocess.Popen(cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        log.close()

    def _wait(self, ready, timeout: float, message: str) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            dead = [n for n, p in self.procs.items() if p.poll() is not None]
            if dead:
                raise RuntimeError(f"{dead[0]} exited: {self.log_tail(dead[0])}")
            if ready():
                return
            time.sleep(0.2)
        raise RuntimeError(f"{message} within {timeout:.0f} s: {self.log_tail('slurmctld')}")

    def _wait_idle(self, timeout: float) -> None:
        def idle() -> bool:
            out = self.run(["sinfo", "-h", "-N", "-o", "%T"], check=False)
            return out.returncode == 0 and out.stdout.split() == ["idle"] * len(self.nodes())
        self._wait(idle, timeout, "the nodes did not come up idle")

    def run(self, cmd: list[str], check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
        return subprocess.run(cmd, env=self.env, capture_output=True, text=True, check=check, timeout=timeout)

    def jobs(self) -> list[dict[str, str]]:
        """Every job slurmctld remembers (MinJobAge): id (array tasks as ARRAY_TASK), array job id, state, name,
        restart count."""
        out = self.run(["squeue", "-h", "-r", "-t", "all", "-o", "%i|%F|%K|%T|%j"]).stdout
        keys = ("id", "array_job", "array_task", "state", "name")
        rows = [dict(zip(keys, line.split("|"))) for line in out.splitlines() if line.strip()]
        for row in rows:
            show = self.run(["scontrol", "-o", "show", "job", row["id"]], check=False).stdout
            fields = dict(f.split("=", 1) for f in show.split() if "=" in f)
            row["restarts"] = fields.get("Restarts", "0")
        return rows

    def log_tail(self, name: str, lines: int = 15) -> str:
        for path in (self.root / "log" / f"{name}.log", self.root / "log" / f"{name}.out"):
            if path.exists() and path.stat().st_size:
                return " | ".join(path.read_text(errors="replace").splitlines()[-lines:])
        return "(no log)"

    def stop(self) -> None:
        """Cancel every job first (their processes belong to slurmd), then stop the daemons by PID."""
        if "slurmctld" in self.procs and self.procs["slurmctld"].poll() is None:
            self.run(["scancel", "--user", str(os.getuid())], check=False)
            end = time.monotonic() + 15
            while time.monotonic() < end and any(j["state"] in ("RUNNING", "COMPLETING", "PENDING")
                                                 for j in self._safe_jobs()):
                time.sleep(0.5)
        for name in ("slurmd-2", "slurmd", "slurmctld", "munged"):
            proc = self.procs.pop(name, None)
            if proc is None or proc.poll() is not None:
                continue
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if self.net is not None:
            self.net.delete()

    def _safe_jobs(self) -> list[dict[str, str]]:
        try:
            out = self.run(["squeue", "-h", "-r", "-o", "%i|%T"], check=False).stdout
        except subprocess.TimeoutExpired:
            return []
        return [{"id": a, "state": b} for a, b in (line.split("|") for line in out.splitlines() if "|" in line)]


def sweep(args: list[str], out: Path, env: dict[str, str], wait: bool = True
          ) -> subprocess.CompletedProcess | subprocess.Popen:
    """`python scripts/train.py -m *args hydra.sweep.dir=out` from the repo root."""
    from helpers.runs import REPO, script_env

    cmd = [sys.executable, str(REPO / "scripts" / "train.py"), "-m", *args, f"hydra.sweep.dir={out}"]
    env = {**script_env(out.parent), **env}
    if wait:
        return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def results(run_dir: Path) -> dict:
    from models.train.records import read_results

    record = read_results(run_dir)
    return {k: v for k, v in record.items() if k.startswith(RESULTS)}


def wait_for(paths: list[Path], proc: subprocess.Popen, what: str, timeout: float = 180) -> None:
    """Until every marker file in `paths` exists (the paused tasks or ranks wrote them); the sweep's output in the
    failure when `proc` ends or `timeout` passes first."""
    import pytest

    end = time.monotonic() + timeout
    while not all(p.exists() for p in paths):
        if proc.poll() is not None or time.monotonic() > end:
            proc.kill()
            out, err = proc.communicate()
            pytest.fail(f"{what}: {out[-2000:]} {err[-2000:]}")
        time.sleep(0.2)
