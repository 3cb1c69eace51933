"""The review queue: which moments a person should answer, and saving the answers.

Choosing is pure (arrays in, ``Candidate`` lists out) so it is unit-tested without a database
or media. A processed VOD contributes every reel segment (``in-reel``: is it really a
highlight?) and the stretches outside the reel where the model is least sure (``uncertain``),
spread out so one keystroke never answers a near-duplicate question. After a training, the
labelled clips the model disagrees with most are queued as ``check-label``.

Each answer is saved at once in one transaction together with the label it creates
(source ``review``); ``undo`` walks answers back in ``decision_seq`` order.

Priority bands (higher first): in-reel 3..4 (scores nearest the threshold first: the likeliest
false positives), check-label 2..3 (by loss), uncertain 1..2 (by mean uncertainty).
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from autoclip import selection, store
from autoclip.errors import LabelError, UsageError

log = logging.getLogger(__name__)

REASONS = ("in-reel", "uncertain", "check-label")
ANSWERS = ("highlight", "normal", "skip")
STATES = ("pending", "highlight", "normal", "skipped")
#: shortest range a nudge may leave
MIN_LENGTH = 0.5
#: base priority of each reason (a score in [0, 1) is added within the band)
BAND = {"in-reel": 3.0, "check-label": 2.0, "uncertain": 1.0}
#: a reel segment partly covered by labels is asked about its uncovered part when that part
#: is at least this long and this share of the segment
MIN_PART, MIN_PART_SHARE = 1.0, 0.3

Interval = tuple[float, float]


@dataclass(frozen=True)
class Candidate:
    """A moment worth asking about."""

    start: float
    end: float
    score: float
    reason: str
    priority: float
    #: seconds of the range that are the selection's padding, not the segment (in-reel items)
    pad_before: float = 0.0
    pad_after: float = 0.0


# ---------------------------------------------------------------------------------------------
# Pure choice functions
# ---------------------------------------------------------------------------------------------


def too_close(a: Interval, b: Interval, spacing: float = 0.0) -> bool:
    """True when the two ranges overlap or their gap is shorter than ``spacing``."""
    return a[0] < b[1] + spacing and b[0] < a[1] + spacing


def uncertainty(scores: np.ndarray | float, threshold: float) -> np.ndarray:
    """1 at the decision threshold, 0 at the most confident score (0 or 1)."""
    s = np.asarray(scores, dtype=np.float64)
    return np.clip(1.0 - np.abs(s - threshold) / max(threshold, 1.0 - threshold), 0.0, 1.0)


def _window_means(times: np.ndarray, values: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Mean of ``values`` at times in [lo, hi) for each window."""
    csum = np.concatenate([[0.0], np.cumsum(values)])
    i0 = np.searchsorted(times, lo, side="left")
    i1 = np.maximum(np.searchsorted(times, hi, side="left"), i0 + 1)
    i1 = np.minimum(i1, len(values))
    i0 = np.minimum(i0, i1 - 1)
    return (csum[i1] - csum[i0]) / (i1 - i0)


