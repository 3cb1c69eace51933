"""Teacher versus student on clips neither trained on, and the record that makes that checkable.

Every model folder holds ``clips.json``: the clips (VOD fingerprint, range, label) of each split
the model was trained and validated on. Before the current model (the teacher) is scored for a
promotion decision, every validation clip that overlaps one of the teacher's training clips is
dropped, and the remaining set is checked again (``assert_unseen``): a comparison in which the
teacher is judged on its own training data would favour it and freeze the learning loop.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from autoclip import splits as splits_mod
from autoclip.errors import ModelError

if TYPE_CHECKING:
    from autoclip.dataset import Clip
    from autoclip.registry import Registry

log = logging.getLogger(__name__)

CLIPS_FILE = "clips.json"
#: least frames on the confident side before a pseudo-label threshold is trusted
MIN_SUPPORT = 5


def clips_record(splits: dict[str, list[Clip]]) -> dict[str, Any]:
    """What ``clips.json`` holds: per split, [fingerprint, start, end, label] of each clip."""
    return {"format": 1, **{name: [list(splits_mod.clip_key(c)) for c in members] for name, members in splits.items()}}


def write_clips_record(folder: Path, splits: dict[str, list[Clip]]) -> Path:
    path = Path(folder) / CLIPS_FILE
    path.write_text(json.dumps(clips_record(splits)) + "\n", encoding="utf-8")
    return path


def trained_ranges(registry: Registry, model_id: str) -> list[tuple[str, float, float]] | None:
    """(fingerprint, start, end) of the clips ``model_id`` trained on; None when it kept no record."""
    try:
        path = registry.root / model_id / CLIPS_FILE
        data = json.loads(path.read_text(encoding="utf-8"))
        return [(str(k[0]), float(k[1]), float(k[2])) for k in data["train"]]
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return None


def unseen_by(clips: Sequence[Clip], trained: Sequence[tuple[str, float, float]], gap: float) -> list[Clip]:
    """``clips`` without any that overlaps (or lies within ``gap`` of) a trained range."""
    seen = {id(c) for c in splits_mod.overlapping(clips, trained, gap)}
    return [c for c in clips if id(c) not in seen]


def assert_unseen(clips: Sequence[Clip], trained: Sequence[tuple[str, float, float]], gap: float) -> None:
    """Refuse a comparison set that holds any of the teacher's training clips."""
    leaked = splits_mod.overlapping(clips, trained, gap)
    if leaked:
        c = leaked[0]
        raise ModelError(f"comparison set holds {len(leaked)} clip(s) the current model trained on "
                         f"(e.g. {Path(c.vod).name} {c.start:.2f}-{c.end:.2f}); refusing a biased comparison")


def comparison_clips(registry: Registry, teacher_id: str, val: Sequence[Clip], gap: float) -> tuple[list[Clip], str]:
    """The validation clips the teacher never trained on, and a note for the decision's reason."""
    trained = trained_ranges(registry, teacher_id)
    if trained is None:
        return [], f"current model {teacher_id} kept no record of its training clips; not compared"
    kept = unseen_by(val, trained, gap)
    assert_unseen(kept, trained, gap)
    dropped = len(val) - len(kept)
    note = f"compared on {len(kept)} validation clip(s)" + (f" ({dropped} the teacher trained on left out)" if dropped else "")
    return kept, note


# ---------------------------------------------------------------------------------------------
# Pseudo-label thresholds chosen on validation
# ---------------------------------------------------------------------------------------------


def purity_threshold(labels: np.ndarray, probs: np.ndarray, *, target: float, positive: bool,
                     floor: float) -> float | None:
    """The loosest threshold whose confident side is at least ``target`` pure on ``labels``.

    ``positive``: frames with prob >= t must be >= target highlights; else frames with
    prob <= t must be >= target normal. ``floor`` bounds t (t >= floor for positives, t <= 1 -
    floor for negatives). None when no threshold with ``MIN_SUPPORT`` frames reaches the target.
    """
    y = np.asarray(labels).astype(bool)
    p = np.asarray(probs, dtype=np.float64)
    if len(y) == 0:
        return None
    if positive:
        order = np.argsort(-p, kind="stable")
        good = np.cumsum(y[order])
    else:
        order = np.argsort(p, kind="stable")
        good = np.cumsum(~y[order])
    n = np.arange(1, len(p) + 1)
    ok = (good / n >= target) & (n >= MIN_SUPPORT)
    # purity must hold for every looser prefix too: take the longest prefix that still meets it
    if not ok.any():
        return None
    last = int(np.flatnonzero(ok)[-1])
    t = float(p[order[last]])
    if positive:
        return max(t, floor) if t <= 1.0 else None
    return min(t, 1.0 - floor)
