"""Durable jobs: one folder per VOD under ``jobs/`` with an atomically written ``state.json``.

``state.json`` is the full record (attempts, timings, error, reason code, history); the ``jobs``
table of the database is its index for queries and for the unique key (device, inode, size,
mtime) that makes one file version give one job however many times it is seen. Content seen
again under another name (same fingerprint) becomes a ``duplicate`` record and no work.

States: ``queued`` -> ``scoring`` -> ``rendering`` -> ``done``; any -> ``failed`` (after the
retries) or back to ``queued`` (retry with exponential backoff, restart, SIGTERM). A failed
source is moved to the failed folder with ``<name>.reason.json`` (a name too long for that is
shortened there; the reason file keeps the original); a done one to the done folder.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import json
import logging
import os
import secrets
import shutil
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autoclip import store
from autoclip.child import kill_orphan
from autoclip.config import Config
from autoclip.errors import AutoclipError
from autoclip.fsutil import (
    NAME_MAX,
    TMP_PREFIX,
    atomic_write_json,
    cut_utf8,
    fingerprint,
    fsync_dir,
)
from autoclip.watcher import Candidate

log = logging.getLogger(__name__)

STATES = ("queued", "scoring", "rendering", "done", "failed", "duplicate")
ACTIVE = ("scoring", "rendering")
#: where content must not be processed again (a failed one may be retried under another name)
_DEDUPE_STATES = ("queued", "scoring", "rendering", "done")
STATE_FILE = "state.json"
#: beside each file in the failed folder: why it failed
REASON_SUFFIX = ".reason.json"
DISK_FULL_MAX_DELAY = 3600.0
_INDEXED = ("id", "source", "fingerprint", "device", "inode", "size", "mtime", "state", "attempts",
            "next_try", "created", "updated", "error", "reason_code", "reel", "duplicate_of")


@dataclass
class Job:
    id: str
    source: str
    fingerprint: str | None = None
    device: int | None = None
    inode: int | None = None
    size: int | None = None
    mtime: float | None = None
    state: str = "queued"
    attempts: int = 0
    next_try: float = 0.0
    created: float = 0.0
    updated: float = 0.0
    error: str | None = None
    reason_code: str | None = None
    reel: str | None = None
    duplicate_of: str | None = None
    phase: str | None = None           # checking / scoring / rendering while active
    progress: str | None = None        # last progress line of the running child
    duration: float | None = None      # seconds of video (from the completeness check)
    moved_to: str | None = None        # where the source went (done/failed folder)
    child: dict[str, Any] | None = None  # {"pid": ...} of the running child, for crash recovery
    disk_full_retries: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    result: dict[str, Any] | None = None

    @property
    def name(self) -> str:
        return Path(self.source).name

    @property
    def key(self) -> tuple[int | None, int | None, int | None, float | None]:
        return (self.device, self.inode, self.size, self.mtime)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Job:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def new_job_id() -> str:
    """Sortable, unique and safe as a file name (output names derive from it, never from the VOD's name)."""
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(3)


class JobStore:
    """Job records on disk + their database index. One instance per thread (own connection)."""

    def __init__(self, cfg: Config, conn: sqlite3.Connection) -> None:
        self.cfg = cfg
        self.conn = conn
        self.root = cfg.path("jobs")
        self.root.mkdir(parents=True, exist_ok=True)

    # -- records -----------------------------------------------------------------------------
    def job_dir(self, job_id: str) -> Path:
        return self.root / job_id

    def save(self, job: Job) -> None:
        """Write state.json atomically, then the index row (state.json wins on recovery)."""
        job.updated = store.now()
        atomic_write_json(self.job_dir(job.id) / STATE_FILE, job.to_dict())
        self._index(job)

    def _index(self, job: Job) -> None:
        cols = ", ".join(_INDEXED)
        marks = ", ".join("?" for _ in _INDEXED)
        updates = ", ".join(f"{c} = excluded.{c}" for c in _INDEXED if c != "id")
        with store.transaction(self.conn):
            self.conn.execute(
                f"INSERT INTO jobs ({cols}) VALUES ({marks}) ON CONFLICT(id) DO UPDATE SET {updates}",
                tuple(getattr(job, c) for c in _INDEXED),
            )

    def get(self, job_id: str) -> Job | None:
        path = self.job_dir(job_id) / STATE_FILE
        try:
            return Job.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError):
            row = self.conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
            return Job.from_dict(dict(row)) if row else None

    def _one(self, sql: str, params: tuple) -> Job | None:
        row = self.conn.execute(sql, params).fetchone()
        return self.get(row["id"]) if row else None

    def by_key(self, key: tuple) -> Job | None:
        return self._one("SELECT id FROM jobs WHERE device = ? AND inode = ? AND size = ? AND mtime = ?", tuple(key))

    def by_fingerprint(self, fp: str, states: tuple[str, ...] = _DEDUPE_STATES) -> Job | None:
        marks = ", ".join("?" for _ in states)
        return self._one(
            f"SELECT id FROM jobs WHERE fingerprint = ? AND state IN ({marks}) ORDER BY created LIMIT 1",
            (fp, *states),
        )

    def list(self, states: tuple[str, ...] = STATES, limit: int = 50, newest_first: bool = False) -> list[Job]:
        marks = ", ".join("?" for _ in states)
        order = "updated DESC" if newest_first else "next_try, created"
        rows = self.conn.execute(
            f"SELECT id FROM jobs WHERE state IN ({marks}) ORDER BY {order} LIMIT ?", (*states, limit)
        ).fetchall()
        return [j for j in (self.get(r["id"]) for r in rows) if j is not None]

    def counts(self) -> dict[str, int]:
        rows = self.conn.execute("SELECT state, COUNT(*) AS n FROM jobs GROUP BY state").fetchall()
        out = dict.fromkeys(STATES, 0)
        out.update({r["state"]: r["n"] for r in rows})
        return out

    # -- intake ------------------------------------------------------------------------------
    def submit(self, cand: Candidate) -> tuple[Job, str]:
        """Make (or find) the job for a stable regular file.

        Returns the job and what happened: ``new``, ``known`` (this file version already has a
        job), ``updated`` (a queued job's file was replaced), ``retry`` (a failed file was moved
        back into the inbox) or ``duplicate`` (same content as another job; no work).
        """
        path, key = cand.path, cand.key
        existing = self.by_key(key)
        if existing is not None:
            return existing, self._seen_again(existing, path)
        fp = fingerprint(path)
        same = self.by_fingerprint(fp)
        if same is not None and same.source == str(path) and not same.moved_to:
            self._rekey(same, cand, fp)  # touched or re-mounted (new device id): same file, no new work
            return same, "known"
        if same is not None:
            return self._duplicate(cand, fp, same), "duplicate"
        prev = self._one("SELECT id FROM jobs WHERE source = ? AND state = 'queued'", (str(path),))
        if prev is not None:
            self._rekey(prev, cand, fp)
            prev.attempts, prev.next_try, prev.error, prev.reason_code = 0, 0.0, None, None
            prev.history.append({"event": "file replaced", "time": store.now()})
            self.save(prev)
            return prev, "updated"
        job = self._new(cand, fp)
        self.save(job)
        return job, "new"

    def reject(self, cand: Candidate, code: str, message: str) -> tuple[Job, str]:
        """A job for an entry that can never be processed (a folder, FIFO, symlink): failed at once."""
        existing = self.by_key(cand.key)
        if existing is not None and existing.state == "failed" and existing.moved_to \
                and not os.path.lexists(existing.moved_to):
            existing.source, existing.moved_to = str(cand.path), None  # moved back (`autoclip retry`)
            self.fail(existing, code, message, retry=False)
            return existing, "rejected"
        if existing is not None:
            return existing, "known"
        job = self._new(cand, None)
        self.fail(job, code, message, retry=False)
        return job, "rejected"

    def _new(self, cand: Candidate, fp: str | None) -> Job:
        now = store.now()
        dev, ino, size, mtime = cand.key
        return Job(id=new_job_id(), source=str(cand.path), fingerprint=fp, device=dev, inode=ino, size=size,
                   mtime=mtime, created=now, updated=now, timings={"found": now})

    def _seen_again(self, job: Job, path: Path) -> str:
        if job.state == "failed" and job.moved_to:
            log.info("%s is back in the inbox after failing (job %s): trying it again", path.name, job.id)
            job.source, job.moved_to, job.state = str(path), None, "queued"
            job.attempts, job.next_try, job.disk_full_retries = 0, 0.0, 0
            job.history.append({"event": "moved back into the inbox", "time": store.now()})
            self.save(job)
            return "retry"
        if job.source != str(path) and job.state == "queued":
            job.source = str(path)  # renamed inside the inbox while waiting
            self.save(job)
        return "known"

    def _rekey(self, job: Job, cand: Candidate, fp: str) -> None:
        job.device, job.inode, job.size, job.mtime = cand.key
        job.fingerprint = fp
        try:
            self.save(job)
        except sqlite3.IntegrityError:
            log.debug("job %s: key already taken", job.id)

    def _duplicate(self, cand: Candidate, fp: str, original: Job) -> Job:
        job = self._new(cand, fp)
        job.state, job.duplicate_of = "duplicate", original.id
        job.reason_code = "duplicate"
        job.error = f"same content as {original.name} (job {original.id})"
        job.moved_to = self._move_source(job, "done")
        log.warning("%s is a duplicate of %s (job %s): not processed again%s", cand.path.name, original.name,
                    original.id, f"; moved to {job.moved_to}" if job.moved_to else "")
        self.save(job)
        return job

    # -- the worker's side -------------------------------------------------------------------
    def next_ready(self, now: float | None = None) -> Job | None:
        now = store.now() if now is None else now
        return self._one("SELECT id FROM jobs WHERE state = 'queued' AND next_try <= ? ORDER BY next_try, created LIMIT 1", (now,))

    def next_wakeup(self) -> float | None:
        row = self.conn.execute("SELECT MIN(next_try) AS t FROM jobs WHERE state = 'queued'").fetchone()
        return row["t"] if row and row["t"] is not None else None

    def begin(self, job: Job) -> None:
        now = store.now()
        job.attempts += 1
        job.state, job.phase, job.progress, job.error, job.reason_code = "scoring", "checking", None, None, None
        job.timings["started"] = now
        job.timings.setdefault("first_started", now)
        job.history.append({"attempt": job.attempts, "started": now})
        self.save(job)

    def set_phase(self, job: Job, state: str, phase: str, progress: str | None = None) -> None:
        job.state, job.phase = state, phase
        if progress is not None:
            job.progress = progress
        job.timings[phase] = store.now()
        self.save(job)

    def finish(self, job: Job, result: dict[str, Any]) -> None:
        now = store.now()
        job.state, job.phase, job.child, job.result = "done", None, None, result
        job.reel = result.get("reel")
        job.error = job.reason_code = None
        job.timings["finished"] = now
        job.timings["seconds"] = round(now - job.timings.get("started", now), 3)
        self._end_attempt(job, "done")
        job.moved_to = self._move_source(job, "done")
        self.save(job)

    def fail(self, job: Job, code: str, message: str, *, retry: bool, detail: str = "") -> str:
        """Record a failed attempt: requeue with backoff (``"retry"``) or fail for good (``"failed"``)."""
        job.phase, job.child = None, None
        job.error, job.reason_code = message, code
        self._end_attempt(job, code, message)
        backoff = self.cfg.daemon.backoff
        if code == "disk_full":
            # not the file's fault: does not use up attempts, retried until there is space again
            job.attempts = max(0, job.attempts - 1)
            job.disk_full_retries += 1
            delay = min(backoff * 2 ** (job.disk_full_retries - 1), DISK_FULL_MAX_DELAY)
            return self._retry(job, delay, message, f"disk full retry {job.disk_full_retries}")
        if retry and job.attempts < self.cfg.daemon.max_attempts:
            return self._retry(job, backoff * 2 ** max(0, job.attempts - 1), message,
                               f"attempt {job.attempts} of {self.cfg.daemon.max_attempts}")
        job.state = "failed"
        job.timings["failed"] = store.now()
        job.moved_to = self._move_source(job, "failed")
        self._write_reason(job, detail)
        self.save(job)
        log.error("failed (%s): %s", code, _named(job, message))
        return "failed"

    def _retry(self, job: Job, delay: float, message: str, which: str) -> str:
        job.state, job.next_try = "queued", store.now() + delay
        self.save(job)
        log.warning("%s; retry in %.3g s (%s)", _named(job, message), delay, which)
        return "retry"

    def requeue(self, job: Job, why: str, *, count: bool = True) -> None:
        """Back to the queue now (restart, SIGTERM). ``count=False`` gives the attempt back."""
        job.state, job.phase, job.child, job.next_try = "queued", None, None, 0.0
        if not count:
            job.attempts = max(0, job.attempts - 1)
        self._end_attempt(job, "requeued", why)
        self.save(job)
        log.info("%s requeued: %s", job.name, why)

    def _end_attempt(self, job: Job, outcome: str, error: str | None = None) -> None:
        if job.history and "ended" not in job.history[-1] and "attempt" in job.history[-1]:
            job.history[-1].update(ended=store.now(), outcome=outcome, **({"error": error} if error else {}))
        del job.history[:-20]

    # -- moving sources ----------------------------------------------------------------------
    def _move_source(self, job: Job, where: str) -> str | None:
        if where == "done" and str(self.cfg.paths.done) in ("", "."):
            return None
        src = Path(job.source)
        if not os.path.lexists(src):
            return None
        folder = self.cfg.path(where)
        room = len(REASON_SUFFIX) if where == "failed" else 0
        dst = folder / _fit_name(src.name, room)
        if os.path.lexists(dst):
            dst = folder / _fit_name(f"{src.stem}.{job.id}{src.suffix}", room)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            _move(src, dst)
        except OSError as err:
            log.error("cannot move %s to %s: %s (left where it is)", src, folder, err)
            return None
        if dst.name != src.name:
            log.info("%s moved to %s as %s", src.name, folder, dst.name)
        return str(dst)

    def retry_failed(self, name: str) -> Path:
        """Move a failed file (its name in the failed folder, or its original name) back to where
        it was found; the daemon sees the same file version again and retries it with fresh attempts."""
        job = self._failed_named(name)
        if job is None:
            raise AutoclipError(f"no failed file named {name!r} (`autoclip status` lists the failed files)", code="missing")
        src = Path(job.moved_to or "")
        if not job.moved_to or not os.path.lexists(src):
            raise AutoclipError(f"{name} is no longer in {self.cfg.path('failed')}: put the file into the inbox again",
                                code="missing")
        inbox = self.cfg.path("inbox")
        dst = Path(job.source)
        if not dst.parent.is_dir() or not dst.is_relative_to(inbox):
            dst = inbox / job.name
        if os.path.lexists(dst):
            raise AutoclipError(f"{dst} already exists: move it away first, then retry", code="exists")
        try:
            _move(src, dst)
        except OSError as err:
            raise AutoclipError(f"cannot move {src} to {dst}: {err.strerror or err}", code="unreadable") from err
        (self.cfg.path("failed") / f"{src.name}{REASON_SUFFIX}").unlink(missing_ok=True)
        job.history.append({"event": "retry requested", "time": store.now()})
        self.save(job)
        log.info("%s moved back to %s for another try (job %s)", src.name, dst, job.id)
        return dst

    def _failed_named(self, name: str) -> Job | None:
        for job in self.list(("failed",), limit=10_000, newest_first=True):
            if job.moved_to and Path(job.moved_to).name == name:
                return job
        for job in self.list(("failed",), limit=10_000, newest_first=True):
            if job.name == name and job.moved_to:
                return job
        return None

    def _write_reason(self, job: Job, detail: str) -> None:
        name = Path(job.moved_to).name if job.moved_to else _fit_name(job.name, len(REASON_SUFFIX))
        reason = {
            "file": job.name, "source": job.source, "moved_to": job.moved_to, "job": job.id,
            "code": job.reason_code, "reason": job.error, "attempts": job.attempts,
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "detail": detail[-4000:],
        }
        try:
            atomic_write_json(self.cfg.path("failed") / f"{name}{REASON_SUFFIX}", reason)
        except OSError as err:
            log.error("cannot write the reason file for %s: %s", job.name, err)

    # -- recovery ----------------------------------------------------------------------------
    def recover(self) -> list[Job]:
        """After a restart: re-index state.json files, stop orphaned children, requeue unfinished jobs."""
        self._reindex()
        requeued = []
        for job in self.list(ACTIVE, limit=10_000):
            kill_orphan((job.child or {}).get("pgid"), job.id)
            if job.attempts >= self.cfg.daemon.max_attempts:
                self.fail(job, "interrupted", f"interrupted {job.attempts} times (the daemon stopped or crashed while it ran)", retry=False)
            else:
                self.requeue(job, f"unfinished when the daemon stopped; attempt {job.attempts + 1} next")
                requeued.append(job)
        return requeued

    def _reindex(self) -> None:
        for d in sorted(self.root.iterdir()) if self.root.is_dir() else []:
            if d.name.startswith(("_", ".")) or not (d / STATE_FILE).is_file():
                continue
            job = self.get(d.name)
            if job is None:
                continue
            row = self.conn.execute("SELECT updated, state FROM jobs WHERE id = ?", (job.id,)).fetchone()
            if row is None or row["updated"] < job.updated or row["state"] != job.state:
                with contextlib.suppress(sqlite3.IntegrityError):
                    self._index(job)


