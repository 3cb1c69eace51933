"""Scheduled student-teacher retraining inside the daemon.

APScheduler's BackgroundScheduler fires a cron job (``[retrain] cron``) and a periodic check
that starts a run once ``min_new_labels`` labels arrived since the last run. Each run is a
child process (``autoclip train --json --trigger T``) at low CPU priority with few threads, so
ingest goes on and a crash or out-of-memory in training cannot take the daemon down. Never two
at once: a trigger while a run is going is skipped and logged. "Last run" lives in our own
database (``retrain_runs`` + ``meta``), not in APScheduler's pickled job store, so a run missed
while the daemon was down runs once (coalesced) on restart.
"""

from __future__ import annotations

import datetime as dt
import logging
import shutil
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from autoclip import store
from autoclip.config import Config
from autoclip.errors import ConfigError
from autoclip.timefmt import when

log = logging.getLogger(__name__)

#: meta key: cron fire times up to this timestamp have been run (or logged as missed)
CRON_MARK = "retrain.cron_done_until"
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS",
               "VECLIB_MAXIMUM_THREADS", "AUTOCLIP_THREADS")


def cron_trigger(expr: str) -> Any:
    from apscheduler.triggers.cron import CronTrigger

    try:
        return CronTrigger.from_crontab(expr)
    except ValueError as err:
        raise ConfigError(f"retrain.cron = {expr!r}: {err} (use 'minute hour day month weekday')") from None


def next_cron(expr: str, after: float | None = None) -> float | None:
    """The first cron fire time after ``after`` (default now), as a timestamp."""
    trig = cron_trigger(expr)
    now = dt.datetime.fromtimestamp(after if after is not None else store.now(), trig.timezone)
    t = trig.get_next_fire_time(None, now + dt.timedelta(microseconds=1))
    return t.timestamp() if t else None


def last_run(conn: sqlite3.Connection, *, finished: bool = False) -> dict[str, Any] | None:
    """The latest retraining (skipped ones excluded; ``finished`` also excludes running ones)."""
    states = ("done", "failed") if finished else ("done", "failed", "running")
    row = conn.execute(
        f"SELECT * FROM retrain_runs WHERE status IN ({', '.join('?' for _ in states)}) ORDER BY started DESC, id DESC LIMIT 1",
        states,
    ).fetchone()
    return dict(row) if row else None


def new_labels_since(conn: sqlite3.Connection, since: float) -> int:
    (n,) = conn.execute("SELECT COUNT(*) FROM labels WHERE created > ?", (since,)).fetchone()
    return int(n)


