"""The embedded SQLite database: labels, review queue, jobs index, retrain history.

One file, WAL mode with ``synchronous=FULL`` so an acknowledged write survives a crash or power
loss. Each domain module (labels, review queue, jobs) works through ``connect`` and owns the
queries on its tables; the schema for every table lives here so there is one place to read it.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

from autoclip.errors import StoreError

SCHEMA_VERSION = 3

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- Human (or imported) labels: a time range of one VOD is a highlight or not.
CREATE TABLE IF NOT EXISTS labels (
    id          INTEGER PRIMARY KEY,
    vod         TEXT NOT NULL,               -- absolute path where the VOD was when labelled
    fingerprint TEXT NOT NULL,               -- content fingerprint (fsutil.fingerprint)
    start       REAL NOT NULL CHECK (start >= 0),
    end         REAL NOT NULL CHECK (end > start),
    label       TEXT NOT NULL CHECK (label IN ('highlight', 'normal')),
    source      TEXT NOT NULL CHECK (source IN ('import', 'review', 'cli')),
    created     REAL NOT NULL,
    review_id   INTEGER REFERENCES review_items(id) ON DELETE SET NULL,
    UNIQUE (fingerprint, start, end, label)
);
CREATE INDEX IF NOT EXISTS labels_by_vod ON labels (fingerprint, start);

-- Segments queued for a human answer.
CREATE TABLE IF NOT EXISTS review_items (
    id          INTEGER PRIMARY KEY,
    vod         TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    job         TEXT,                        -- job id that produced it (scores live there)
    model       TEXT,                        -- model id that scored it
    start       REAL NOT NULL,
    end         REAL NOT NULL,
    score       REAL NOT NULL,
    reason      TEXT NOT NULL CHECK (reason IN ('in-reel', 'uncertain', 'check-label')),
    priority    REAL NOT NULL DEFAULT 0,     -- higher first
    state       TEXT NOT NULL DEFAULT 'pending'
                CHECK (state IN ('pending', 'highlight', 'normal', 'skipped')),
    created     REAL NOT NULL,
    decided     REAL,                        -- when answered
    decision_seq INTEGER,                    -- order of answers, for multi-step undo
    label_id    INTEGER,                     -- the label the answer created
    target_label INTEGER,                    -- check-label items: the label being checked
    replaced    TEXT,                        -- JSON of a label the answer replaced (for undo)
    pad_before  REAL NOT NULL DEFAULT 0,     -- in-reel: seconds of selection padding the range
    pad_after   REAL NOT NULL DEFAULT 0      -- starts / ends with (0 once the reviewer moved that end)
);
CREATE INDEX IF NOT EXISTS review_pending ON review_items (state, priority DESC);
CREATE INDEX IF NOT EXISTS review_by_vod ON review_items (fingerprint, start);

-- Index of durable jobs (the job's own state.json under jobs/ is the full record).
CREATE TABLE IF NOT EXISTS jobs (
    id          TEXT PRIMARY KEY,
    source      TEXT NOT NULL,               -- path the file was found at
    fingerprint TEXT,
    device      INTEGER,
    inode       INTEGER,
    size        INTEGER,
    mtime       REAL,
    state       TEXT NOT NULL CHECK (state IN ('queued', 'scoring', 'rendering', 'done', 'failed', 'duplicate')),
    attempts    INTEGER NOT NULL DEFAULT 0,
    next_try    REAL NOT NULL DEFAULT 0,
    created     REAL NOT NULL,
    updated     REAL NOT NULL,
    error       TEXT,
    reason_code TEXT,
    reel        TEXT,
    duplicate_of TEXT,
    UNIQUE (device, inode, size, mtime)
);
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs (state, next_try);
CREATE INDEX IF NOT EXISTS jobs_by_fingerprint ON jobs (fingerprint);

-- Face cams detected per VOD ([frames] crop = "auto"), keyed by content fingerprint.
CREATE TABLE IF NOT EXISTS facecams (
    fingerprint TEXT PRIMARY KEY,
    vod         TEXT NOT NULL,               -- where the VOD was when detected
    box         TEXT,                        -- JSON [x, y, w, h] in source pixels; NULL: none found
    confidence  REAL,
    reason      TEXT NOT NULL DEFAULT '',
    seconds     REAL NOT NULL DEFAULT 0,     -- how long the detection took
    detected    REAL NOT NULL
);

-- Retraining history: what ran, why, and whether the student was promoted.
CREATE TABLE IF NOT EXISTS retrain_runs (
    id          INTEGER PRIMARY KEY,
    trigger     TEXT NOT NULL,               -- 'cron', 'labels', 'missed', 'manual'
    started     REAL NOT NULL,
    finished    REAL,
    status      TEXT NOT NULL CHECK (status IN ('running', 'done', 'failed', 'skipped')),
    model       TEXT,
    promoted    INTEGER,
    label_hash  TEXT,
    detail      TEXT
);
"""


def connect(path: str | Path, *, timeout: float = 30.0) -> sqlite3.Connection:
    """Open (and create) the database. Rows come back as ``sqlite3.Row``."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, timeout=timeout, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
        _migrate(conn)
    except sqlite3.DatabaseError as err:
        raise StoreError(f"cannot open database {path}: {err} (restore it from a backup or move it aside)") from err
    return conn


def _migrate(conn: sqlite3.Connection) -> None:
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    if version > SCHEMA_VERSION:
        raise StoreError(f"database schema {version} is newer than this autoclip ({SCHEMA_VERSION}): upgrade autoclip")
    if version < SCHEMA_VERSION:
        with transaction(conn):
            for stmt in _statements(SCHEMA):
                conn.execute(stmt)
            _add_columns(conn)
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")


#: columns added after a table was first released: (table, column, declaration) for older databases
ADDED_COLUMNS = (
    ("review_items", "pad_before", "REAL NOT NULL DEFAULT 0"),
    ("review_items", "pad_after", "REAL NOT NULL DEFAULT 0"),
)


def _add_columns(conn: sqlite3.Connection) -> None:
    for table, column, decl in ADDED_COLUMNS:
        have = {r["name"] for r in conn.execute(f"PRAGMA table_info({table})")}
        if column not in have:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {decl}")


def _statements(script: str) -> Iterator[str]:
    buf: list[str] = []
    for line in script.splitlines():
        code = line.split("--", 1)[0]
        buf.append(code)
        if code.rstrip().endswith(";"):
            stmt = "\n".join(buf).strip()
            if stmt:
                yield stmt
            buf = []


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on error). Nested use joins the outer transaction."""
    if conn.in_transaction:
        yield conn
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def get_meta(conn: sqlite3.Connection, key: str, default: str | None = None) -> str | None:
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return row["value"] if row else default


def set_meta(conn: sqlite3.Connection, key: str, value: str) -> None:
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        (key, value),
    )


def now() -> float:
    return time.time()