def _named(job: Job, message: str) -> str:
    return message if message.startswith(job.name) else f"{job.name}: {message}"


def _fit_name(name: str, room: int) -> str:
    """``name``, or where it and ``room`` more bytes exceed NAME_MAX, a shorter one: cut by bytes,
    made unique by a short hash of ``name``, its extension kept."""
    raw = os.fsencode(name)
    if len(raw) + room <= NAME_MAX:
        return name
    stem, ext = os.path.splitext(name)
    if len(os.fsencode(ext)) > 16:  # not an extension: a dot somewhere in a long name
        stem, ext = name, ""
    tag = "~" + hashlib.sha256(raw).hexdigest()[:10]
    return cut_utf8(stem, NAME_MAX - room - len(tag) - len(os.fsencode(ext))) + tag + ext


def _move(src: Path, dst: Path) -> None:
    """Rename, or copy + rename + unlink across file systems (regular files only; the copy is never visible half-done)."""
    try:
        os.rename(src, dst)
    except OSError as err:
        if err.errno != errno.EXDEV or src.is_symlink() or not src.is_file():
            raise
        tmp = dst.with_name(f"{TMP_PREFIX}{secrets.token_hex(8)}")  # not from dst's name: that may be NAME_MAX long
        try:
            shutil.copy2(src, tmp)
            os.replace(tmp, dst)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        src.unlink()
    fsync_dir(dst.parent)