class RetrainScheduler:
    """Owns the APScheduler instance and the (single) training child."""

    def __init__(self, cfg: Config, config_file: Path | None, stop: threading.Event) -> None:
        self.cfg = cfg
        self.config_file = config_file
        self.stop = stop
        self._lock = threading.Lock()
        self._sched: Any = None
        self.running_trigger: str | None = None

    def _connect(self) -> sqlite3.Connection:
        return store.connect(self.cfg.path("database"))

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        conn = self._connect()
        try:
            self._close_interrupted(conn)
            if not self.cfg.retrain.enabled:
                log.info("scheduled retraining is off ([retrain] enabled = false)")
                return
            trigger = cron_trigger(self.cfg.retrain.cron)
            missed = self._missed(conn)
        finally:
            conn.close()
        from apscheduler.schedulers.background import BackgroundScheduler

        self._sched = BackgroundScheduler(daemon=True, job_defaults={"coalesce": True, "max_instances": 1,
                                                                     "misfire_grace_time": 3600})
        self._sched.add_job(self._on_cron, trigger, id="retrain-cron", name="retrain (cron)")
        self._sched.add_job(self._on_label_check, "interval", seconds=self.cfg.retrain.label_check,
                            id="retrain-labels", name="retrain (new labels)")
        if missed:
            self._sched.add_job(self.run, args=["missed"], id="retrain-missed", name="retrain (missed)")
        self._sched.start()
        nxt = next_cron(self.cfg.retrain.cron)
        log.info("retraining scheduled '%s' (next %s) and after %d new labels", self.cfg.retrain.cron,
                 when(nxt), self.cfg.retrain.min_new_labels)

    def shutdown(self) -> None:
        if self._sched is not None:
            self._sched.shutdown(wait=False)
            self._sched = None
        # a running child sees self.stop (set by the daemon) and is stopped by run_child;
        # wait for that so its record says "stopped"
        if self._lock.acquire(timeout=self.cfg.daemon.stop_timeout + 10):
            self._lock.release()

    def _close_interrupted(self, conn: sqlite3.Connection) -> None:
        from autoclip.trainrun import TrainLock

        with TrainLock(self.cfg.path("models")) as lock:
            if not lock.acquired:
                return  # a training (e.g. a manual `autoclip train`) is running right now: its row is live
            self._mark_interrupted(conn)

    def _mark_interrupted(self, conn: sqlite3.Connection) -> None:
        with store.transaction(conn):
            n = conn.execute(
                "UPDATE retrain_runs SET status = 'failed', finished = ?, detail = 'interrupted: the daemon stopped' "
                "WHERE status = 'running'", (store.now(),)).rowcount
        if n:
            log.warning("%d retraining run(s) were interrupted by a daemon stop or crash", n)

    def _missed(self, conn: sqlite3.Connection) -> bool:
        """True if a cron fire time passed while the daemon was down (then it runs once, now)."""
        now = store.now()
        mark = store.get_meta(conn, CRON_MARK)
        with store.transaction(conn):
            store.set_meta(conn, CRON_MARK, str(now))
        if mark is None:
            return False  # first start: nothing was scheduled before
        due = next_cron(self.cfg.retrain.cron, float(mark))
        if due is None or due > now:
            return False
        log.warning("the retraining scheduled for %s was missed while the daemon was down: running it once now", when(due))
        return True

    # -- triggers --------------------------------------------------------------------------
    def _on_cron(self) -> None:
        conn = self._connect()
        try:
            with store.transaction(conn):
                store.set_meta(conn, CRON_MARK, str(store.now()))
        finally:
            conn.close()
        self.run("cron")

    def _on_label_check(self) -> None:
        conn = self._connect()
        try:
            last = last_run(conn)
            n = new_labels_since(conn, last["started"] if last else 0.0)
        finally:
            conn.close()
        if n >= self.cfg.retrain.min_new_labels:
            if self._lock.locked():
                return  # labels keep arriving during a run; they count for the next one
            log.info("%d new labels since the last retraining (threshold %d): retraining", n, self.cfg.retrain.min_new_labels)
            self.run("labels")

    # -- one run -----------------------------------------------------------------------------
    def run(self, trigger: str) -> str:
        """Run one retraining now (blocking); ``"skipped"`` if one is already running."""
        if not self._lock.acquire(blocking=False):
            log.warning("retraining (%s) skipped: a retraining (%s) is already running", trigger, self.running_trigger)
            self._record_skip(trigger)
            return "skipped"
        try:
            self.running_trigger = trigger
            return self._run_child(trigger)
        finally:
            self.running_trigger = None
            self._lock.release()

    def _record_skip(self, trigger: str) -> None:
        conn = self._connect()
        try:
            with store.transaction(conn):
                conn.execute(
                    "INSERT INTO retrain_runs (trigger, started, finished, status, detail) VALUES (?, ?, ?, 'skipped', ?)",
                    (trigger, store.now(), store.now(), f"skipped: a retraining ({self.running_trigger}) was running"),
                )
        finally:
            conn.close()

    def _run_child(self, trigger: str) -> str:
        """One `autoclip train --json` child; it keeps its own ``retrain_runs`` row (trainrun.RunRecord)."""
        from autoclip.child import autoclip_cmd, child_env, run_child

        r = self.cfg.retrain
        t0 = store.now()
        log.info("retraining started (trigger %s, nice %d, %d thread(s))", trigger, r.nice, r.threads)
        res = run_child(
            self._niced(autoclip_cmd(self.config_file, "train", "--json", "--trigger", trigger, "--threads", str(r.threads))),
            env=child_env(**dict.fromkeys(THREAD_VARS, str(r.threads))),
            log_path=self.cfg.path("jobs") / "_retrain" / f"{time.strftime('%Y%m%d-%H%M%S')}-{trigger}.log",
            timeout=r.timeout, stop=self.stop, stop_timeout=self.cfg.daemon.stop_timeout,
        )
        status, detail, _ = _outcome(res)
        if status == "failed":
            self._record_failure(trigger, t0, detail)
        (log.info if status == "done" else log.error)("retraining (%s) %s: %s", trigger, status, detail)
        return status

    def _record_failure(self, trigger: str, t0: float, detail: str) -> None:
        """The child died without closing its row (killed, out of memory) or before opening one."""
        conn = self._connect()
        try:
            with store.transaction(conn):
                n = conn.execute(
                    "UPDATE retrain_runs SET status = 'failed', finished = ?, detail = ? WHERE status = 'running' AND started >= ?",
                    (store.now(), detail, t0 - 1)).rowcount
                mine = conn.execute("SELECT COUNT(*) FROM retrain_runs WHERE started >= ? AND status != 'skipped'",
                                    (t0 - 1,)).fetchone()[0]
                if not n and not mine:
                    conn.execute("INSERT INTO retrain_runs (trigger, started, finished, status, detail) VALUES (?, ?, ?, 'failed', ?)",
                                 (trigger, t0, store.now(), detail))
        finally:
            conn.close()

    def _niced(self, cmd: list[str]) -> list[str]:
        nice = self.cfg.retrain.nice
        exe = shutil.which("nice")
        if nice and exe:
            return [exe, "-n", str(nice), *cmd]
        if nice:
            log.debug("no `nice` executable: training runs at normal priority")
        return cmd


