"""The parts of a training run around the loop: the single-run lock, the ``retrain_runs`` record,
and the teacher's pseudo-labels (the loop itself is in ``train``, which imports this)."""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import math
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from autoclip import store
from autoclip.config import Config

if TYPE_CHECKING:
    from autoclip.dataset import Clip
    from autoclip.featcache import FeatureCache
    from autoclip.registry import LoadedModel

log = logging.getLogger(__name__)

LOCK_NAME = ".train.lock"
#: extra seconds kept clear of human labels when taking pseudo-labels
PSEUDO_MARGIN = 2.0


class TrainLock:
    """An exclusive, non-blocking lock on the models folder: one training at a time.

    The kernel drops it when the process dies, so a killed training never leaves it stuck.
    """

    def __init__(self, folder: Path) -> None:
        self.path = Path(folder) / LOCK_NAME
        self.fd: int | None = None
        self.acquired = False

    def __enter__(self) -> TrainLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            self.acquired = True
        except BlockingIOError:
            self.acquired = False
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fd is not None:
            if self.acquired:
                fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


class RunRecord:
    """A ``retrain_runs`` row: 'running' while training, then 'done', 'skipped' or 'failed'."""

    def __init__(self, conn: sqlite3.Connection, trigger: str) -> None:
        self.conn, self.trigger = conn, trigger
        self.id: int | None = None

    def __enter__(self) -> RunRecord:
        with store.transaction(self.conn):
            # we hold the training lock: any other 'running' row belongs to a killed process
            self.conn.execute("UPDATE retrain_runs SET status = 'failed', finished = ?, "
                              "detail = 'interrupted (process killed)' WHERE status = 'running'", (store.now(),))
            cur = self.conn.execute("INSERT INTO retrain_runs (trigger, started, status) VALUES (?, ?, 'running')",
                                    (self.trigger, store.now()))
        self.id = int(cur.lastrowid or 0)
        return self

    def finish(self, result: dict[str, Any]) -> None:
        status = "skipped" if result.get("skipped") else "done"
        self._update(status, result.get("model"), result.get("promoted"), result.get("label_hash"), result.get("reason"))

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if exc is not None:
            self._update("failed", None, None, None, (str(exc).splitlines() or [type(exc).__name__])[0][:500])

    def _update(self, status: str, model: str | None, promoted: bool | None, label_hash: str | None,
                detail: str | None) -> None:
        with contextlib.suppress(sqlite3.Error), store.transaction(self.conn):
            self.conn.execute(
                "UPDATE retrain_runs SET status = ?, finished = ?, model = ?, promoted = ?, "
                "label_hash = COALESCE(?, label_hash), detail = ? WHERE id = ?",
                (status, store.now(), model, None if promoted is None else int(bool(promoted)), label_hash,
                 detail, self.id),
            )


def record_skipped(conn: sqlite3.Connection, trigger: str, reason: str) -> None:
    with store.transaction(conn):
        conn.execute("INSERT INTO retrain_runs (trigger, started, finished, status, detail) "
                     "VALUES (?, ?, ?, 'skipped', ?)", (trigger, store.now(), store.now(), reason))


def recent_runs(conn: sqlite3.Connection, limit: int = 20) -> list[dict[str, Any]]:
    rows = conn.execute("SELECT * FROM retrain_runs ORDER BY id DESC LIMIT ?", (limit,))
    return [dict(r) for r in rows]


# ---------------------------------------------------------------------------------------------
# Teacher -> pseudo-labels
# ---------------------------------------------------------------------------------------------


