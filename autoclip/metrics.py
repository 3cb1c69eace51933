"""Evaluation numbers (scikit-learn) and the PNG plots a person looks at (matplotlib, Agg).

Clip-level numbers are primary: a clip's score is the mean probability of its frames, its label
the human label. Frame-level average precision is reported beside them (finer-grained, used to
break ties during early stopping). ``match_segments`` and ``frames_in`` compare what was found
with known highlights (generated VODs' ground truth: the demo, the tests and the experiments).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


#: a found segment matches a true one when it covers more than this fraction of the true one
MIN_COVER = 0.3

Interval = tuple[float, float]


@dataclass(frozen=True)
class SegmentMatch:
    """How found segments line up with true ones (see ``match_segments``)."""

    found: int  #: true segments matched by some found segment
    truth: int  #: true segments
    right: int  #: found segments matching some true segment
    segments: int  #: found segments

    @property
    def recall(self) -> float:
        return self.found / self.truth if self.truth else 1.0

    @property
    def precision(self) -> float:
        return self.right / self.segments if self.segments else 1.0

    def describe(self) -> str:
        return (f"{self.segments} segments: {self.found} of {self.truth} planted highlights found, "
                f"{self.right} of {self.segments} segments are planted highlights")


def overlap(a: Interval, b: Interval) -> float:
    """Seconds shared by two ranges."""
    return max(0.0, min(a[1], b[1]) - max(a[0], b[0]))


def match_segments(found: Sequence[Interval], truth: Sequence[Interval], min_cover: float = MIN_COVER) -> SegmentMatch:
    """Match found segments against true ones: a pair matches when the found one covers more than
    ``min_cover`` of the true one's length."""
    def hit(f: Interval, t: Interval) -> bool:
        return overlap(f, t) > min_cover * (t[1] - t[0])

    return SegmentMatch(found=sum(any(hit(f, t) for f in found) for t in truth), truth=len(truth),
                        right=sum(any(hit(f, t) for t in truth) for f in found), segments=len(found))


def frames_in(times: np.ndarray, segments: Sequence[Interval]) -> np.ndarray:
    """True for each time inside one of ``segments`` (``start <= t < end``): frame-level truth."""
    times = np.asarray(times, dtype=np.float64)
    out = np.zeros(len(times), dtype=bool)
    for a, b in segments:
        out |= (times >= a) & (times < b)
    return out


