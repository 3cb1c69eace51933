"""`autoclip daemon`: the watched inbox, the job worker and the retraining scheduler, wired together.

The service starts as an ordered list of steps (lock, store, clean-up, recovery, signals, first
scan, READY, worker, scheduler) and then its main thread only supervises: it pings systemd's
watchdog while the watcher and worker threads are alive and making progress, and stops
everything on SIGTERM. Background loops wait on ``stop`` (never a bare sleep). Each job runs as
a child process in its own process group (``autoclip process VOD --job-dir DIR --json``), after
a completeness check in another child (``autoclip check VOD --json``), so a crash, hang or
out-of-memory in decoding can fail or retry the job but never take the daemon down.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import signal
import sqlite3
import stat
import threading
import time
from pathlib import Path
from typing import Any

from autoclip import sdnotify, store
from autoclip.child import ChildResult, autoclip_cmd, child_env, run_child
from autoclip.config import Config
from autoclip.errors import AutoclipError, UsageError
from autoclip.fsutil import apply_umask, clean_temp_files
from autoclip.jobs import Job, JobStore
from autoclip.watcher import Candidate, InboxFilter, InboxWatcher, file_key

log = logging.getLogger(__name__)

#: check codes that may mean "still being written": retried with backoff, failed after max_attempts
DEFERRABLE = {"truncated", "empty", "no_duration", "unreadable"}
#: how long a loop may go without a heartbeat before the service counts as hung
HEARTBEAT_LIMIT = 120.0
LOCK_NAME = ".daemon.lock"
#: meta key: JSON of the inbox files the daemon does not take (``ignored_summary``)
IGNORED_META = "daemon.ignored"
#: how many of them `autoclip status` names
IGNORED_SHOWN = 20


class Worker:
    """Takes queued jobs one at a time: completeness check child, then the process child."""

    def __init__(self, cfg: Config, config_file: Path | None, stop: threading.Event, wake: threading.Event) -> None:
        self.cfg = cfg
        self.config_file = config_file
        self.stop = stop
        self.wake = wake
        self.heartbeat = time.monotonic()
        self.current: Job | None = None
        self._waiting_for_model = False
        self.jobs: JobStore | None = None

    def run(self) -> None:
        conn = store.connect(self.cfg.path("database"))
        self.jobs = JobStore(self.cfg, conn)
        try:
            while not self.stop.is_set():
                self.heartbeat = time.monotonic()
                try:
                    job = self._next()
                    if job is None:
                        self._idle()
                        continue
                    self._run_job(job)
                except (AutoclipError, sqlite3.Error, OSError) as err:  # disk full, database busy: wait, go on
                    log.error("worker: %s", err)
                    self.stop.wait(10)
        finally:
            conn.close()

    def _next(self) -> Job | None:
        if not self.cfg.path("inbox").is_dir() or not self._model_ready():
            return None
        return self.jobs.next_ready()

    def _idle(self) -> None:
        wake_at = self.jobs.next_wakeup()
        delay = 5.0 if wake_at is None else min(5.0, max(0.1, wake_at - store.now()))
        self.wake.wait(delay)
        self.wake.clear()

    def _model_ready(self) -> bool:
        from autoclip.registry import Registry

        ready = Registry(self.cfg.path("models")).current_id() is not None
        if not ready and not self._waiting_for_model:
            log.warning("no trained model yet: jobs wait in the queue (import labels and run `autoclip train`)")
        self._waiting_for_model = not ready
        return ready

    # -- one job -------------------------------------------------------------------------
    def _run_job(self, job: Job) -> None:
        jobs = self.jobs
        try:
            st = os.lstat(job.source)
        except FileNotFoundError:
            jobs.fail(job, "vanished", f"{job.name} was removed from the inbox before it was processed", retry=False)
            return
        if file_key(st) != job.key:  # changed since it was queued: the watcher requeues it once stable
            job.next_try = store.now() + self.cfg.daemon.stable + 1
            jobs.save(job)
            return
        self.current = job
        jobs.begin(job)
        try:
            log.info("job %s: %s (attempt %d)", job.id, job.name, job.attempts)
            if self._check(job):
                self._process(job)
        except Exception as err:  # a bug or an I/O error around the children: the job, not the daemon
            log.exception("job %s: unexpected error", job.id)
            with contextlib.suppress(Exception):
                jobs.fail(job, "internal", f"internal error: {err}", retry=True)
        finally:
            self.current = None

    def _check(self, job: Job) -> bool:
        res = self._child(job, "check", "--json", "--", job.source, timeout=self.cfg.daemon.timeout_base)
        data = res.json()
        if res.stopped:
            self.jobs.requeue(job, "the daemon is stopping", count=False)
            return False
        if data is None or res.timed_out:
            why = "timed out" if res.timed_out else f"crashed ({_exit_text(res.rc)}): {res.reason}"
            self.jobs.fail(job, "check_failed", f"the completeness check {why}", retry=True, detail="\n".join(res.tail))
            return False
        if not data.get("ok"):
            code = data.get("code") or "media"
            self.jobs.fail(job, code, data.get("error") or code, retry=code in DEFERRABLE, detail=data.get("detail") or "")
            return False
        job.duration = float(data.get("duration") or 0.0)
        self.jobs.set_phase(job, "scoring", "scoring")
        return True

    def _process(self, job: Job) -> None:
        d = self.cfg.daemon
        timeout = d.timeout_factor * (job.duration or 0.0) + d.timeout_base
        jdir = self.jobs.job_dir(job.id)
        started = time.time()
        last_save = [time.monotonic()]

        def poll() -> None:
            self.heartbeat = time.monotonic()
            scored = jdir / "scores.npz"
            if job.state == "scoring" and scored.exists() and scored.stat().st_mtime >= started - 1:
                self.jobs.set_phase(job, "rendering", "rendering")
            elif time.monotonic() - last_save[0] > 5:
                last_save[0] = time.monotonic()
                self.jobs.save(job)  # progress for `autoclip status`

        def on_line(line: str) -> None:
            if "scoring" in line or "%" in line:
                job.progress = line.split(": ", 1)[-1][:200] if "INFO" in line else line[:200]

        res = self._child(job, "process", "--job-dir", str(jdir), "--json", "--", job.source, timeout=timeout,
                          poll=poll, on_line=on_line)
        self._finish(job, res)

    def _finish(self, job: Job, res: ChildResult) -> None:
        data = res.json()
        if res.stopped:
            self.jobs.requeue(job, "the daemon is stopping", count=False)
        elif res.rc == 0 and data is not None:
            self.jobs.finish(job, data)
            log.info("job %s done: %s -> %s (%.0f s)", job.id, job.name, data.get("reel") or "no highlights found", res.seconds)
        elif res.timed_out:
            self.jobs.fail(job, "timeout", f"processing took longer than its {self._timeout_text(job)} timeout", retry=True,
                           detail="\n".join(res.tail))
        else:
            # the child's own outcome says why (errors.AutoclipError.code), never its stderr text
            message = res.reason or f"the process step crashed ({_exit_text(res.rc)})"
            code = "disk_full" if res.code == "disk_full" else "process_failed"
            if res.rc is not None and res.rc < 0:
                code, message = "crashed", f"the process step was killed ({_exit_text(res.rc)}; out of memory?)"
            self.jobs.fail(job, code, message, retry=True, detail="\n".join(res.tail))

    def _timeout_text(self, job: Job) -> str:
        d = self.cfg.daemon
        return f"{d.timeout_factor * (job.duration or 0) + d.timeout_base:.0f} s"

    def _child(self, job: Job, command: str, *args: str, timeout: float, poll: Any = None,
               on_line: Any = None) -> ChildResult:
        jdir = self.jobs.job_dir(job.id)

        def on_start(pid: int) -> None:
            job.child = {"pid": pid, "pgid": pid, "command": command}
            self.jobs.save(job)

        res = run_child(
            autoclip_cmd(self.config_file, command, *args),
            env=child_env(AUTOCLIP_JOB=job.id), log_path=jdir / "log.txt", timeout=timeout, stop=self.stop,
            stop_timeout=self.cfg.daemon.stop_timeout, on_start=on_start, on_line=on_line,
            poll=poll or (lambda: setattr(self, "heartbeat", time.monotonic())),
        )
        job.child = None
        return res


def _exit_text(rc: int | None) -> str:
    if rc is None:
        return "no exit status"
    if rc < 0:
        with contextlib.suppress(ValueError):
            return f"signal {signal.Signals(-rc).name}"
        return f"signal {-rc}"
    return f"exit {rc}"


class Daemon:
    """The service: ``Daemon(cfg, config_file).run()`` returns the exit code."""

    def __init__(self, cfg: Config, config_file: Path | None) -> None:
        self.cfg = cfg
        self.config_file = config_file.resolve() if config_file else None
        self.stop = threading.Event()
        self.wake = threading.Event()
        self.threads: dict[str, threading.Thread] = {}
        self.watcher: InboxWatcher | None = None
        self.worker: Worker | None = None
        self.scheduler: Any = None
        self.conn: Any = None
        self._lock_fd: int | None = None
        self._ignored = ""
        self.exit_code = 0

    def run(self) -> int:
        try:
            for step in (self.init_lock, self.init_store, self.init_clean, self.init_recover, self.init_signals,
                         self.start_watcher, self.start_worker, self.start_scheduler):
                if self.stop.is_set():
                    break
                step()
            self.supervise()
        finally:
            self.shutdown()
        return self.exit_code

    # -- init steps ----------------------------------------------------------------------
    def init_lock(self) -> None:
        apply_umask(self.cfg.paths.umask)  # reels readable by the streamer's account (and children inherit it)
        self.cfg.ensure_dirs()
        path = self.cfg.path("jobs") / LOCK_NAME
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.pread(fd, 32, 0).decode(errors="replace").strip()
            os.close(fd)
            raise UsageError(f"another autoclip daemon (pid {other or '?'}) already runs on {self.cfg.root}: stop it first") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_fd = fd

    def init_store(self) -> None:
        self.conn = store.connect(self.cfg.path("database"))
        with store.transaction(self.conn):
            store.set_meta(self.conn, "daemon.pid", str(os.getpid()))
            store.set_meta(self.conn, "daemon.started", str(store.now()))
            store.set_meta(self.conn, "daemon.state", "starting")

    def init_clean(self) -> None:
        n = sum(clean_temp_files(self.cfg.path(name)) for name in ("reels", "jobs", "failed", "models"))
        if str(self.cfg.paths.done) not in ("", "."):
            n += clean_temp_files(self.cfg.path("done"))
        if n:
            log.info("removed %d leftover temporary files", n)

    def init_recover(self) -> None:
        requeued = JobStore(self.cfg, self.conn).recover()
        if requeued:
            log.info("requeued %d unfinished jobs", len(requeued))

    def init_signals(self) -> None:
        def on_signal(signum: int, _frame: Any) -> None:
            log.info("%s received: stopping", signal.Signals(signum).name)
            self.stop.set()
            self.wake.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)

    def start_watcher(self) -> None:
        cfg, d = self.cfg, self.cfg.daemon
        exclude = [cfg.path(n) for n in ("reels", "failed", "done", "jobs", "models", "cache")]
        filt = InboxFilter(cfg.path("inbox"), d.extensions, exclude)
        self.watcher = InboxWatcher(filt, stable=d.stable, rescan=d.rescan, polling=d.polling,
                                    on_ready=self._intake(), stop=self.stop)
        self.watcher.step()  # the startup scan: READY only after it
        self.publish_ignored()
        self._thread("watcher", self.watcher.run)
        sdnotify.ready(f"watching {cfg.path('inbox')}")
        log.info("watching %s (stable %.0f s, rescan %.0f s%s)", cfg.path("inbox"), d.stable, d.rescan,
                 ", polling" if d.polling else "")

    def start_worker(self) -> None:
        c = self.cfg.cluster
        log.info("jobs run %s", "on this machine" if c.backend == "local" else
                 f"on the Ray cluster at {c.address} (chunks of {c.chunk:g} s; this machine writes every result)")
        self.worker = Worker(self.cfg, self.config_file, self.stop, self.wake)
        self._thread("worker", self.worker.run)

    def start_scheduler(self) -> None:
        from autoclip.scheduler import RetrainScheduler

        self.scheduler = RetrainScheduler(self.cfg, self.config_file, self.stop)
        self.scheduler.start()

    def _thread(self, name: str, target: Any) -> None:
        t = threading.Thread(target=target, name=name, daemon=True)
        t.start()
        self.threads[name] = t

    # -- intake (runs in the watcher thread) -----------------------------------------------
    def _intake(self) -> Any:
        holder: dict[str, JobStore] = {}

        def on_ready(cand: Candidate) -> bool:
            if "jobs" not in holder:
                holder["jobs"] = JobStore(self.cfg, store.connect(self.cfg.path("database")))
            job, outcome = intake(holder["jobs"], cand)
            if job is not None and outcome in ("new", "updated", "retry"):
                log.info("queued %s as job %s", cand.path.name, job.id)
                self.wake.set()
            return True

        return on_ready

    # -- supervision -----------------------------------------------------------------------
    def health(self) -> list[str]:
        """What is wrong (empty when healthy): dead or hung threads, a dead observer."""
        return health_problems(self.threads, self.watcher, self.worker)

    def supervise(self) -> None:
        interval = sdnotify.watchdog_interval()
        tick = min(5.0, interval / 3) if interval else 5.0
        last_status = ""
        while not self.stop.wait(tick):
            problems = self.health()
            if problems:
                log.error("unhealthy: %s; watchdog pings stopped", "; ".join(problems))
                if any("dead" in p for p in problems):
                    self.exit_code = 1  # systemd (Restart=on-failure) starts us again
                    self.stop.set()
                continue
            sdnotify.watchdog()
            self.publish_ignored()
            text = self.status_text()
            if text != last_status:
                sdnotify.status(text)
                with contextlib.suppress(Exception):
                    store.set_meta(self.conn, "daemon.state", text)
                last_status = text

    def publish_ignored(self) -> None:
        """Write the inbox files that are not taken to the database, for `autoclip status`."""
        if self.watcher is None:
            return
        summary = json.dumps(ignored_summary(self.watcher.inbox, self.watcher.refused()), sort_keys=True)
        if summary != self._ignored:
            with contextlib.suppress(sqlite3.Error), store.transaction(self.conn):
                store.set_meta(self.conn, IGNORED_META, summary)
                self._ignored = summary

    def status_text(self) -> str:
        if self.watcher and self.watcher.paused:
            return "paused: inbox missing"
        job = self.worker.current if self.worker else None
        if job is not None:
            return f"{job.state} {job.name}" + (f" ({job.progress})" if job.progress else "")
        return "idle"

    def shutdown(self) -> None:
        self.stop.set()
        self.wake.set()
        sdnotify.stopping("stopping")
        if self.scheduler is not None:
            self.scheduler.shutdown()
        for t in self.threads.values():
            t.join(timeout=self.cfg.daemon.stop_timeout + 10)
        if self.conn is not None:
            with contextlib.suppress(Exception), store.transaction(self.conn):
                store.set_meta(self.conn, "daemon.pid", "")
                store.set_meta(self.conn, "daemon.state", "stopped")
            self.conn.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            log.info("stopped")


def ignored_summary(inbox: Path, refused: dict[Path, str]) -> dict[str, Any]:
    """``{"count": N, "files": [{"file": name, "reason": why}, ...]}`` (the first IGNORED_SHOWN by name)."""
    names = sorted((p.relative_to(inbox).as_posix() if p.is_relative_to(inbox) else str(p), why)
                   for p, why in refused.items())
    return {"count": len(names), "files": [{"file": n, "reason": w} for n, w in names[:IGNORED_SHOWN]]}


def intake(jobs: JobStore, cand: Candidate) -> tuple[Job | None, str]:
    """A stable inbox entry -> a job (or a refusal for folders, FIFOs, devices and symlinks)."""
    mode = cand.st.st_mode
    name = cand.path.name
    if not _utf8(name):
        return _rename_to_utf8(jobs, cand)
    if stat.S_ISLNK(mode):
        return jobs.reject(cand, "symlink", f"{name}: symbolic links are not followed; move or copy the file itself into the inbox")
    if stat.S_ISDIR(mode):
        return jobs.reject(cand, "not_file", f"{name}: is a folder, not a video file")
    if not stat.S_ISREG(mode):
        return jobs.reject(cand, "not_file", f"{name}: not a regular file (FIFO, socket or device); remove it")
    if not _still_regular(cand.path):
        return jobs.reject(cand, "not_file", f"{name}: changed into something that is not a regular file; remove it")
    return jobs.submit(cand)


def _utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # undecodable bytes arrive as surrogates (surrogateescape)
        return False
    return True


def _rename_to_utf8(jobs: JobStore, cand: Candidate) -> tuple[Job | None, str]:
    """Names that are not UTF-8 cannot be stored or shown: rename in place; the new name is picked up."""
    raw = os.fsencode(cand.path.name)
    safe = raw.decode("utf-8", "replace").replace("\ufffd", "_")
    target = cand.path.with_name(safe)
    if os.path.lexists(target):
        target = cand.path.with_name(f"{Path(safe).stem}-{cand.st.st_ino}{Path(safe).suffix}")
    try:
        os.rename(cand.path, target)
    except OSError as err:
        log.error("cannot rename %r to a UTF-8 name: %s", raw, err)
        return None, "refused"
    log.warning("renamed %r to %s: file names must be UTF-8", raw, target.name)
    return None, "renamed"


def _still_regular(path: Path) -> bool:
    """Open without following links or blocking (a FIFO swapped in cannot hang us) and check the type."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        return stat.S_ISREG(os.fstat(fd).st_mode)
    finally:
        os.close(fd)


def health_problems(threads: dict[str, threading.Thread], watcher: InboxWatcher | None, worker: Worker | None) -> list[str]:
    problems = [f"{name} thread dead" for name, t in threads.items() if not t.is_alive()]
    now = time.monotonic()
    if watcher is not None:
        if now - watcher.heartbeat > HEARTBEAT_LIMIT:
            problems.append(f"watcher hung for {now - watcher.heartbeat:.0f} s")
        if not watcher.observer_alive():
            problems.append("inbox observer not running")
    if worker is not None and now - worker.heartbeat > HEARTBEAT_LIMIT:
        problems.append(f"worker hung for {now - worker.heartbeat:.0f} s")
    return problems


def run_daemon(cfg: Config, config_file: Path | None) -> int:
    return Daemon(cfg, config_file).run()
