"""Kill loops at scale: a zygote process imports the heavy modules once, then forks one worker per
round; the test SIGKILLs the worker at a random moment and checks the files and database after
each round. Forking from a zygote that never ran a thread makes a round cost milliseconds instead
of an interpreter start (torch alone takes seconds here), so hundreds of real SIGKILLs fit in the
slow suite. The worker reports each acknowledged write with ``ack(text)`` (after its commit).
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ZYGOTE = r"""
import os, sys
out = sys.stdout
g = {"__name__": "__zygote__"}
exec(sys.argv[1], g)  # set-up: imports and config only (no database connection, no threads)
work = compile(sys.argv[2], "<work>", "exec")

def ack(text):
    out.write(f"ack {text}\n")
    out.flush()

out.write("ready\n")
out.flush()
for line in sys.stdin:
    i = int(line)
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            exec(work, {**g, "i": i, "ack": ack})
        except BaseException as err:
            out.write(f"error {err!r}\n".replace("\n", " ").rstrip() + "\n")
            out.flush()
            code = 1
        os._exit(code)
    out.write(f"pid {pid}\n")
    out.flush()
    _, status = os.waitpid(pid, 0)
    out.write(f"exit {os.waitstatus_to_exitcode(status)}\n")
    out.flush()
"""


@dataclass
class Round:
    i: int
    acks: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    exit: int | None = None
    seconds: float = 0.0

    @property
    def killed(self) -> bool:
        return self.exit == -signal.SIGKILL


class KillLoop:
    """``with KillLoop(setup, work, env=...) as z: z.round(i, kill_after=s)``."""

    def __init__(self, setup: str, work: str, *, env: dict[str, str] | None = None, log: Path | None = None) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", ZYGOTE, setup, work], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=open(log, "ab") if log else subprocess.DEVNULL,
                                     text=True, env={**os.environ, **(env or {})}, start_new_session=True)
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        assert self._next(120) == "ready", "the zygote did not start"

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put("eof")

    def _next(self, timeout: float) -> str:
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"the zygote said nothing for {timeout} s") from None

    def round(self, i: int, kill_after: float | None, timeout: float = 300.0) -> Round:
        """Fork worker ``i``; SIGKILL it ``kill_after`` seconds after it started (None: let it finish)."""
        assert self.proc.stdin is not None
        r, pid = Round(i), None
        t0 = time.monotonic()
        self.proc.stdin.write(f"{i}\n")
        self.proc.stdin.flush()
        while True:
            wait = timeout
            if pid is not None and kill_after is not None:
                wait = max(0.0, t0 + kill_after - time.monotonic())
            try:
                line = self.lines.get(timeout=wait) if wait > 0 else None
            except queue.Empty:
                line = None
            if line is None:
                if pid is None or kill_after is None:
                    raise AssertionError(f"round {i}: no word from the worker for {timeout} s")
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass  # it finished first: its exit line follows
                kill_after = None
                continue
            kind, _, rest = line.partition(" ")
            if kind == "pid":
                pid = int(rest)
            elif kind == "ack":
                r.acks.append(rest)
            elif kind == "error":
                r.errors.append(rest)
            elif kind == "exit":
                r.exit, r.seconds = int(rest), time.monotonic() - t0
                return r
            elif kind == "eof":
                raise AssertionError(f"round {i}: the zygote died")

    def __enter__(self) -> KillLoop:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