def scored_jobs(cfg: Config) -> list[tuple[dict[str, Any], Path]]:
    """(process record, scores.npz) of every processed VOD under cfg.path("jobs")."""
    out = []
    root = cfg.path("jobs")
    if not root.is_dir():
        return out
    for npz in sorted(root.glob("*/scores.npz")):
        try:
            record = json.loads((npz.parent / "process.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(record, dict) and record.get("fingerprint") and record.get("vod"):
            out.append((record, npz))
    return out


def _read_scores(npz: Path) -> tuple[np.ndarray, np.ndarray] | None:
    try:
        with np.load(npz, allow_pickle=False) as z:
            times, scores = np.asarray(z["times"], np.float64), np.asarray(z["scores"], np.float32)
    except (OSError, KeyError, ValueError) as err:
        log.warning("ignoring unreadable job scores %s (%s)", npz, err)
        return None
    if times.shape != scores.shape:
        log.warning("ignoring job scores %s: times and scores differ in length", npz)
        return None
    return times, scores


@dataclass(frozen=True)
class PseudoPlan:
    """How many pseudo-labels a training may take and how sure the teacher must be."""

    positive: float | None  # teacher probability at or above which a frame is a pseudo-highlight
    negative: float | None  # ... at or below which it is a pseudo-normal
    max_n: int  # frames, so that their total weight stays within the cap
    note: str


def plan_pseudo(cfg: Config, human_weight: float, val_labels: np.ndarray, val_probs: np.ndarray) -> PseudoPlan:
    """Thresholds chosen on validation frames the teacher never trained on (pseudo-highlights at
    least ``pseudo_precision`` precise, pseudo-normals as pure), and a count whose total weight is
    at most ``pseudo_ratio`` of the human labels' (the teacher's guesses never outweigh people)."""
    from autoclip.compare import purity_threshold

    t = cfg.train
    cap = int(math.floor(t.pseudo_ratio * human_weight / max(t.pseudo_weight, 1e-9)))
    max_n = max(0, min(t.pseudo_max, cap))
    pos = purity_threshold(val_labels, val_probs, target=t.pseudo_precision, positive=True, floor=t.pseudo_confidence)
    neg = purity_threshold(val_labels, val_probs, target=t.pseudo_precision, positive=False, floor=t.pseudo_confidence)
    shown = "/".join("none" if x is None else f"{x:.3f}" for x in (pos, neg))
    note = (f"thresholds (highlight/normal) {shown} from {len(val_labels)} validation frames; "
            f"at most {max_n} frames (weight {t.pseudo_weight:g} each, <= {t.pseudo_ratio:g} x {human_weight:.0f})")
    return PseudoPlan(pos, neg, max_n, note)


@dataclass
class PseudoSet:
    """Pseudo-labelled samples and where they come from (VOD fingerprint, time)."""

    frames: np.ndarray
    mels: np.ndarray
    targets: np.ndarray  # soft: the teacher's probability
    fingerprints: np.ndarray
    times: np.ndarray

    def __len__(self) -> int:
        return len(self.targets)


def gather_pseudo(cfg: Config, cache: FeatureCache, teacher: LoadedModel, clips: list[Clip],
                  plan: PseudoPlan) -> PseudoSet:
    """Samples the teacher is sure of, from processed VODs' frames that no human labelled (every
    labelled range, of any split and either class, is kept clear with a margin)."""
    from autoclip.dataset import pseudo_samples
    from autoclip.fitting import segments_from_times
    from autoclip.model import predict

    jobs = scored_jobs(cfg)
    frames, mels, targets, fps, times = [], [], [], [], []
    budget = math.ceil(plan.max_n / max(len(jobs), 1))
    margin = PSEUDO_MARGIN + cfg.audio.window / 2
    for record, npz in jobs if plan.max_n > 0 else []:
        fp = record["fingerprint"]
        scored = _read_scores(npz)
        if scored is None:
            continue
        ranges = [(c.start, c.end) for c in clips if c.fingerprint == fp]
        t, f, m, soft = pseudo_samples(cfg, cache, record["vod"], fp, scored[0], scored[1],
                                       positive=plan.positive, negative=plan.negative, max_n=budget,
                                       exclude_ranges=ranges, margin=margin)
        if len(soft) and record.get("model") != teacher.id:
            # scored by an older model: ask the teacher itself and keep what it is sure of
            soft = predict(teacher.net, f, m, seg=segments_from_times(np.zeros(len(t)), t, cfg.frames.fps))
            sure = _sure(soft, plan)
            t, f, m, soft = t[sure], f[sure], m[sure], soft[sure]
        frames.append(f)
        mels.append(m)
        targets.append(soft.astype(np.float32))
        times.append(t)
        fps.append(np.full(len(t), fp))
    if not targets:
        s = cfg.frames.size
        return PseudoSet(np.zeros((0, s, s, 3), np.uint8), np.zeros((0, 1, 1), np.float32), np.zeros(0, np.float32),
                         np.zeros(0, dtype=str), np.zeros(0))
    y = np.concatenate(targets)
    keep = np.sort(np.random.default_rng(cfg.train.seed).permutation(len(y))[: plan.max_n])
    return PseudoSet(np.concatenate(frames)[keep], np.concatenate(mels)[keep], y[keep],
                     np.concatenate(fps)[keep], np.concatenate(times)[keep])


def _sure(soft: np.ndarray, plan: PseudoPlan) -> np.ndarray:
    sure = np.zeros(len(soft), dtype=bool)
    if plan.positive is not None:
        sure |= soft >= plan.positive
    if plan.negative is not None:
        sure |= soft <= plan.negative
    return sure