def _outcome(res: Any) -> tuple[str, str, dict[str, Any]]:
    data = res.json() or {}
    if res.stopped:
        return "failed", "stopped: the daemon was stopping", data
    if res.timed_out:
        return "failed", "timed out ([retrain] timeout)", data
    if res.rc != 0 or not data:
        why = res.reason or f"exit status {res.rc}"
        if res.rc is not None and res.rc < 0:
            why = f"killed by signal {-res.rc} (out of memory?)"
        return "failed", why, data
    if data.get("skipped"):
        return "skipped", data.get("reason") or "skipped", data
    detail = data.get("reason") or ("promoted" if data.get("promoted") else "not promoted")
    metrics = data.get("metrics") or {}
    val = (metrics.get("val") or {}).get("ap")
    if val is not None:
        detail += f"; val AP {val:.3f}"
    return "done", detail, data


def _int_bool(v: Any) -> int | None:
    return None if v is None else int(bool(v))


def status(cfg: Config, conn: sqlite3.Connection) -> dict[str, Any]:
    """The retraining part of `autoclip status --json`."""
    last = last_run(conn, finished=True)
    running = conn.execute("SELECT * FROM retrain_runs WHERE status = 'running' ORDER BY id DESC LIMIT 1").fetchone()
    nxt = next_cron(cfg.retrain.cron) if cfg.retrain.enabled else None
    since = last_run(conn)
    return {
        "enabled": cfg.retrain.enabled,
        "cron": cfg.retrain.cron,
        "last": last,
        "running": dict(running) if running else None,
        "next": nxt,
        "next_iso": dt.datetime.fromtimestamp(nxt).isoformat(timespec="seconds") if nxt else None,
        "new_labels": new_labels_since(conn, since["started"] if since else 0.0),
        "min_new_labels": cfg.retrain.min_new_labels,
    }
