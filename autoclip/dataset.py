"""From labelled segments to training samples: clips and their decoded frames and windows.

* ``load_clips`` turns the labels table into ``Clip``s (label 1 = highlight); the splits are
  made by ``splits.split_clips``.
* ``clip_samples`` / ``pseudo_samples`` decode (or fetch from the cache) the frames and log-mel
  windows of a labelled clip, or of the moments of a processed VOD a teacher model was sure of,
  through the on-disk ``featcache.FeatureCache``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from autoclip import fsutil
from autoclip.config import Config
from autoclip.errors import AutoclipError, LabelError
from autoclip.featcache import Arrays, FeatureCache, decode_settings

log = logging.getLogger(__name__)

#: pseudo-label frames are decoded in blocks of this many seconds on a fixed grid (cache reuse)
PSEUDO_BLOCK = 4.0
#: with frames_per_clip set, clips longer than this many times the cap are decoded sparsely
SPARSE_FACTOR = 3
#: a frame cap is taken as runs of this many consecutive frames (the temporal layer's context)
RUN = 8
#: seconds a reel answer must keep once its padding is left out (else it is decoded whole)
MIN_CORE = 1.0

Samples = tuple[np.ndarray, np.ndarray, np.ndarray]


@dataclass(frozen=True)
class Clip:
    """One labelled segment: ``label`` is 1 for highlight, 0 for normal."""

    vod: str
    fingerprint: str
    start: float
    end: float
    label: int
    label_id: int
    #: the label answers a review item that was in a reel (reel precision is measured on these)
    in_reel: bool = False
    #: the label answers a review item (a queued range, padding included), not a range a person drew
    reviewed: bool = False
    #: seconds at the start / end of the range that are the selection's padding (in-reel answers)
    pad: tuple[float, float] = (0.0, 0.0)

    @property
    def duration(self) -> float:
        return self.end - self.start

    def sampled(self) -> Clip:
        """The clip whose frames are decoded: a "highlight" answer to a reel segment without the
        padding the selection put around it (lead-in and tail, mostly calm: measured on the
        realistic benchmark, 61 % of such answers' frames were in a highlight, 88 % without the
        padding), unless too little would be left. Its identity (split, hash) stays the range."""
        if self.label != 1 or self.pad == (0.0, 0.0):
            return self
        start, end = self.start + self.pad[0], self.end - self.pad[1]
        if end - start < MIN_CORE:
            return self
        return replace(self, start=start, end=end, pad=(0.0, 0.0))


def load_clips(conn: sqlite3.Connection) -> list[Clip]:
    """Every label as a ``Clip``, ordered by VOD fingerprint and time."""
    rows = conn.execute(
        "SELECT l.id, l.vod, l.fingerprint, l.start, l.end, l.label, r.reason, r.pad_before, r.pad_after, "
        "r.start AS item_start, r.end AS item_end FROM labels l "
        "LEFT JOIN review_items r ON r.id = l.review_id ORDER BY l.fingerprint, l.start, l.end, l.id"
    )
    return [
        Clip(r["vod"], r["fingerprint"], float(r["start"]), float(r["end"]), int(r["label"] == "highlight"),
             int(r["id"]), r["reason"] == "in-reel", r["reason"] is not None, _padding(r))
        for r in rows
    ]


def _padding(row: sqlite3.Row) -> tuple[float, float]:
    """The padding of the review item a label answers, when the label has the item's range."""
    if row["reason"] != "in-reel" or (row["item_start"], row["item_end"]) != (row["start"], row["end"]):
        return (0.0, 0.0)
    return (float(row["pad_before"] or 0.0), float(row["pad_after"] or 0.0))


def label_set_hash(clips: Sequence[Clip]) -> str:
    """A hash of what the clips say (VOD content, range, label), independent of order and paths."""
    items = sorted((c.fingerprint, round(c.start, 3), round(c.end, 3), c.label) for c in clips)
    return hashlib.sha256(json.dumps(items).encode()).hexdigest()[:16]