def _finite(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def average_precision(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """AP, or None when only one class is present (undefined)."""
    from sklearn.metrics import average_precision_score

    labels = np.asarray(labels).astype(int)
    if len(labels) == 0 or labels.min() == labels.max():
        return None
    ap = _finite(average_precision_score(labels, scores))
    return None if ap is None else min(1.0, max(0.0, ap))  # a sum of precisions can round past 1


def paired_ap_noise(labels: np.ndarray, a: np.ndarray, b: np.ndarray, clip_index: np.ndarray, *,
                    rounds: int = 300, seed: int = 0) -> float:
    """Standard error of AP(a) - AP(b) on the same frames, by a paired bootstrap over clips.

    A clip's frames move together (they are near-duplicates), so clips, not frames, are drawn
    with replacement. Resamples with one class only are skipped; 0.0 when none is usable.
    """
    labels = np.asarray(labels).astype(bool)
    clip_index = np.asarray(clip_index)
    clips = np.unique(clip_index)
    if len(clips) < 2:
        return 0.0
    rows = [np.flatnonzero(clip_index == c) for c in clips]
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(rounds):
        idx = np.concatenate([rows[i] for i in rng.integers(0, len(clips), len(clips))])
        y = labels[idx]
        if y.all() or not y.any():
            continue
        diffs.append(average_precision(y, a[idx]) - average_precision(y, b[idx]))
    return float(np.std(diffs)) if len(diffs) >= 10 else 0.0


def log_loss(labels: np.ndarray, probs: np.ndarray) -> float | None:
    """Mean binary cross-entropy of probabilities against labels (None when empty)."""
    from sklearn.metrics import log_loss as sk_log_loss

    labels = np.asarray(labels).astype(int)
    if len(labels) == 0:
        return None
    return _finite(sk_log_loss(labels, np.clip(probs, 1e-7, 1 - 1e-7), labels=[0, 1]))


def classification(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, Any]:
    """AP, precision/recall/F1 at ``threshold`` and the confusion matrix [[tn, fp], [fn, tp]]."""
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    labels = np.asarray(labels).astype(int)
    scores = np.asarray(scores, dtype=np.float64)
    pred = (scores >= threshold).astype(int)
    out: dict[str, Any] = {
        "n": int(len(labels)),
        "positives": int(labels.sum()),
        "ap": average_precision(labels, scores),
        "threshold": float(threshold),
    }
    if len(labels) == 0:
        out.update(precision=None, recall=None, f1=None, confusion=[[0, 0], [0, 0]])
        return out
    p, r, f, _ = precision_recall_fscore_support(labels, pred, average="binary", zero_division=0)
    out.update(
        precision=float(p), recall=float(r), f1=float(f),
        confusion=confusion_matrix(labels, pred, labels=[0, 1]).tolist(),
    )
    return out


def clip_scores(frame_scores: np.ndarray, clip_index: np.ndarray, n_clips: int) -> np.ndarray:
    """Mean frame probability per clip."""
    sums = np.bincount(clip_index, weights=frame_scores, minlength=n_clips)
    counts = np.bincount(clip_index, minlength=n_clips)
    return np.where(counts > 0, sums / np.maximum(counts, 1), 0.0)


def split_metrics(
    clip_labels: np.ndarray, clip_prob: np.ndarray, frame_labels: np.ndarray, frame_prob: np.ndarray,
    threshold: float,
) -> dict[str, Any]:
    """The metrics block for one split (``metrics.json`` -> val / test)."""
    out = classification(clip_labels, clip_prob, threshold)
    out["clips"] = out.pop("n")
    out["frames"] = int(len(frame_labels))
    out["frame_ap"] = average_precision(frame_labels, frame_prob)
    return out


# ---------------------------------------------------------------------------------------------
# Plots
# ---------------------------------------------------------------------------------------------


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def plot_pr(curves: dict[str, tuple[np.ndarray, np.ndarray]], path: Path) -> Path | None:
    """Precision-recall curves, one per named (labels, scores) pair that has both classes."""
    from sklearn.metrics import precision_recall_curve

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 4), dpi=100)
    drawn = 0
    for name, (labels, scores) in curves.items():
        ap = average_precision(labels, scores)
        if ap is None:
            continue
        p, r, _ = precision_recall_curve(np.asarray(labels).astype(int), scores)
        ax.step(r, p, where="post", label=f"{name} (AP {ap:.3f})")
        drawn += 1
    if not drawn:
        plt.close(fig)
        return None
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1.01), ylim=(0, 1.05), title="precision-recall")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_history(history: list[dict[str, Any]], path: Path) -> Path | None:
    """Training loss and validation AP per epoch."""
    if not history:
        return None
    plt = _pyplot()
    epochs = [h["epoch"] for h in history]
    fig, ax = plt.subplots(figsize=(5, 4), dpi=100)
    ax.plot(epochs, [h["loss"] for h in history], "o-", color="tab:red", label="train loss")
    ax.set(xlabel="epoch", ylabel="loss", title="training")
    ax2 = ax.twinx()
    aps = [np.nan if h.get("val_ap") is None else h["val_ap"] for h in history]
    ax2.plot(epochs, aps, "s-", color="tab:blue", label="val AP (clips)")
    fap = [np.nan if h.get("val_frame_ap") is None else h["val_frame_ap"] for h in history]
    ax2.plot(epochs, fap, ".--", color="tab:cyan", label="val AP (frames)")
    ax2.set(ylabel="average precision", ylim=(0, 1.05))
    lines = ax.get_lines() + ax2.get_lines()
    ax.legend(lines, [ln.get_label() for ln in lines], loc="lower left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_confusion(confusion: list[list[int]], path: Path, title: str) -> Path:
    plt = _pyplot()
    cm = np.asarray(confusion)
    fig, ax = plt.subplots(figsize=(4, 3.6), dpi=100)
    ax.imshow(cm, cmap="Blues")
    names = ["normal", "highlight"]
    ax.set(xticks=[0, 1], yticks=[0, 1], xticklabels=names, yticklabels=names,
           xlabel="predicted", ylabel="labelled", title=title)
    for i in range(2):
        for j in range(2):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center",
                    color="white" if cm[i, j] > cm.max() / 2 else "black", fontsize=14)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def frame_precision(labels: np.ndarray, probs: np.ndarray, threshold: float) -> dict[str, Any]:
    """Precision of the frames at or above the selection threshold (``frame_precision``, ``frame_selected``)."""
    labels = np.asarray(labels).astype(bool)
    picked = np.asarray(probs) >= threshold
    n = int(picked.sum())
    return {"frame_precision": float(labels[picked].mean()) if n else None, "frame_selected": n}


def reel_precision(clip_labels: np.ndarray, clip_probs: np.ndarray, threshold: float) -> dict[str, Any]:
    """Of the reviewed in-reel clips, the share of highlights among those the model would still
    put in a reel (mean probability at or above the selection threshold); ``reel_n`` of them."""
    labels = np.asarray(clip_labels).astype(bool)
    picked = np.asarray(clip_probs) >= threshold
    n = int(picked.sum())
    return {"reel_precision": float(labels[picked].mean()) if n else None, "reel_n": n,
            "reel_reviewed": int(len(labels))}