def uncertain_windows(
    times: np.ndarray, scores: np.ndarray, *, threshold: float, smooth: float, length: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A window of ``length`` centred on each frame: (starts, ends, mean uncertainty, mean score)."""
    times = np.asarray(times, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    duration = float(times[-1] + selection.sample_step(times))
    length = min(length, duration)
    starts = np.clip(times - length / 2, 0.0, duration - length)
    ends = starts + length
    unc = uncertainty(selection.smooth(times, scores, smooth), threshold)
    return starts, ends, _window_means(times, unc, starts, ends), _window_means(times, scores, starts, ends)


def choose_uncertain(
    times: np.ndarray,
    scores: np.ndarray,
    *,
    threshold: float,
    count: int,
    length: float,
    min_spacing: float,
    smooth: float = 0.0,
    avoid: Sequence[Interval] = (),
    keep_away: Sequence[Interval] = (),
) -> list[Candidate]:
    """The ``count`` most uncertain windows that overlap nothing in ``avoid`` and stay
    ``min_spacing`` away from each other and from everything in ``keep_away``."""
    if count <= 0 or len(times) == 0:
        return []
    starts, ends, unc, mean_score = uncertain_windows(
        times, scores, threshold=threshold, smooth=smooth, length=length
    )
    blocked = np.zeros(len(starts), dtype=bool)
    for b0, b1 in avoid:
        blocked |= (starts < b1) & (b0 < ends)
    for b0, b1 in keep_away:
        blocked |= (starts < b1 + min_spacing) & (b0 < ends + min_spacing)
    picked: list[Candidate] = []
    for i in np.argsort(-unc, kind="stable"):
        if blocked[i]:
            continue
        window = (float(starts[i]), float(ends[i]))
        if any(too_close(window, (c.start, c.end), min_spacing) for c in picked):
            continue
        picked.append(Candidate(window[0], window[1], float(mean_score[i]), "uncertain", BAND["uncertain"] + float(unc[i])))
        if len(picked) >= count:
            break
    return picked


def uncovered(rng: Interval, covers: Sequence[Interval]) -> list[Interval]:
    """The parts of ``rng`` that none of ``covers`` overlaps, in time order."""
    parts = [rng]
    for c0, c1 in sorted(covers):
        nxt = []
        for p0, p1 in parts:
            if c1 <= p0 or p1 <= c0:
                nxt.append((p0, p1))
                continue
            if c0 > p0:
                nxt.append((p0, c0))
            if c1 < p1:
                nxt.append((c1, p1))
        parts = nxt
    return parts


def choose_reel(
    segments: Sequence[Mapping[str, float]], *, threshold: float, count: int, avoid: Sequence[Interval] = (),
    pad: tuple[float, float] = (0.0, 0.0), duration: float = float("inf"),
) -> list[Candidate]:
    """Reel segments to check, likeliest false positives (score nearest the threshold) first.

    A segment partly covered by ``avoid`` is trimmed to its longest uncovered part, if that part
    is long enough to judge; nothing already labelled or asked is asked again. ``pad``: the
    selection's (pad_before, pad_after), recorded on each item where its range still starts or
    ends with that padding (not where a trim or the VOD's start or ``duration`` cut it short).
    """
    out = []
    for seg in segments:
        rng = (float(seg["start"]), float(seg["end"]))
        if rng[1] <= rng[0]:
            continue
        part = max(uncovered(rng, avoid), key=lambda p: p[1] - p[0], default=None)
        if part is None or part[1] - part[0] < max(MIN_PART, MIN_PART_SHARE * (rng[1] - rng[0])):
            continue
        score = float(seg.get("score", threshold))
        before = pad[0] if part[0] == rng[0] and rng[0] > 0 else 0.0
        after = pad[1] if part[1] == rng[1] and rng[1] < duration else 0.0
        out.append(Candidate(part[0], part[1], score, "in-reel", BAND["in-reel"] + float(uncertainty(score, threshold)),
                             before, after))
    out.sort(key=lambda c: (-c.priority, c.start))
    return out[: max(count, 0)]


def choose_items(
    times: np.ndarray,
    scores: np.ndarray,
    segments: Sequence[Mapping[str, float]],
    *,
    per_vod: int,
    uncertain: int,
    min_spacing: float,
    length: float,
    threshold: float,
    smooth: float = 0.0,
    avoid: Sequence[Interval] = (),
    pad: tuple[float, float] = (0.0, 0.0),
) -> list[Candidate]:
    """Everything to queue for one processed VOD, highest priority first.

    At most ``per_vod`` items: up to ``uncertain`` of them uncertain stretches outside the reel,
    the rest reel segments (``pad``: the selection's padding around them). Nothing overlapping
    ``avoid`` (labels, earlier items) is chosen.
    """
    n_unc = min(uncertain, per_vod)
    times = np.asarray(times, dtype=np.float64)
    # a padded segment clamped at the VOD's end ends after the last sample (so does one whose
    # padding reaches into the last frame's interval: no padding is recorded for either)
    end = float(times[-1]) if len(times) else float("inf")
    reel = choose_reel(segments, threshold=threshold, count=per_vod - n_unc, avoid=avoid, pad=pad, duration=end)
    in_reel = [(float(s["start"]), float(s["end"])) for s in segments]
    unsure = choose_uncertain(
        np.asarray(times), np.asarray(scores), threshold=threshold, count=n_unc, length=length,
        min_spacing=min_spacing, smooth=smooth, avoid=list(avoid) + in_reel, keep_away=in_reel,
    )
    return sorted(reel + unsure, key=lambda c: -c.priority)


# ---------------------------------------------------------------------------------------------
# Database operations
# ---------------------------------------------------------------------------------------------

_COLUMNS = (
    "id, vod, fingerprint, job, model, start, end, score, reason, priority, state, created, "
    "decided, decision_seq, label_id, target_label, pad_before, pad_after"
)


def item_dict(row: sqlite3.Row | Mapping[str, Any]) -> dict[str, Any]:
    return {k: row[k] for k in row.keys()}


def _taken_ranges(conn: sqlite3.Connection, fingerprint: str) -> list[Interval]:
    """Labels and review items (any state) of one VOD: never asked about again."""
    rows = conn.execute(
        "SELECT start, end FROM labels WHERE fingerprint = ? "
        "UNION ALL SELECT start, end FROM review_items WHERE fingerprint = ?",
        (fingerprint, fingerprint),
    ).fetchall()
    return [(float(r["start"]), float(r["end"])) for r in rows]


def _insert(conn: sqlite3.Connection, c: Candidate, **cols: Any) -> int:
    cur = conn.execute(
        "INSERT INTO review_items (vod, fingerprint, job, model, start, end, score, reason, priority, "
        "created, target_label, pad_before, pad_after) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (cols["vod"], cols["fingerprint"], cols.get("job"), cols.get("model"), round(c.start, 3),
         round(c.end, 3), c.score, c.reason, c.priority, store.now(), cols.get("target_label"),
         round(c.pad_before, 3), round(c.pad_after, 3)),
    )
    return int(cur.lastrowid or 0)


def enqueue_after_process(
    conn: sqlite3.Connection,
    cfg: Any,
    *,
    vod: str,
    fingerprint: str,
    job: str | None,
    model: str | None,
    times: Sequence[float] | np.ndarray,
    scores: Sequence[float] | np.ndarray,
    segments: Sequence[Mapping[str, float]],
) -> list[int]:
    """Queue a processed VOD's reel segments and most uncertain stretches; returns the new ids."""
    with store.transaction(conn):
        chosen = choose_items(
            np.asarray(times, dtype=np.float64), np.asarray(scores, dtype=np.float64), segments,
            per_vod=cfg.review.per_vod, uncertain=cfg.review.uncertain,
            min_spacing=cfg.review.min_spacing, length=cfg.review.uncertain_length,
            threshold=cfg.selection.threshold, smooth=cfg.selection.smooth,
            avoid=_taken_ranges(conn, fingerprint), pad=(cfg.selection.pad_before, cfg.selection.pad_after),
        )
        ids = [_insert(conn, c, vod=str(vod), fingerprint=fingerprint, job=job, model=model) for c in chosen]
    log.info("queued %d review items for %s", len(ids), vod)
    return ids


def enqueue_check_labels(conn: sqlite3.Connection, cfg: Any, items: Iterable[Mapping[str, Any]]) -> list[int]:
    """Queue labelled clips the model disagrees with most (``check-label``), highest loss first.

    Each item: ``{"label_id": int, "loss": float, "score": float, "model": str | None}``
    (``score`` is the model's probability of highlight for the clip). Only clips whose loss is
    above ``review.check_min_loss`` (the model disagrees) are queued; labels that came from a
    review, or that were already queued for checking, are not asked again.
    """
    ranked = [it for it in items if float(it.get("loss", 0.0)) > cfg.review.check_min_loss]
    ranked.sort(key=lambda it: -float(it["loss"]))
    ids: list[int] = []
    with store.transaction(conn):
        for it in ranked:
            if len(ids) >= cfg.review.check_labels:
                break
            row = conn.execute("SELECT * FROM labels WHERE id = ?", (int(it["label_id"]),)).fetchone()
            if row is None or row["source"] == "review":
                continue
            seen = conn.execute(
                "SELECT 1 FROM review_items WHERE target_label = ? OR label_id = ?", (row["id"], row["id"])
            ).fetchone()
            if seen:
                continue
            loss = max(float(it.get("loss", 0.0)), 0.0)
            cand = Candidate(row["start"], row["end"], float(it.get("score", 0.0)), "check-label",
                             BAND["check-label"] + loss / (1.0 + loss))
            ids.append(_insert(conn, cand, vod=row["vod"], fingerprint=row["fingerprint"],
                               model=it.get("model"), target_label=row["id"]))
    log.info("queued %d labels to check", len(ids))
    return ids


def list_items(
    conn: sqlite3.Connection, state: str | None = None, *, limit: int | None = None
) -> list[dict[str, Any]]:
    """Items in review order: pending by priority first, then answered ones, newest answer first."""
    if state is not None and state not in STATES:
        raise UsageError(f"unknown state {state!r}: use one of {', '.join(STATES)}")
    where, params = ("WHERE state = ?", [state]) if state else ("", [])
    sql = (f"SELECT {_COLUMNS} FROM review_items {where} ORDER BY state != 'pending', "
           "priority DESC, decision_seq DESC, id")
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    return [item_dict(r) for r in conn.execute(sql, params).fetchall()]


def get_item(conn: sqlite3.Connection, item_id: int) -> dict[str, Any]:
    row = conn.execute(f"SELECT {_COLUMNS} FROM review_items WHERE id = ?", (int(item_id),)).fetchone()
    if row is None:
        raise UsageError(f"no review item {item_id} (see `autoclip review list`)")
    return item_dict(row)


def adjust(conn: sqlite3.Connection, item_id: int, *, start: float | None = None, end: float | None = None) -> dict[str, Any]:
    """Nudge a pending item's range before answering it; saved at once."""
    with store.transaction(conn):
        item = get_item(conn, item_id)
        if item["state"] != "pending":
            raise UsageError(f"review item {item_id} is already answered; undo it first")
        s = max(0.0, item["start"] if start is None else float(start))
        e = item["end"] if end is None else float(end)
        if e - s < MIN_LENGTH:
            raise UsageError(f"a review item must stay at least {MIN_LENGTH} s long")
        # a bound the reviewer set is the moment's own: no padding on that side any more
        conn.execute(
            "UPDATE review_items SET start = ?, end = ?, pad_before = CASE WHEN ? THEN 0 ELSE pad_before END, "
            "pad_after = CASE WHEN ? THEN 0 ELSE pad_after END WHERE id = ?",
            (round(s, 3), round(e, 3), round(s, 3) != item["start"], round(e, 3) != item["end"], item_id))
        return get_item(conn, item_id)


def _existing_label(conn: sqlite3.Connection, item: Mapping[str, Any], label: str) -> int | None:
    row = conn.execute(
        "SELECT id FROM labels WHERE fingerprint = ? AND start = ? AND end = ? AND label = ?",
        (item["fingerprint"], item["start"], item["end"], label),
    ).fetchone()
    return None if row is None else int(row["id"])


def _answer_label(conn: sqlite3.Connection, item: Mapping[str, Any], label: str) -> tuple[int | None, str | None]:
    """Create the answer's label; for check-label items replace the checked label.

    Returns (label id created by this answer or None, JSON of a replaced label or None).
    """
    from autoclip import labels

    replaced = None
    target = None
    if item["target_label"] is not None:
        target = conn.execute("SELECT * FROM labels WHERE id = ?", (item["target_label"],)).fetchone()
    if target is not None:
        if target["label"] == label and (target["start"], target["end"]) == (item["start"], item["end"]):
            return None, None  # the label was right: leave it as it is
        replaced = json.dumps(item_dict(target))
        labels.delete_label(conn, int(target["id"]))
    if _existing_label(conn, item, label) is not None:
        return None, replaced  # someone labelled exactly this already; undo must not delete theirs
    label_id = labels.add_label(
        conn, item["vod"], float(item["start"]), float(item["end"]), label, "review",
        review_id=int(item["id"]), fingerprint=item["fingerprint"],
    )
    return int(label_id), replaced


def mark(conn: sqlite3.Connection, item_id: int, label: str) -> dict[str, Any]:
    """Answer a pending item: ``highlight``/``normal`` (creates a review label) or ``skip``."""
    if label not in ANSWERS:
        raise UsageError(f"unknown answer {label!r}: use highlight, normal or skip")
    with store.transaction(conn):
        item = get_item(conn, item_id)
        if item["state"] != "pending":
            raise UsageError(f"review item {item_id} is already answered ({item['state']}); undo it first")
        label_id, replaced = (None, None) if label == "skip" else _answer_label(conn, item, label)
        (seq,) = conn.execute("SELECT COALESCE(MAX(decision_seq), 0) + 1 FROM review_items").fetchone()
        conn.execute(
            "UPDATE review_items SET state = ?, decided = ?, decision_seq = ?, label_id = ?, replaced = ? "
            "WHERE id = ?",
            ("skipped" if label == "skip" else label, store.now(), seq, label_id, replaced, item_id),
        )
        return get_item(conn, item_id)


def _restore(conn: sqlite3.Connection, item_id: int, replaced: str) -> None:
    from autoclip import labels

    old = json.loads(replaced)
    try:
        new_id = labels.add_label(conn, old["vod"], old["start"], old["end"], old["label"], old["source"],
                                  fingerprint=old["fingerprint"])
    except LabelError as err:
        log.warning("could not restore label %s on undo: %s", old.get("id"), err)
        return
    conn.execute("UPDATE review_items SET target_label = ? WHERE id = ?", (new_id, item_id))


def undo(conn: sqlite3.Connection, steps: int = 1) -> list[dict[str, Any]]:
    """Revert the ``steps`` most recent answers (labels removed, items pending again)."""
    from autoclip import labels

    if steps < 1:
        raise UsageError("undo needs --steps of at least 1")
    with store.transaction(conn):
        rows = conn.execute(
            "SELECT id, label_id, replaced FROM review_items WHERE decision_seq IS NOT NULL "
            "ORDER BY decision_seq DESC LIMIT ?", (int(steps),),
        ).fetchall()
        for row in rows:
            if row["label_id"] is not None and conn.execute(
                "SELECT 1 FROM labels WHERE id = ?", (row["label_id"],)
            ).fetchone():
                labels.delete_label(conn, int(row["label_id"]))
            if row["replaced"]:
                _restore(conn, row["id"], row["replaced"])
            conn.execute(
                "UPDATE review_items SET state = 'pending', decided = NULL, decision_seq = NULL, "
                "label_id = NULL, replaced = NULL WHERE id = ?", (row["id"],),
            )
        return [get_item(conn, r["id"]) for r in rows]


def _midnight() -> float:
    today = _dt.datetime.now().astimezone().replace(hour=0, minute=0, second=0, microsecond=0)
    return today.timestamp()


def progress(conn: sqlite3.Connection) -> dict[str, Any]:
    """Answered today, pending count, and the class balance of all labels."""
    (today,) = conn.execute(
        "SELECT COUNT(*) FROM review_items WHERE decided >= ?", (_midnight(),)
    ).fetchone()
    (pending,) = conn.execute("SELECT COUNT(*) FROM review_items WHERE state = 'pending'").fetchone()
    balance = {"highlight": 0, "normal": 0}
    for row in conn.execute("SELECT label, COUNT(*) AS n FROM labels GROUP BY label"):
        balance[row["label"]] = int(row["n"])
    return {"answered_today": int(today), "pending": int(pending), "labels": balance}