def locate_vod(vod: str | Path, fingerprint: str, cfg: Config) -> Path:
    """The VOD file with this content: at its labelled path, else by name in done/ or the inbox."""
    found = fsutil.locate(vod, fingerprint, cfg.vod_folders())
    if found is not None:
        return found
    raise LabelError(
        f"VOD {vod} is missing (or changed) and its features are not cached: put the file back, "
        "or delete its labels (see `autoclip label stats`)"
    )


# ---- Decoding samples ----------------------------------------------------------------------


def _empty(cfg: Config) -> Arrays:
    from autoclip.features import mel_frames

    s = cfg.frames.size
    return {
        "times": np.zeros(0, np.float64),
        "frames": np.zeros((0, s, s, 3), np.uint8),
        "mels": np.zeros((0, cfg.audio.n_mels, mel_frames(cfg.audio)), np.float32),
    }


def _concat(parts: list[Arrays], cfg: Config) -> Arrays:
    if not parts:
        return _empty(cfg)
    return {k: np.concatenate([p[k] for p in parts]) for k in ("times", "frames", "mels")}


def _decode_range(path: Path, cfg: Config, start: float, end: float, crop: Any, info: Any = None) -> Arrays:
    from autoclip.features import SampleReader

    reader = SampleReader(path, cfg, start=max(0.0, start), end=end, info=info, crop=crop)
    parts = [{"times": b.times, "frames": b.frames, "mels": b.mels} for b in reader]
    return _concat(parts, cfg)


def _nearest(decoded: Arrays, targets: np.ndarray, tol: float) -> np.ndarray:
    """Index into ``decoded`` of the sample nearest each target, -1 when none is within ``tol``."""
    times = decoded["times"]
    if len(times) == 0:
        return np.full(len(targets), -1)
    j = np.clip(np.searchsorted(times, targets), 1, max(1, len(times) - 1))
    left = np.clip(j - 1, 0, len(times) - 1)
    right = np.clip(j, 0, len(times) - 1)
    pick = np.where(np.abs(times[left] - targets) <= np.abs(times[right] - targets), left, right)
    return np.where(np.abs(times[pick] - targets) <= tol, pick, -1)


def _take(arrays: Arrays, idx: np.ndarray) -> Arrays:
    return {k: arrays[k][idx] for k in ("times", "frames", "mels")}


def _middle_indices(n: int, k: int) -> np.ndarray:
    """``k`` evenly spaced indices of ``n``, centred (the middle of each of k equal parts)."""
    if k >= n:
        return np.arange(n)
    if k <= 0:
        return np.zeros(0, dtype=int)
    return np.unique(np.floor((np.arange(k) + 0.5) * n / k).astype(int))


