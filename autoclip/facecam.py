"""Face-cam detection: where in a VOD's picture the streamer's camera sits, found from the video.

About 30 frames spread over the VOD are decoded small (``media.stills``). The face cam is a
rectangle whose edges stay put while the picture inside and the gameplay around it move, and
which holds a face in most samples:

1. faces: OpenCV's frontal-face Haar cascade (the weights ship inside the opencv wheel, in
   ``cv2.data``; nothing is downloaded) finds faces in every sample; the face that comes back
   at about the same place and size in the most samples is the streamer's (a face in the game
   moves, and is seldom found twice at one place);
2. edges that stay put: per pixel, the fraction of samples with a colour step to the left/right
   (or above/below) neighbour. Along a face cam's side that fraction is near 1; over moving
   gameplay it is the texture's edge density, the same a few pixels further. A side's score is
   its line's mean persistence above the persistence just beside it;
3. around the face, each side of the rectangle is the strongest such line (a side flush with
   the frame's edge scores a fixed prior), refined a few rounds (each side's line is measured
   only between the other two sides); of a border's two lines the inner one is kept, so the
   box is the inner picture without its border.

The confidence mixes how often a face was inside the box with how strong its sides are; below
``MIN_CONFIDENCE`` no box is reported. cv2 is imported here only, inside the functions.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from autoclip.config import MediaConfig
from autoclip.errors import AutoclipError

log = logging.getLogger(__name__)

Box = tuple[int, int, int, int]
#: frames sampled across the VOD
SAMPLES = 30
#: longest side of the analysed frames, in pixels
ANALYSIS_SIZE = 800
#: a box is reported only at or above this confidence
MIN_CONFIDENCE = 0.5
#: the face must be found at one place in at least this fraction of the samples
MIN_FACE_SUPPORT = 0.3
#: colour step (0-255, largest channel) that counts as an edge
EDGE_STEP = 10
#: score given to a side lying on the frame's own edge (no step to measure there)
FRAME_EDGE_PRIOR = 0.3
#: a side needs at least this line score (persistence above its surroundings)
MIN_SIDE = 0.2


class FacecamError(AutoclipError):
    """Face-cam detection could not run (no frames, no face detector)."""


@dataclass
class Detection:
    """What ``detect`` found: ``box`` [x, y, w, h] in source (display) pixels or None."""

    box: Box | None
    confidence: float
    reason: str
    width: int
    height: int
    at: float | None = None            # a sampled time whose frame shows the face (for previews)
    samples: int = 0
    face_samples: int = 0              # samples with the streamer's face inside the box
    seconds: float = 0.0               # wall time of the detection
    sides: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["box"] = list(self.box) if self.box else None
        return d


def _cv2() -> Any:
    try:
        import cv2
    except ImportError as err:
        raise FacecamError(f"face-cam detection needs OpenCV: pip install opencv-python-headless ({err})") from None
    return cv2


def _cascade() -> Any:
    cv2 = _cv2()
    path = os.path.join(cv2.data.haarcascades, "haarcascade_frontalface_default.xml")
    cascade = cv2.CascadeClassifier(path)
    if cascade.empty():
        raise FacecamError(f"OpenCV's face cascade is missing ({path}): reinstall opencv-python-headless 4.x")
    return cascade


# ---- faces ----------------------------------------------------------------------------------


#: frames searched whole per round, before the rest are searched only around the faces found
_ROUND = 8


def _detect(cascade: Any, gray: np.ndarray, small: int, large: int) -> np.ndarray:
    found = cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(small, small),
                                     maxSize=(large, large))
    return np.asarray(found, dtype=np.int64).reshape(-1, 4)


def _candidates(faces: dict[int, np.ndarray], most: int = 3) -> list[np.ndarray]:
    """Face boxes seen (about) again at one place, most often first."""
    boxes = [b for fs in faces.values() for b in fs]
    groups: list[list[np.ndarray]] = []
    for b in boxes:
        for g in groups:
            if _same_face(g[0], b):
                g.append(b)
                break
        else:
            groups.append([b])
    groups.sort(key=len, reverse=True)
    return [np.median(np.stack(g), axis=0) for g in groups[:most]]


def find_faces(frames: np.ndarray) -> list[np.ndarray]:
    """Per frame, an (n, 4) int array of face boxes [x, y, w, h] (analysis pixels).

    Whole frames are searched a round of ``_ROUND`` at a time (spread over the VOD) until faces
    turn up (or two rounds found none); the other frames are searched only around those faces,
    at their size, which costs a small fraction of a whole-frame search.
    """
    cv2 = _cv2()
    cascade = _cascade()
    n, h, w = frames.shape[:3]
    small, large = max(20, min(h, w) // 40), max(40, min(h, w) // 3)
    gray = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]
    order = [int(i) for i in np.argsort([(k * 0.618034) % 1 for k in range(n)], kind="stable")]
    whole: dict[int, np.ndarray] = {}
    for r in range(0, n, _ROUND):
        for i in order[r: r + _ROUND]:
            whole[i] = _detect(cascade, gray[i], small, large)
        hits = sum(1 for f in whole.values() if len(f))
        if hits >= 2 or (hits == 0 and len(whole) >= 2 * _ROUND):
            break
    cands = _candidates(whole)
    out = []
    for i in range(n):
        if i in whole:
            out.append(whole[i])
            continue
        found = []
        for c in cands:
            cx, cy, cw, ch = (int(v) for v in c)
            x0, y0 = max(0, cx - cw), max(0, cy - ch)
            x1, y1 = min(w, cx + 2 * cw), min(h, cy + 2 * ch)
            roi = _detect(cascade, gray[i][y0:y1, x0:x1], max(small, int(cw * 0.6)), max(small + 1, int(cw * 1.6)))
            found += [b + np.array([x0, y0, 0, 0]) for b in roi]
        out.append(np.asarray(found, dtype=np.int64).reshape(-1, 4))
    return out


def _same_face(a: np.ndarray, b: np.ndarray) -> bool:
    ca, cb = a[:2] + a[2:] / 2, b[:2] + b[2:] / 2
    size = max(a[2], b[2])
    return bool(np.abs(ca - cb).max() <= 0.35 * size and 0.67 <= a[2] / max(1, b[2]) <= 1.5)


def steady_face(faces: list[np.ndarray]) -> tuple[np.ndarray | None, list[int]]:
    """The face found at about one place in the most samples: (median box, sample indices)."""
    best: tuple[int, int, np.ndarray, list[int]] | None = None
    for boxes in faces:
        for d in boxes:
            members, picks = [], []
            for j, other in enumerate(faces):
                match = [o for o in other if _same_face(d, o)]
                if match:
                    members.append(j)
                    picks.append(min(match, key=lambda o: abs(int(o[0]) - int(d[0])) + abs(int(o[1]) - int(d[1]))))
            key = (len(members), int(d[2]))
            if best is None or key > best[:2]:
                best = (*key, np.median(np.stack(picks), axis=0), members)
    if best is None:
        return None, []
    return best[2], best[3]


# ---- edges that stay put -----------------------------------------------------------------------


def edge_persistence(frames: np.ndarray, step: int = EDGE_STEP) -> tuple[np.ndarray, np.ndarray]:
    """(vertical, horizontal): fraction of frames with a colour step at each pixel boundary.

    ``vertical[y, x]`` is the step between columns x-1 and x (x = 1..W-1, column 0 unused);
    ``horizontal[y, x]`` the step between rows y-1 and y.
    """
    n, h, w = frames.shape[:3]
    vert = np.zeros((h, w), np.float32)
    horiz = np.zeros((h, w), np.float32)
    for f in frames:
        a = f.astype(np.int16)
        vert[:, 1:] += (np.abs(a[:, 1:] - a[:, :-1]).max(axis=2) > step)
        horiz[1:, :] += (np.abs(a[1:] - a[:-1]).max(axis=2) > step)
    return vert / n, horiz / n


def _line_scores(persist: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """Per position along axis 1: mean persistence over rows [lo, hi) minus that of the nearby
    positions (a real line stands out of its surroundings; texture does not)."""
    lo, hi = max(0, lo), min(persist.shape[0], hi)
    if hi - lo < 2:
        return np.zeros(persist.shape[1], np.float32)
    line = persist[lo:hi].mean(axis=0)
    pad = np.pad(line, 9, mode="edge")
    near = np.stack([pad[9 + k: 9 + k + len(line)] for k in (-8, -7, -6, -5, -4, -3, 3, 4, 5, 6, 7, 8)])
    return (line - np.median(near, axis=0)).astype(np.float32)


def _pick_side(scores: np.ndarray, lo: int, hi: int, edge: int, inward: int) -> tuple[int, float]:
    """Best line position in [lo, hi) (or the frame's edge ``edge`` with its prior); of a border's
    two lines, the one nearer the inside (``inward``: +1 or -1) is kept."""
    lo, hi = max(1, lo), min(len(scores), hi)
    best_pos, best = edge, FRAME_EDGE_PRIOR
    if hi > lo:
        i = int(np.argmax(scores[lo:hi])) + lo
        if scores[i] > best:
            best_pos, best = i, float(scores[i])
    reach = max(3, len(scores) // 100)
    span = range(best_pos + inward, best_pos + inward * (reach + 1), inward)
    for j in span:
        if lo <= j < hi and scores[j] >= 0.5 * best and scores[j] >= MIN_SIDE and abs(j - best_pos) >= 2:
            best_pos, best = j, max(best, float(scores[j]))
    return best_pos, best


def fit_box(vert: np.ndarray, horiz: np.ndarray, face: np.ndarray) -> tuple[tuple[int, int, int, int], dict[str, float]]:
    """(x0, y0, x1, y1) of the rectangle of persistent lines around ``face`` (analysis pixels,
    x1/y1 exclusive) and each side's score."""
    h, w = vert.shape
    fx, fy, fw, fh = (float(v) for v in face)
    x0, x1 = int(fx - fw), int(fx + 2 * fw)
    y0, y1 = int(fy - fh), int(fy + 2 * fh)
    sides: dict[str, float] = {}
    for _ in range(3):
        cols = _line_scores(vert, y0, y1)
        x0, sides["left"] = _pick_side(cols, int(fx - 5 * fw), int(fx + 0.25 * fw) + 1, 0, +1)
        x1, sides["right"] = _pick_side(cols, int(fx + 0.75 * fw), int(fx + 6 * fw) + 1, w, -1)
        rows = _line_scores(horiz.T, x0, x1)
        y0, sides["top"] = _pick_side(rows, int(fy - 4 * fh), int(fy + 0.25 * fh) + 1, 0, +1)
        y1, sides["bottom"] = _pick_side(rows, int(fy + 0.75 * fh), int(fy + 6 * fh) + 1, h, -1)
    return (x0, y0, x1, y1), sides


# ---- the whole detection -----------------------------------------------------------------------


def find_box(frames: np.ndarray) -> tuple[tuple[int, int, int, int] | None, float, str, dict[str, Any]]:
    """On analysis frames (N, H, W, 3): ((x0, y0, x1, y1) or None, confidence, reason, details)."""
    n, h, w = frames.shape[:3]
    faces = find_faces(frames)
    face, members = steady_face(faces)
    details: dict[str, Any] = {"faces": faces, "members": members}
    if face is None or len(members) < max(2, MIN_FACE_SUPPORT * n):
        found = sum(1 for f in faces if len(f))
        return None, 0.0, f"no face stays in one place (faces in {found} of {n} samples)", details
    vert, horiz = edge_persistence(frames)
    (x0, y0, x1, y1), sides = fit_box(vert, horiz, face)
    details["sides"] = sides
    if (x0, y0, x1, y1) == (0, 0, w, h):
        return None, 0.0, "a face fills the whole frame: no face-cam inset to crop", details
    inside = [i for i, fs in enumerate(faces) if any(_centre_in(f, (x0, y0, x1, y1)) for f in fs)]
    details["inside"] = inside
    real = [s for k, s in sides.items() if not _on_frame_edge(k, (x0, y0, x1, y1), w, h)]
    strength = float(np.mean([min(1.0, s / 0.5) for s in real])) if real else 0.0
    support = len(inside) / n
    conf = round(float(np.sqrt(min(1.0, support / 0.6)) * strength), 3)
    if (x1 - x0) * (y1 - y0) > 0.6 * w * h:
        return None, conf, "the rectangle around the face covers most of the frame: not an inset", details
    if conf < MIN_CONFIDENCE:
        weak = ", ".join(f"{k} {v:.2f}" for k, v in sides.items())
        return None, conf, f"no steady rectangle around the face (face in {len(inside)} of {n} samples; sides {weak})", details
    return (x0, y0, x1, y1), conf, f"face cam found (face in {len(inside)} of {n} samples)", details


def _centre_in(face: np.ndarray, rect: tuple[int, int, int, int]) -> bool:
    cx, cy = face[0] + face[2] / 2, face[1] + face[3] / 2
    return rect[0] <= cx < rect[2] and rect[1] <= cy < rect[3]


def _on_frame_edge(side: str, rect: tuple[int, int, int, int], w: int, h: int) -> bool:
    return {"left": rect[0] == 0, "top": rect[1] == 0, "right": rect[2] == w, "bottom": rect[3] == h}[side]


def to_source(rect: tuple[int, int, int, int], analysis: tuple[int, int], source: tuple[int, int]) -> Box:
    """An analysis-pixel rectangle (x0, y0, x1, y1) as [x, y, w, h] in source pixels, inside the frame."""
    sx, sy = source[0] / analysis[0], source[1] / analysis[1]
    x0, y0 = max(0, round(rect[0] * sx)), max(0, round(rect[1] * sy))
    x1, y1 = min(source[0], round(rect[2] * sx)), min(source[1], round(rect[3] * sy))
    return (x0, y0, x1 - x0, y1 - y0)


def detect(path: str | os.PathLike[str], media_cfg: MediaConfig | None = None, *, samples: int = SAMPLES,
           info: Any = None) -> Detection:
    """Find the face cam of the VOD at ``path`` (see the module's description)."""
    from autoclip import media
    from autoclip.media.stills import spread_times, still_frames

    start = time.monotonic()
    info = info or media.probe(path, media_cfg)
    times, frames = still_frames(path, spread_times(info.duration, samples), longest=ANALYSIS_SIZE,
                                 info=info, media=media_cfg)
    rect, conf, reason, details = find_box(frames)
    ah, aw = frames.shape[1:3]
    box = to_source(rect, (aw, ah), (info.width, info.height)) if rect else None
    shown = details.get("inside") or details.get("members") or []
    det = Detection(box=box, confidence=conf, reason=reason, width=info.width, height=info.height,
                    at=float(times[shown[len(shown) // 2]]) if shown else None, samples=len(times),
                    face_samples=len(details.get("inside", [])), seconds=round(time.monotonic() - start, 2),
                    sides={k: round(v, 3) for k, v in details.get("sides", {}).items()})
    log.info("%s: %s (confidence %.2f, %.1f s)%s", Path(path).name, reason, conf, det.seconds,
             f": box {list(box)}" if box else "")
    return det
