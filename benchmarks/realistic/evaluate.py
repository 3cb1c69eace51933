"""Scoring the benchmark: frame AP, reel precision/recall/F1, the oracle, the loudness baseline.

* Frame AP: every scored frame is positive iff its time lies inside a true highlight; average
  precision of the scores (scikit-learn), pooled over the held-out VODs and per VOD.
* Reel P/R/F1: segments in the order given are matched greedily to the unmatched true highlight
  of largest IoU; a match needs IoU >= 0.3.
* The oracle answers a review item ``highlight`` iff at least half of it overlaps true highlights.
* The loudness baseline: the RMS loudness (dBFS) of the VOD's audio in 1 s windows every 0.25 s,
  smoothed; segments where it stays above a threshold, at least ``min_len`` long. Threshold and
  smoothing are tuned on the seed VODs for reel F1 and applied unchanged to the held-out VODs.
"""

from __future__ import annotations

import itertools
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

IOU = 0.3


def load_truth(path: str | Path) -> dict:
    return json.loads(Path(path).read_text())


def highlights(truth: dict) -> list[tuple[float, float]]:
    return [(h["start"], h["end"]) for h in truth["highlights"]]


def frame_labels(times: np.ndarray, spans: list[tuple[float, float]]) -> np.ndarray:
    y = np.zeros(len(times), dtype=bool)
    for a, b in spans:
        y |= (times >= a) & (times < b)
    return y


def average_precision(y: np.ndarray, s: np.ndarray) -> float | None:
    """The product's frame AP (None without both classes)."""
    from autoclip.metrics import average_precision as ap

    return ap(y, s)


def iou(a: tuple[float, float], b: tuple[float, float]) -> float:
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = max(a[1], b[1]) - min(a[0], b[0])
    return inter / union if union > 0 else 0.0


@dataclass
class Counts:
    tp: int = 0
    segments: int = 0
    truths: int = 0

    def add(self, other: Counts) -> Counts:
        return Counts(self.tp + other.tp, self.segments + other.segments, self.truths + other.truths)

    def prf(self) -> dict:
        p = self.tp / self.segments if self.segments else 0.0
        r = self.tp / self.truths if self.truths else 0.0
        f = 2 * p * r / (p + r) if p + r else 0.0
        return {"precision": round(p, 4), "recall": round(r, 4), "f1": round(f, 4),
                "tp": self.tp, "segments": self.segments, "highlights": self.truths}


def match(segments: list[tuple[float, float]], truth: list[tuple[float, float]]) -> Counts:
    free = list(truth)
    tp = 0
    for seg in segments:
        best = max(free, key=lambda t: iou(seg, t), default=None)
        if best is not None and iou(seg, best) >= IOU:
            free.remove(best)
            tp += 1
    return Counts(tp, len(segments), len(truth))


def oracle(truth: dict, start: float, end: float) -> str:
    """``highlight`` iff at least half of [start, end) overlaps true highlights, else ``normal``."""
    covered = sum(max(0.0, min(end, b) - max(start, a)) for a, b in highlights(truth))
    return "highlight" if end > start and covered >= 0.5 * (end - start) else "normal"


# ------------------------------------------------------------------------------------------
# loudness baseline
# ------------------------------------------------------------------------------------------

HOP = 0.25


def loudness(vod: str | Path, rate: int = 16000) -> tuple[np.ndarray, np.ndarray]:
    """(times, dBFS) of the audio's RMS in 1 s windows centred every ``HOP`` seconds."""
    cmd = ["ffmpeg", "-nostdin", "-v", "error", "-i", str(vod), "-vn", "-ac", "1", "-ar", str(rate), "-f", "f32le", "-"]
    proc = subprocess.run(cmd, capture_output=True, check=True)
    x = np.frombuffer(proc.stdout, dtype=np.float32).astype(np.float64)
    hop, half = int(HOP * rate), rate // 2
    csum = np.concatenate([[0.0], np.cumsum(np.square(x))])
    centres = np.arange(0, len(x), hop)
    lo, hi = np.clip(centres - half, 0, len(x)), np.clip(centres + half, 0, len(x))
    power = (csum[hi] - csum[lo]) / np.maximum(hi - lo, 1)
    times = centres / rate
    return times, 10 * np.log10(power + 1e-10)


def smooth(values: np.ndarray, seconds: float) -> np.ndarray:
    k = max(1, int(round(seconds / HOP)))
    return np.convolve(values, np.ones(k) / k, mode="same") if k > 1 else values


def segments_above(times: np.ndarray, values: np.ndarray, threshold: float, min_len: float = 2.0,
                   merge_gap: float = 1.0) -> list[tuple[float, float]]:
    on = values >= threshold
    spans, start = [], None
    for t, v in zip(times, on, strict=True):
        if v and start is None:
            start = t
        elif not v and start is not None:
            spans.append([start, t])
            start = None
    if start is not None:
        spans.append([start, float(times[-1]) + HOP])
    merged: list[list[float]] = []
    for s in spans:
        if merged and s[0] - merged[-1][1] <= merge_gap:
            merged[-1][1] = s[1]
        else:
            merged.append(s)
    return [(float(a), float(b)) for a, b in merged if b - a >= min_len]


@dataclass
class LoudnessBaseline:
    threshold: float
    smooth: float
    min_len: float

    def segments(self, track: tuple[np.ndarray, np.ndarray]) -> list[tuple[float, float]]:
        t, db = track
        return segments_above(t, smooth(db, self.smooth), self.threshold, self.min_len)


def tune_loudness(tracks: list[tuple[tuple[np.ndarray, np.ndarray], list[tuple[float, float]]]]) -> tuple[LoudnessBaseline, dict]:
    """The threshold (dB), smoothing and minimum length with the best pooled reel F1 on ``tracks``."""
    best, best_key = None, None
    for sm, ml in itertools.product((0.5, 1.0, 2.0, 3.0), (1.0, 2.0, 3.0)):
        for thr in np.arange(-40.0, -5.0, 0.5):
            base = LoudnessBaseline(float(thr), sm, ml)
            total = Counts()
            for track, truth in tracks:
                total = total.add(match(base.segments(track), truth))
            res = total.prf()
            key = (res["f1"], res["precision"])
            if best_key is None or key > best_key:
                best, best_key = (base, res), key
    assert best is not None
    return best