def _run_indices(n: int, k: int, run: int = RUN) -> np.ndarray:
    """``k`` of ``n`` indices as runs of ``run`` consecutive ones, the runs evenly spread."""
    if k >= n:
        return np.arange(n)
    if k <= 0:
        return np.zeros(0, dtype=int)
    runs = max(1, math.ceil(k / run))
    size = k // runs
    out = []
    for c in _middle_indices(n, runs):
        a = int(np.clip(c - size // 2, 0, n - size))
        out.append(np.arange(a, a + size))
    return np.unique(np.concatenate(out))


def _decode_sparse(path: Path, cfg: Config, clip: Clip, k: int, crop: Any, info: Any) -> Arrays:
    """Runs of consecutive frames (as ``_run_indices`` picks them) decoded around their times only."""
    step = 1.0 / cfg.frames.fps
    runs = max(1, math.ceil(k / RUN))
    size = k // runs
    parts = []
    for i in range(runs):
        centre = clip.start + (i + 0.5) * clip.duration / runs
        lo = max(clip.start, centre - size * step / 2)
        window = _decode_range(path, cfg, lo, min(clip.end, lo + size * step), crop, info)
        parts.append(_take(window, np.arange(min(size, len(window["times"])))))
    return _concat(parts, cfg)


def clip_samples(clip: Clip, cfg: Config, cache: FeatureCache, *, cap: int | None = None) -> Samples:
    """(times, frames uint8 NHWC, mels float32) of a labelled clip, decoded once and cached.

    With a cap (``cap``, else ``cfg.train.frames_per_clip``; 0: none), that many frames are
    returned as runs of ``RUN`` consecutive frames spread evenly over the clip (long clips are
    then decoded only around those runs).
    """
    clip = clip.sampled()
    settings = decode_settings(cfg, clip.vod, clip.fingerprint)
    k = cfg.train.frames_per_clip if cap is None else cap
    sparse = k > 0 and clip.duration * cfg.frames.fps > SPARSE_FACTOR * k
    key = {**settings, "range": [clip.start, clip.end], **({"runs": [k, RUN]} if sparse else {})}

    def decode() -> Arrays:
        from autoclip import media

        path = locate_vod(clip.vod, clip.fingerprint, cfg)
        info = media.probe(path, cfg.media)
        crop = tuple(settings["crop"]) if settings["crop"] else None
        if clip.start >= info.duration:
            return _empty(cfg)
        if sparse:
            return _decode_sparse(path, cfg, clip, k, crop, info)
        return _decode_range(path, cfg, clip.start, min(clip.end, info.duration), crop, info)

    arrays = cache.fetch(clip.fingerprint, key, decode)
    if not sparse and k > 0:
        arrays = _take(arrays, _run_indices(len(arrays["times"]), k))
    if len(arrays["times"]) == 0:
        log.warning("label #%d (%s %.2f-%.2f) yields no frames", clip.label_id, Path(clip.vod).name, clip.start, clip.end)
    return arrays["times"], arrays["frames"], arrays["mels"]


# ---- Pseudo-labels from a teacher ----------------------------------------------------------


def _excluded(times: np.ndarray, ranges: Sequence[tuple[float, float]], margin: float) -> np.ndarray:
    out = np.zeros(len(times), dtype=bool)
    for a, b in ranges:
        out |= (times >= a - margin) & (times <= b + margin)
    return out


def _choose_blocks(times: np.ndarray, positive: np.ndarray, max_n: int) -> list[int]:
    """Grid blocks to decode: about half the budget from blocks with confident positives, the
    rest from blocks with confident negatives (then positives again if negatives run short),
    in a fixed pseudo-random order."""
    block = np.floor(times / PSEUDO_BLOCK).astype(int)
    rng = np.random.default_rng(0)
    chosen: list[int] = []
    taken = 0
    for want_pos, budget in ((True, max_n // 2), (False, max_n), (True, max_n)):
        ids = np.unique(block[positive == want_pos])
        for b in ids[rng.permutation(len(ids))]:
            if taken >= budget:
                break
            if int(b) not in chosen:
                chosen.append(int(b))
                taken += int(np.sum(block == b))
    return sorted(chosen)


def pseudo_samples(
    cfg: Config,
    cache: FeatureCache,
    vod: str | Path,
    fingerprint: str,
    times: np.ndarray,
    teacher_scores: np.ndarray,
    *,
    positive: float | None,
    negative: float | None,
    max_n: int,
    exclude_ranges: Sequence[tuple[float, float]] = (),
    margin: float = 2.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(times, frames, mels, soft_targets) at moments of a VOD the teacher was confident about.

    Confident means a teacher probability >= ``positive`` or <= ``negative`` (None: no samples
    of that class). Times within ``margin`` seconds of ``exclude_ranges`` (every human-labelled
    segment) are skipped, so no pseudo-label ever lands on a range a human labelled. Only
    short fixed-grid blocks around the chosen times are decoded, and each block is cached.
    """
    times = np.asarray(times, dtype=np.float64)
    scores = np.asarray(teacher_scores, dtype=np.float32)
    sure = np.zeros(len(scores), dtype=bool)
    if positive is not None:
        sure |= scores >= positive
    if negative is not None:
        sure |= scores <= negative
    keep = sure & ~_excluded(times, exclude_ranges, margin)
    cand_t, cand_s = times[keep], scores[keep]
    empty = _empty(cfg)
    none = (empty["times"], empty["frames"], empty["mels"], np.zeros(0, np.float32))
    if max_n <= 0 or len(cand_t) == 0:
        return none
    settings = decode_settings(cfg, vod, fingerprint)
    source = BlockSource(vod, fingerprint, cfg, tuple(settings["crop"]) if settings["crop"] else None)
    tol = 0.5 / cfg.frames.fps + 1e-6
    parts, targets = [], []
    for b in _choose_blocks(cand_t, cand_s >= 0.5, max_n):
        lo, hi = b * PSEUDO_BLOCK, (b + 1) * PSEUDO_BLOCK
        arrays = source.block(cache, {**settings, "block": [lo, hi]}, lo, hi)
        if arrays is None:
            continue
        in_block = (cand_t >= lo) & (cand_t < hi)
        idx = _nearest(arrays, cand_t[in_block], tol)
        parts.append(_take(arrays, idx[idx >= 0]))
        targets.append(cand_s[in_block][idx >= 0])
    out = _concat(parts, cfg)
    soft = np.concatenate(targets).astype(np.float32) if targets else none[3]
    order = _balanced_cap(soft, max_n)
    return out["times"][order], out["frames"][order], out["mels"][order], soft[order]


class BlockSource:
    """Decodes grid blocks of one VOD on cache misses (pseudo-labels, self-supervised
    pretraining); probes once; gives up once if the file is gone, keeping what is cached."""

    def __init__(self, vod: str | Path, fingerprint: str, cfg: Config, crop: Any, purpose: str = "pseudo-labels") -> None:
        self.vod, self.fingerprint, self.cfg, self.crop, self.purpose = vod, fingerprint, cfg, crop, purpose
        self.path: Path | None = None
        self.info: Any = None
        self.gone = False

    def _open(self) -> bool:
        if self.path is None and not self.gone:
            from autoclip import media

            try:
                path = locate_vod(self.vod, self.fingerprint, self.cfg)
                self.info = media.probe(path, self.cfg.media)
                self.path = path
            except AutoclipError as err:
                log.warning("%s of %s: only cached blocks are used (%s)", self.purpose, Path(self.vod).name, err)
                self.gone = True
        return self.path is not None

    def duration(self) -> float | None:
        """The VOD's duration, or None when the file cannot be read."""
        return float(self.info.duration) if self._open() else None

    def block(self, cache: FeatureCache, key: dict[str, Any], lo: float, hi: float) -> Arrays | None:
        arrays = cache.get(self.fingerprint, key)
        if arrays is not None or self.gone:
            return arrays
        if not self._open():
            return None
        assert self.path is not None
        if lo >= self.info.duration:
            return None
        try:
            arrays = _decode_range(self.path, self.cfg, lo, min(hi, self.info.duration), self.crop, self.info)
        except AutoclipError as err:
            log.warning("%s of %s: only cached blocks are used (%s)", self.purpose, Path(self.vod).name, err)
            self.gone = True
            return None
        cache.misses += 1
        cache.put(self.fingerprint, key, arrays)
        return arrays


def _balanced_cap(soft: np.ndarray, max_n: int) -> np.ndarray:
    """Indices (in time order) of at most ``max_n`` samples, positives first up to half."""
    pos = np.flatnonzero(soft >= 0.5)
    neg = np.flatnonzero(soft < 0.5)
    n_pos = min(len(pos), max(max_n // 2, max_n - len(neg)))
    n_neg = min(len(neg), max_n - n_pos)
    keep = np.concatenate([pos[_middle_indices(len(pos), n_pos)], neg[_middle_indices(len(neg), n_neg)]])
    return np.sort(keep)
