"""Child processes of the daemon: each job (and each retraining) runs in its own process group,
so a timeout or a stop kills everything it started (ffmpeg included), and a child left running
by a crashed daemon is found again by the marker in its environment and killed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autoclip.errors import AutoclipError
from autoclip.fsutil import TMP_PREFIX, atomic_write_json

log = logging.getLogger(__name__)

#: environment variable naming the file where an autoclip child writes its outcome (``report_outcome``)
RESULT_ENV = "AUTOCLIP_RESULT_FILE"
#: outcome codes of a command that did not end with an AutoclipError
OK, INTERRUPTED, INTERNAL = "ok", "interrupted", "internal"


def report_outcome(ok: bool, code: str, reason: str) -> None:
    """Write ``{"ok", "code", "reason"}`` to the file named by ``$AUTOCLIP_RESULT_FILE`` (set by the
    daemon for its children; nothing to do otherwise). ``code`` is the error's reason code
    (``errors.AutoclipError.code``: ``disk_full``, ``media``, ...), ``reason`` its one line."""
    path = os.environ.get(RESULT_ENV)
    if not path:
        return
    try:
        atomic_write_json(path, {"ok": ok, "code": code, "reason": reason})
    except (OSError, AutoclipError) as err:  # the daemon then judges by the exit status alone
        log.warning("could not write the outcome file %s: %s", path, err)


def _read_outcome(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("ok"), bool):
        return None
    return {"ok": data["ok"], "code": str(data.get("code") or ""), "reason": str(data.get("reason") or "")}


def autoclip_cmd(config_file: Path | None, *args: str) -> list[str]:
    """The command line of an autoclip child process using the same interpreter and config."""
    cmd = [sys.executable, "-m", "autoclip"]
    if config_file is not None:
        cmd += ["--config", str(config_file)]
    return cmd + list(args)


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a child: ours, without systemd's notify socket, unbuffered, plus ``extra``."""
    env = dict(os.environ)
    env.pop("NOTIFY_SOCKET", None)  # only the daemon talks to systemd
    env.pop("WATCHDOG_USEC", None)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def kill_orphan(pgid: Any, job_id: str) -> bool:
    """Kill the process group ``pgid`` of job ``job_id``'s child left running by a crashed daemon.

    Only when a process of that group carries the job's marker in its environment, so a reused
    group id never kills a stranger.
    """
    if not isinstance(pgid, int) or pgid <= 1 or not _group_is_ours(pgid, job_id):
        return False
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
        log.warning("killed the leftover process group %d of job %s", pgid, job_id)
        return True
    return False


def _group_is_ours(pgid: int, job_id: str) -> bool:
    marker = f"AUTOCLIP_JOB={job_id}".encode()
    for proc in Path("/proc").iterdir() if Path("/proc").is_dir() else []:
        if not proc.name.isdigit():
            continue
        try:
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) != pgid:
                continue
            if marker in (proc / "environ").read_bytes().split(b"\0"):
                return True
        except (OSError, IndexError, ValueError):
            continue
    return False


@dataclass
class ChildResult:
    rc: int | None
    stdout: str
    tail: list[str]
    seconds: float
    timed_out: bool = False
    stopped: bool = False

    #: what the child said about how it ended (``report_outcome``), None if it died first
    outcome: dict[str, Any] | None = None

    @property
    def code(self) -> str | None:
        """The child's own reason code, or None when it wrote no outcome (killed, crashed hard)."""
        return self.outcome["code"] if self.outcome else None

    @property
    def reason(self) -> str:
        """The child's own one-line reason; without an outcome, the last line it wrote to stderr."""
        if self.outcome and self.outcome["reason"]:
            return self.outcome["reason"]
        return self.tail[-1].strip() if self.tail else ""

    def json(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self.stdout)
        except ValueError:
            return None
        return data if isinstance(data, dict) else None


def run_child(
    cmd: list[str],
    *,
    env: dict[str, str],
    log_path: Path,
    timeout: float,
    stop: Any,
    stop_timeout: float,
    on_start: Any = None,
    on_line: Any = None,
    poll: Any = None,
) -> ChildResult:
    """Run ``cmd`` in its own process group; kill the whole group on timeout or when ``stop`` is set.

    stderr goes line by line to ``log_path`` (and ``on_line``); stdout is collected for the JSON
    result; an autoclip child writes its outcome (``ok``, ``code``, ``reason``) to a file named in
    its environment, read back into ``ChildResult.outcome``. ``poll()`` is called about twice a
    second while the child runs.
    """
    import subprocess
    import tempfile
    import threading

    log_path.parent.mkdir(parents=True, exist_ok=True)
    tail: list[str] = []
    fd, name = tempfile.mkstemp(prefix=TMP_PREFIX + "outcome-", suffix=".json", dir=log_path.parent)
    os.close(fd)
    outcome_path = Path(name)
    outcome_path.unlink()  # the child creates it (atomically) when it ends
    env = {**env, RESULT_ENV: str(outcome_path)}
    t0 = time.monotonic()
    with tempfile.TemporaryFile(dir=log_path.parent, prefix=TMP_PREFIX) as out, open(log_path, "ab") as logf:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.PIPE, env=env,
                                start_new_session=True, close_fds=True)
        if on_start:
            on_start(proc.pid)
        reader = threading.Thread(target=_tee, args=(proc.stderr, logf, tail, on_line), daemon=True,
                                  name=f"child-{proc.pid}-stderr")
        reader.start()
        timed_out = stopped = False
        while proc.poll() is None:
            if stop.is_set():
                stopped = True
                _stop_group(proc, stop_timeout)
                break
            if time.monotonic() - t0 > timeout:
                timed_out = True
                log.warning("%s ran past its %.0f s timeout: killing its process group", Path(cmd[-1]).name, timeout)
                _stop_group(proc, 5.0)
                break
            if poll:
                poll()
            stop.wait(0.5)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # leftovers of the group (ffmpeg) never outlive the job
        proc.wait()
        reader.join(timeout=5)
        out.seek(0)
        stdout = out.read().decode("utf-8", "replace")
    outcome = _read_outcome(outcome_path)
    outcome_path.unlink(missing_ok=True)
    return ChildResult(rc=proc.returncode, stdout=stdout, tail=tail, seconds=time.monotonic() - t0,
                       timed_out=timed_out, stopped=stopped, outcome=outcome)


def _stop_group(proc: Any, grace: float) -> None:
    """SIGTERM to the group, SIGKILL after ``grace`` seconds."""
    import subprocess

    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)


def _tee(stream: Any, logf: Any, tail: list[str], on_line: Any) -> None:
    for raw in iter(stream.readline, b""):
        logf.write(raw)
        logf.flush()
        line = raw.decode("utf-8", "replace").rstrip()
        if not line:
            continue
        tail.append(line)
        del tail[:-40]
        if on_line:
            with contextlib.suppress(Exception):
                on_line(line)
    stream.close()
