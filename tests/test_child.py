"""The typed protocol between the daemon and its job children: each autoclip child writes its
outcome (``ok``, ``code``, ``reason``) to the file named in its environment; the daemon decides a
failure's reason code from that, never from the text on the child's stderr."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from autoclip import config, store
from autoclip.child import autoclip_cmd, child_env, run_child
from autoclip.daemon import Worker
from autoclip.jobs import JobStore
from autoclip.watcher import Candidate


def _run(cmd: list[str], folder: Path):
    return run_child(cmd, env=child_env(), log_path=folder / "log.txt", timeout=120, stop=threading.Event(),
                     stop_timeout=5.0)


def test_an_autoclip_child_reports_its_error_and_its_success(tmp_path: Path) -> None:
    bad = _run(autoclip_cmd(None, "probe", "--json", "--", str(tmp_path / "missing.mp4")), tmp_path)
    assert bad.rc == 1 and bad.outcome is not None and bad.outcome["ok"] is False
    assert bad.code not in ("", "ok") and "missing.mp4" in bad.reason
    assert any(bad.reason in line for line in bad.tail)  # the same line the user sees on stderr
    subprocess.run(autoclip_cmd(None, "init", str(tmp_path / "d")), check=True, capture_output=True)
    good = _run(autoclip_cmd(tmp_path / "d" / "config.toml", "config", "check"), tmp_path)
    assert good.rc == 0 and good.outcome == {"ok": True, "code": "ok", "reason": ""}
    assert not [p for p in tmp_path.iterdir() if "outcome" in p.name]  # read, then removed


def test_a_child_killed_before_it_reports_has_no_outcome(tmp_path: Path) -> None:
    res = _run([sys.executable, "-c", "import os, signal, sys; print('last words', file=sys.stderr); "
                "os.kill(os.getpid(), signal.SIGKILL)"], tmp_path)
    assert res.rc == -9 and res.outcome is None and res.code is None and res.reason == "last words"


def _child_saying(code: str, reason: str, stderr: str) -> list[str]:
    return [sys.executable, "-c",
            "import sys; from autoclip.child import report_outcome; "
            f"print({stderr!r}, file=sys.stderr); report_outcome(False, {code!r}, {reason!r}); sys.exit(1)"]


@pytest.mark.parametrize(("code", "reason", "stderr", "expected"), [
    ("disk_full", "disk full while rendering: free space", "ffmpeg: av_interleaved_write_frame(): error", "disk_full"),
    ("media", "the VOD is damaged at 00:12:03", "autoclip: error: No space left on device (quoted)", "process_failed"),
])
def test_the_daemon_takes_the_reason_code_from_the_outcome(tmp_path: Path, code: str, reason: str, stderr: str,
                                                           expected: str) -> None:
    cfg = config.from_dict({"daemon": {"max_attempts": 3}}, root=tmp_path)
    cfg.ensure_dirs()
    conn = store.connect(cfg.path("database"))
    try:
        jobs = JobStore(cfg, conn)
        path = cfg.path("inbox") / "a.mp4"
        path.write_bytes(b"x" * 100)
        job, _ = jobs.submit(Candidate(path, os.lstat(path)))
        jobs.begin(job)
        worker = Worker(cfg, None, threading.Event(), threading.Event())
        worker.jobs = jobs
        worker._finish(job, _run(_child_saying(code, reason, stderr), tmp_path))
        saved = jobs.get(job.id)
        assert saved.reason_code == expected and saved.error == reason
    finally:
        conn.close()
