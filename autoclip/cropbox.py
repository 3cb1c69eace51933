"""Which face-cam box a VOD uses: one answer for labels, training, scoring, shorts and the review UI.

``crop_box_for(vod, cfg)`` -> ``(box or None, source)``, where source is

* ``"profile"``: a ``[frames.profiles.NAME]`` whose glob matches the file name (always wins);
* ``"config"``: the fixed ``[frames] crop = [x, y, w, h]``;
* ``"detected"``: ``[frames] crop = "auto"`` and the face cam detected in this VOD's picture;
* ``"whole"``: no crop, or ``"auto"`` where no face cam was found with confidence.

Detections are stored in the database's ``facecams`` table keyed by the VOD's content
fingerprint, so a VOD is detected once (at probe time, by ``process``/the daemon, or on first
use) and every later use, on any path the file moves to, gets the same box. A VOD where no face
cam was found is logged once, when it is detected; ``autoclip status`` lists those VODs (``not_found``).
``clip_sources`` counts the sources of labelled clips from stored detections only (``label stats``,
and each model's metrics for ``models show``).
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autoclip import fsutil, store
from autoclip.config import Config
from autoclip.errors import AutoclipError

log = logging.getLogger(__name__)

Box = tuple[int, int, int, int]
SOURCES = ("profile", "config", "detected", "whole")
#: words for each source in reports
SOURCE_NAMES = {"profile": "crop profile", "config": "[frames] crop", "detected": "detected face cam",
                "whole": "whole frame", "undetected": "not detected yet"}
#: ``clip_sources``' keys: the sources, and "undetected" (crop = "auto", no stored detection yet)
COUNTED = (*SOURCES, "undetected")
#: the reason of the whole-frame choice of a VOD not detected yet (``choose`` with ``detect`` False)
NOT_DETECTED = "not detected yet"

_memo: dict[tuple, CropChoice] = {}
_memo_lock = threading.Lock()


@dataclass(frozen=True)
class CropChoice:
    """The box a VOD uses and why."""

    box: Box | None
    source: str
    confidence: float | None = None
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"box": list(self.box) if self.box else None, "source": self.source,
                "confidence": self.confidence, "reason": self.reason}


def crop_box_for(vod: str | os.PathLike[str], cfg: Config, *, fingerprint: str | None = None,
                 conn: sqlite3.Connection | None = None, detect: bool = True) -> tuple[Box | None, str]:
    """(box [x, y, w, h] in source pixels or None for the whole frame, source): see the module."""
    choice = choose(vod, cfg, fingerprint=fingerprint, conn=conn, detect=detect)
    return choice.box, choice.source


def choose(vod: str | os.PathLike[str], cfg: Config, *, fingerprint: str | None = None,
           conn: sqlite3.Connection | None = None, detect: bool = True) -> CropChoice:
    """The full answer for ``vod`` (``fingerprint`` saves hashing the file; with ``detect`` False
    a VOD not detected yet gets the whole frame, marked "not detected yet", and nothing is stored)."""
    fixed = cfg.frames.profile_for(vod)
    if fixed is not None:
        return CropChoice(tuple(fixed), "profile")
    crop = cfg.frames.crop
    if crop is None:
        return CropChoice(None, "whole")
    if crop != "auto":
        return CropChoice(tuple(crop), "config")
    fp = fingerprint or _fingerprint(vod)
    if fp is None:
        return CropChoice(None, "whole", reason=f"{Path(vod).name} is missing: not detected")
    key = (str(cfg.path("database")), fp)
    with _memo_lock:
        hit = _memo.get(key)
    if hit is not None:
        return hit
    with _connection(cfg, conn) as db:
        found = stored(db, fp)
        if found is None and detect:
            found = _detect_and_store(db, vod, fp, cfg)
    if found is None:
        return CropChoice(None, "whole", reason=NOT_DETECTED)
    with _memo_lock:
        _memo[key] = found
    return found


def detect_for(vod: str | os.PathLike[str], cfg: Config, *, fingerprint: str | None = None,
               conn: sqlite3.Connection | None = None) -> CropChoice:
    """Detect (or reuse the stored detection of) ``vod``'s face cam when ``crop = "auto"`` applies
    to it; the choice the VOD then uses. Called at probe time by ``process`` and the daemon."""
    return choose(vod, cfg, fingerprint=fingerprint, conn=conn, detect=True)


def _fingerprint(vod: str | os.PathLike[str]) -> str | None:
    try:
        return fsutil.fingerprint(vod)
    except OSError:
        return None


@contextmanager
def _connection(cfg: Config, conn: sqlite3.Connection | None) -> Iterator[sqlite3.Connection]:
    if conn is not None:
        yield conn
        return
    own = store.connect(cfg.path("database"))
    try:
        yield own
    finally:
        own.close()


def stored(conn: sqlite3.Connection, fingerprint: str) -> CropChoice | None:
    """The stored detection of the VOD with this fingerprint, or None."""
    row = conn.execute("SELECT box, confidence, reason FROM facecams WHERE fingerprint = ?", (fingerprint,)).fetchone()
    if row is None:
        return None
    box = json.loads(row["box"]) if row["box"] else None
    return CropChoice(tuple(box) if box else None, "detected" if box else "whole", row["confidence"], row["reason"])


def save(conn: sqlite3.Connection, fingerprint: str, vod: str | os.PathLike[str], choice: CropChoice,
         seconds: float = 0.0) -> None:
    with store.transaction(conn):
        conn.execute(
            "INSERT INTO facecams (fingerprint, vod, box, confidence, reason, seconds, detected) VALUES (?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT(fingerprint) DO UPDATE SET vod = excluded.vod, box = excluded.box, confidence = excluded.confidence, "
            "reason = excluded.reason, seconds = excluded.seconds, detected = excluded.detected",
            (fingerprint, str(vod), json.dumps(list(choice.box)) if choice.box else None, choice.confidence,
             choice.reason, seconds, time.time()))
    with _memo_lock:
        for key in [k for k in _memo if k[1] == fingerprint]:
            del _memo[key]


def _detect_and_store(conn: sqlite3.Connection, vod: str | os.PathLike[str], fp: str, cfg: Config) -> CropChoice | None:
    from autoclip import facecam

    path = fsutil.locate(vod, fp, cfg.vod_folders())
    if path is None:
        log.warning("%s: the VOD is missing, its face cam cannot be detected; the whole frame is used", Path(vod).name)
        return None
    try:
        det = facecam.detect(path, cfg.media)
    except AutoclipError as err:
        log.warning("%s: face-cam detection failed (%s); the whole frame is used", Path(vod).name, err)
        return None
    choice = CropChoice(det.box, "detected" if det.box else "whole", det.confidence, det.reason)
    if det.box is None:
        log.warning("%s: no face cam found with confidence (%s, confidence %.2f); the whole frame is used",
                    Path(vod).name, det.reason, det.confidence)
    save(conn, fp, path, choice, det.seconds)
    return choice


def not_found(conn: sqlite3.Connection, limit: int | None = 20, cfg: Config | None = None) -> list[dict[str, Any]]:
    """VODs whose face cam was not found (they use the whole frame), newest first: each with vod (its
    path when detected), name, fingerprint, confidence, reason and detected (Unix time). With ``cfg``
    only those that use the whole frame under it (none unless ``crop = "auto"``; none a profile matches)."""
    if cfg is not None and cfg.frames.crop != "auto":
        return []
    rows = conn.execute("SELECT vod, fingerprint, confidence, reason, detected FROM facecams WHERE box IS NULL "
                        "ORDER BY detected DESC").fetchall()
    out = [{**dict(r), "name": Path(r["vod"]).name} for r in rows
           if cfg is None or cfg.frames.profile_for(r["vod"]) is None]
    return out if limit is None else out[:limit]


def clip_sources(clips: Iterable[Any], cfg: Config, conn: sqlite3.Connection | None = None) -> dict[str, int]:
    """How many of ``clips`` (dataset ``Clip``s or label rows: anything with a vod and a fingerprint)
    use each source (every key of ``COUNTED``), from stored detections only: this never detects (nor
    reads a VOD); a clip of a ``crop = "auto"`` VOD with no stored detection counts as "undetected"."""
    counts = dict.fromkeys(COUNTED, 0)
    seen: dict[tuple[str, str], str] = {}
    with _connection(cfg, conn) as db:
        for c in clips:
            vod, fp = (c["vod"], c["fingerprint"]) if isinstance(c, dict) else (c.vod, c.fingerprint)
            if (vod, fp) not in seen:
                choice = choose(vod, cfg, fingerprint=fp, conn=db, detect=False)
                seen[vod, fp] = "undetected" if choice.reason == NOT_DETECTED else choice.source
            counts[seen[vod, fp]] += 1
    return counts


def describe_sources(counts: dict[str, int]) -> str:
    """``clip_sources``' counts in words: "3 crop profile, 40 detected face cam" (non-zero ones)."""
    shown = [f"{n} {SOURCE_NAMES.get(k, k)}" for k, n in counts.items() if n]
    return ", ".join(shown) or "none"


def count_sources(choices: list[CropChoice]) -> dict[str, int]:
    """How many of ``choices`` came from each source (all four keys present)."""
    counts = dict.fromkeys(SOURCES, 0)
    for c in choices:
        counts[c.source] = counts.get(c.source, 0) + 1
    return counts
