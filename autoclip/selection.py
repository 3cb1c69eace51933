"""From per-frame scores to reel segments: pure functions, no media, no torch.

The steps, in order (``select`` runs them all):

1. ``smooth``      moving average over ``smooth`` seconds;
2. ``hysteresis``  a segment starts where the smoothed score reaches ``threshold`` (raised to the
                   VOD's ``percentile`` if set) and extends while it stays >= ``low_threshold``;
3. ``merge``       detected moments closer than ``merge_gap`` become one (measured before
                   padding, so the padding does not decide what counts as one moment);
4. ``pad``         ``pad_before`` / ``pad_after`` seconds, clamped to the VOD; padded segments
                   that overlap are merged;
5. ``limit_length`` longer than ``max_length``: trimmed to a window around the peak;
6. ``snap``        each cut moves to the quietest moment of the loudness track within ``snap``
                   seconds, so a cut falls between words rather than inside one;
7. ``drop_short``  shorter than ``min_length``: dropped;
8. ``budget``      best first, while the reel stays within ``max_total`` seconds and
                   ``max_count`` segments and each pick is ``min_spacing`` from the others.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace

import numpy as np

from autoclip.config import SelectionConfig

#: loudness values within this many dB of the quietest count as equally quiet (nearest wins)
QUIET_TOLERANCE_DB = 1.0


@dataclass(frozen=True)
class Segment:
    """A time range of the VOD picked for the reel. ``score``: its highest smoothed score."""

    start: float
    end: float
    score: float
    peak: float  # time of the highest smoothed score

    @property
    def length(self) -> float:
        return self.end - self.start

    def to_dict(self) -> dict[str, float]:
        return {k: round(float(v), 3) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> Segment:
        return cls(float(d["start"]), float(d["end"]), float(d["score"]), float(d.get("peak", d["start"])))


def sample_step(times: np.ndarray) -> float:
    """Typical seconds between samples (median spacing; 1.0 with fewer than two samples)."""
    if len(times) < 2:
        return 1.0
    return float(np.median(np.diff(times)))


def smooth(times: np.ndarray, scores: np.ndarray, window: float) -> np.ndarray:
    """Centred moving average over ``window`` seconds (edges average over what exists).

    The one smoothing of scores: segment selection and the review queue's uncertain windows
    both use it. A window longer than the scores is cut to their length.
    """
    scores = np.asarray(scores, dtype=np.float64)
    n = min(int(round(window / sample_step(times))), len(scores)) if len(times) > 1 else 0
    if n <= 1:
        return scores.copy()
    kernel = np.ones(n)
    total = np.convolve(scores, kernel, mode="same")
    count = np.convolve(np.ones_like(scores), kernel, mode="same")
    return total / count


def thresholds(scores: np.ndarray, cfg: SelectionConfig) -> tuple[float, float]:
    """(start threshold, continue threshold), with the percentile cap applied."""
    high = cfg.threshold
    if cfg.percentile is not None and len(scores):
        high = max(high, float(np.percentile(scores, cfg.percentile)))
    return high, min(cfg.low_threshold, high)


def hysteresis(times: np.ndarray, smoothed: np.ndarray, high: float, low: float) -> list[Segment]:
    """Runs where ``smoothed >= low`` that reach ``high`` somewhere; each covers its samples."""
    times = np.asarray(times, dtype=np.float64)
    step = sample_step(times)
    above = np.concatenate(([False], smoothed >= low, [False]))
    edges = np.flatnonzero(np.diff(above.astype(np.int8)))
    out = []
    for i0, i1 in zip(edges[::2], edges[1::2], strict=True):  # [i0, i1) above low
        run = smoothed[i0:i1]
        if run.max() < high:
            continue
        k = i0 + int(np.argmax(run))
        out.append(Segment(float(times[i0]), float(times[i1 - 1] + step), float(run.max()), float(times[k])))
    return out


def pad(segments: Sequence[Segment], before: float, after: float, duration: float) -> list[Segment]:
    return [replace(s, start=max(0.0, s.start - before), end=min(duration, s.end + after)) for s in segments]


def _join(a: Segment, b: Segment) -> Segment:
    best = a if a.score >= b.score else b
    return Segment(min(a.start, b.start), max(a.end, b.end), best.score, best.peak)


def merge(segments: Sequence[Segment], gap: float) -> list[Segment]:
    """Merge segments that overlap, touch, or are closer than ``gap`` seconds."""
    out: list[Segment] = []
    for s in sorted(segments, key=lambda s: s.start):
        if out and s.start - out[-1].end <= gap:
            out[-1] = _join(out[-1], s)
        else:
            out.append(s)
    return out


def limit_length(segments: Sequence[Segment], max_length: float) -> list[Segment]:
    """Trim segments longer than ``max_length`` to a window centred on their peak."""
    out = []
    for s in segments:
        if s.length > max_length:
            start = min(max(s.start, s.peak - max_length / 2), s.end - max_length)
            s = replace(s, start=start, end=start + max_length)
        out.append(s)
    return out


def quietest(lt: np.ndarray, ldb: np.ndarray, t: float, lo: float, hi: float) -> float:
    """The quietest time of the loudness track within [lo, hi]; ties (within
    QUIET_TOLERANCE_DB) go to the one nearest ``t``. Returns ``t`` if the range has no samples."""
    idx = np.flatnonzero((lt >= lo) & (lt <= hi))
    if idx.size == 0:
        return t
    quiet = idx[ldb[idx] <= ldb[idx].min() + QUIET_TOLERANCE_DB]
    return float(lt[quiet[np.argmin(np.abs(lt[quiet] - t))]])


def snap(
    segments: Sequence[Segment],
    loudness: tuple[np.ndarray, np.ndarray] | None,
    distance: float,
    duration: float,
    max_length: float,
) -> list[Segment]:
    """Move each cut to the quietest moment within ``distance`` seconds.

    Cuts at the very start or end of the VOD stay. A start never moves before the previous
    segment's end; an end never passes the next segment's start or makes the segment longer
    than ``max_length``.
    """
    if loudness is None or distance <= 0 or len(loudness[0]) == 0:
        return list(segments)
    lt, ldb = (np.asarray(a, dtype=np.float64) for a in loudness)
    segs = sorted(segments, key=lambda s: s.start)
    out: list[Segment] = []
    for i, s in enumerate(segs):
        prev_end = out[-1].end if out else 0.0
        next_start = segs[i + 1].start if i + 1 < len(segs) else duration
        start = s.start
        if start > 0:
            lo = max(prev_end, s.start - distance, s.end - max_length)
            start = quietest(lt, ldb, s.start, lo, min(s.start + distance, s.end))
        end = s.end
        if end < duration:
            hi = min(s.end + distance, next_start, start + max_length, duration)
            end = quietest(lt, ldb, s.end, max(start, s.end - distance), hi)
        if end > start:
            out.append(replace(s, start=start, end=end))
    return out


def drop_short(segments: Sequence[Segment], min_length: float) -> list[Segment]:
    return [s for s in segments if s.length >= min_length and s.length > 0]


def _gap(a: Segment, b: Segment) -> float:
    return max(a.start - b.end, b.start - a.end)


def budget(segments: Sequence[Segment], max_total: float, max_count: int, min_spacing: float) -> list[Segment]:
    """Best-scoring first while the reel fits; a pick must be ``min_spacing`` from earlier picks."""
    picked: list[Segment] = []
    total = 0.0
    for s in sorted(segments, key=lambda s: (-s.score, s.start)):
        if len(picked) >= max_count:
            break
        if total + s.length > max_total + 1e-9:
            continue
        if any(_gap(s, p) < min_spacing for p in picked):
            continue
        picked.append(s)
        total += s.length
    return sorted(picked, key=lambda s: s.start)


def select(
    times: np.ndarray,
    scores: np.ndarray,
    cfg: SelectionConfig,
    *,
    duration: float,
    loudness: tuple[np.ndarray, np.ndarray] | None = None,
) -> list[Segment]:
    """All steps: per-frame scores (and the loudness track) -> the reel's segments, in time order."""
    times = np.asarray(times, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    if len(times) == 0:
        return []
    smoothed = smooth(times, scores, cfg.smooth)
    high, low = thresholds(smoothed, cfg)
    segs = hysteresis(times, smoothed, high, low)
    segs = merge(segs, cfg.merge_gap)
    segs = merge(pad(segs, cfg.pad_before, cfg.pad_after, duration), 0.0)
    segs = limit_length(segs, cfg.max_length)
    segs = snap(segs, loudness, cfg.snap, duration, cfg.max_length)
    segs = drop_short(segs, cfg.min_length)
    return budget(segs, cfg.max_total, cfg.max_count, cfg.min_spacing)
