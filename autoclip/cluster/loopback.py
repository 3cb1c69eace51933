"""A throwaway Ray cluster on this machine (127.0.0.1), for the cluster tests and the benchmark.

It runs the real ``ray start`` (head, then nodes joining it), each in its own process group
under a short temp folder, and stops only what it started: every process of each node's group
plus their descendants (Ray's worker processes live in sessions of their own). A node can be
started in a private mount namespace with empty folders mounted over some paths (``hide``), to
stand in for a machine that does not see the shared storage. No Ray import here: the cluster
is driven through its command line, so the caller is not itself a Ray driver.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def ray_cli() -> str:
    """The ``ray`` command of this interpreter's environment."""
    here = Path(sys.executable).parent / "ray"
    return str(here) if here.exists() else (shutil.which("ray") or "ray")


@dataclass
class Node:
    name: str
    pgid: int
    hidden: list[Path] = field(default_factory=list)


def _proc_table() -> dict[int, tuple[int, int]]:
    """pid -> (ppid, pgid) of every process (from /proc)."""
    out = {}
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = (p / "stat").read_text().rsplit(")", 1)[1].split()
            if fields[0] != "Z":
                out[int(p.name)] = (int(fields[1]), int(fields[2]))
    return out


def group_and_descendants(pgid: int) -> list[int]:
    """Live processes in group ``pgid`` and everything they started (any group)."""
    table = _proc_table()
    found = {pid for pid, (_pp, g) in table.items() if g == pgid}
    grew = True
    while grew:
        kids = {pid for pid, (pp, _g) in table.items() if pp in found} - found
        grew = bool(kids)
        found |= kids
    return sorted(found)


class LoopbackCluster:
    """``with LoopbackCluster() as c: c.start_head(); c.add_node(); ... c.address``"""

    def __init__(self, env: dict[str, str] | None = None) -> None:
        # Ray's unix sockets live under the temp dir: keep its path short
        self.temp = Path(tempfile.mkdtemp(prefix="acray-", dir="/tmp"))
        self.port = free_port()
        self.env = {**os.environ, **(env or {}), "RAY_USAGE_STATS_ENABLED": "0"}
        self.nodes: list[Node] = []
        self.log = self.temp / "cluster.log"

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    def _start(self, name: str, args: list[str], hide: list[Path] | None = None, timeout: float = 120.0) -> Node:
        cmd = [ray_cli(), "start", *args, "--node-ip-address", HOST, "--disable-usage-stats"]
        if hide:
            mounts = " && ".join(f"mount -t tmpfs -o size=1m,mode=0755 autoclip-hidden {_q(p)}" for p in hide)
            cmd = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                   f"{mounts} && exec {' '.join(_q(c) for c in cmd)}"]
        with open(self.log, "ab") as logf:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                                    env=self.env, start_new_session=True)
            node = Node(name, proc.pid, list(hide or []))
            self.nodes.append(node)
            try:
                rc = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                rc = None
        if rc != 0:
            tail = self.log.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"`ray start` for {name} failed ({rc}):\n{tail}")
        return node

    def start_head(self, num_cpus: int = 1) -> Node:
        return self._start("head", ["--head", "--port", str(self.port), "--num-cpus", str(num_cpus),
                                    "--temp-dir", str(self.temp), "--include-dashboard", "false",
                                    "--ray-client-server-port", str(free_port()),
                                    "--dashboard-port", str(free_port())])

    def add_node(self, num_cpus: int = 1, hide: list[Path] | None = None) -> Node:
        return self._start(f"node{len(self.nodes)}", ["--address", self.address, "--num-cpus", str(num_cpus)], hide)

    def kill(self, node: Node) -> int:
        """SIGKILL a node: its raylet and helpers, and the worker processes running its tasks."""
        pids = group_and_descendants(node.pgid)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        if node in self.nodes:
            self.nodes.remove(node)
        return len(pids)

    def worker_running(self, node: Node, task: str) -> bool:
        """Whether a worker process of ``node`` is running the task ``task`` (by Ray's process title)."""
        for pid in group_and_descendants(node.pgid):
            with contextlib.suppress(OSError):
                if f"ray::{task}".encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                    return True
        return False

    def alive_nodes(self) -> int:
        """How many nodes the head counts alive (asked through a short-lived driver)."""
        code = (f"import ray; ray.init(address={self.address!r}, logging_level='ERROR', log_to_driver=False); "
                "print(sum(1 for n in ray.nodes() if n['Alive']))")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=self.env, timeout=120)
        try:
            return int(out.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            return -1

    def wait_nodes(self, n: int, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while (got := self.alive_nodes()) != n:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the cluster has {got} alive nodes, not {n}, after {timeout:.0f} s")
            time.sleep(2.0)

    def stop(self) -> None:
        for node in reversed(list(self.nodes)):
            self.kill(node)
        shutil.rmtree(self.temp, ignore_errors=True)

    def __enter__(self) -> LoopbackCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _q(text: object) -> str:
    import shlex

    return shlex.quote(str(text))
