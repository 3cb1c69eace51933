"""What the review UI shows about one item: a filmstrip, the score curve, the loudness.

Data helpers (loading a job's ``scores.npz``, resampling a curve to a terminal width) are pure;
``filmstrip`` decodes a few frames through the media layer (call it from a worker thread) and
``halfblock`` turns small RGB images into coloured ``▀`` characters (two pixels per cell).
"""

from __future__ import annotations

import logging
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

BARS = "▁▂▃▄▅▆▇█"
#: seconds of context shown on each side of an item
CONTEXT = 20.0


@dataclass
class ScoreTrack:
    """A job's per-frame scores and loudness (from ``jobs/<job>/scores.npz``)."""

    times: np.ndarray
    scores: np.ndarray
    loudness_times: np.ndarray
    loudness_db: np.ndarray


def load_track(jobs_dir: Path, job: str | None) -> ScoreTrack | None:
    """The job's score track, or None when the job or its scores.npz is gone or unreadable."""
    if not job:
        return None
    path = Path(jobs_dir) / job / "scores.npz"
    try:
        with np.load(path, allow_pickle=False) as z:
            empty = np.zeros(0)
            return ScoreTrack(
                np.asarray(z["times"], dtype=np.float64), np.asarray(z["scores"], dtype=np.float64),
                np.asarray(z["loudness_times"], dtype=np.float64) if "loudness_times" in z else empty,
                np.asarray(z["loudness_db"], dtype=np.float64) if "loudness_db" in z else empty,
            )
    except (OSError, KeyError, ValueError) as err:
        log.debug("no score track for job %s: %s", job, err)
        return None


def resample(times: np.ndarray, values: np.ndarray, t0: float, t1: float, width: int) -> np.ndarray:
    """Maximum of ``values`` in each of ``width`` equal bins over [t0, t1); NaN where empty."""
    out = np.full(width, np.nan)
    if width <= 0 or len(times) == 0 or t1 <= t0:
        return out
    inside = (times >= t0) & (times < t1)
    bins = ((times[inside] - t0) / (t1 - t0) * width).astype(int).clip(0, width - 1)
    vals = values[inside]
    for b in np.unique(bins):
        out[b] = float(np.max(vals[bins == b]))
    return out


def sparkline(values: np.ndarray, lo: float, hi: float) -> str:
    """One character per value (``▁``..``█``); a space where the value is NaN."""
    chars = []
    span = max(hi - lo, 1e-9)
    for v in values:
        if np.isnan(v):
            chars.append(" ")
        else:
            idx = int(round((min(max(v, lo), hi) - lo) / span * (len(BARS) - 1)))
            chars.append(BARS[idx])
    return "".join(chars)


def marker(t0: float, t1: float, start: float, end: float, width: int) -> str:
    """A ruler of ``width`` characters with the item's range drawn as ``├──┤``."""
    if width <= 0 or t1 <= t0:
        return ""
    a = int((start - t0) / (t1 - t0) * width)
    b = int(np.ceil((end - t0) / (t1 - t0) * width)) - 1
    a, b = max(0, min(a, width - 1)), max(0, min(b, width - 1))
    line = [" "] * width
    for i in range(a, b + 1):
        line[i] = "─"
    line[a], line[b] = ("├", "┤") if b > a else ("│", "│")
    return "".join(line)


def view_window(start: float, end: float, context: float = CONTEXT) -> tuple[float, float]:
    return max(0.0, start - context), end + context


def curves(track: ScoreTrack | None, start: float, end: float, width: int) -> dict[str, Any]:
    """Score and loudness lines around an item, ready for display."""
    t0, t1 = view_window(start, end)
    out: dict[str, Any] = {"t0": t0, "t1": t1, "marker": marker(t0, t1, start, end, width),
                           "score": None, "loudness": None, "peak_db": None}
    if track is None:
        return out
    if len(track.times):
        out["score"] = sparkline(resample(track.times, track.scores, t0, t1, width), 0.0, 1.0)
    if len(track.loudness_times):
        db = resample(track.loudness_times, track.loudness_db, t0, t1, width)
        out["loudness"] = sparkline(db, -60.0, 0.0)
        inside = (track.loudness_times >= start) & (track.loudness_times < end)
        if inside.any():
            out["peak_db"] = float(np.max(track.loudness_db[inside]))
    return out


def filmstrip(vod: str | Path, start: float, end: float, *, count: int = 4, size: int = 32,
              media_cfg: Any = None) -> list[np.ndarray]:
    """About ``count`` frames spread over [start, end), each ``size`` x ``size`` RGB (media layer)."""
    from autoclip import media

    length = max(end - start, 0.1)
    fps = min(max(count / length, 0.05), 30.0)
    frames: list[np.ndarray] = []
    batches = media.iter_frames(vod, fps=fps, size=size, start=start, end=end, batch=count, media=media_cfg)
    try:
        for batch in batches:
            frames.extend(batch.frames)
            if len(frames) >= count:
                break
    finally:
        batches.close()  # stops ffmpeg at once when we stop early
    return frames[:count]


def halfblock(image: np.ndarray, cols: int, rows: int) -> Any:
    """A rich ``Text`` of ``rows`` lines x ``cols`` cells drawing ``image`` with ``▀`` cells."""
    from PIL import Image
    from rich.text import Text

    pixels = np.asarray(Image.fromarray(image).resize((cols, rows * 2), Image.BILINEAR))
    text = Text()
    for r in range(rows):
        top, bottom = pixels[2 * r], pixels[2 * r + 1]
        for c in range(cols):
            fg, bg = top[c], bottom[c]
            text.append("▀", style=f"rgb({fg[0]},{fg[1]},{fg[2]}) on rgb({bg[0]},{bg[1]},{bg[2]})")
        if r < rows - 1:
            text.append("\n")
    return text


def strip_text(frames: list[np.ndarray], width: int, rows: int) -> Any:
    """Frames side by side in ``width`` cells, one space between them."""
    from rich.text import Text

    if not frames:
        return Text("(no frames)")
    cols = max(2, (width - (len(frames) - 1)) // len(frames))
    pictures = [halfblock(f, cols, rows).split("\n") for f in frames]
    text = Text()
    for r in range(rows):
        for i, pic in enumerate(pictures):
            if i:
                text.append(" ")
            text.append_text(pic[r])
        if r < rows - 1:
            text.append("\n")
    return text


def _known_player(prog: str, vod: str, start: float, duration: float) -> list[str] | None:
    name = Path(prog).name
    if name == "mpv":
        return [prog, "--really-quiet", f"--start={start:.3f}", f"--end={start + duration:.3f}", "--", vod]
    if name == "ffplay":
        return [prog, "-hide_banner", "-loglevel", "error", "-autoexit",
                "-ss", f"{start:.3f}", "-t", f"{duration:.3f}", "-i", vod]
    return None


def player_command(player: str, vod: str, start: float, end: float) -> list[str] | None:
    """The command that plays [start, end) of ``vod``, or None when no player is installed.

    ``player`` is the config's ``review.player``: empty picks mpv, else ffplay; a command with
    ``{vod}``, ``{start}``, ``{end}`` or ``{duration}`` fields is filled in; mpv or ffplay get
    their seeking options; any other command gets the file name appended.
    """
    duration = max(end - start, 0.1)
    if not player.strip():
        for prog in ("mpv", "ffplay"):
            if shutil.which(prog):
                return _known_player(prog, vod, start, duration)
        return None
    argv = shlex.split(player)
    if not argv or not shutil.which(argv[0]):
        return None
    if "{" in player:
        fields = {"vod": vod, "start": f"{start:.3f}", "end": f"{end:.3f}", "duration": f"{duration:.3f}"}
        return [part.format(**fields) for part in argv]
    if len(argv) == 1 and (known := _known_player(argv[0], vod, start, duration)):
        return known
    return [*argv, vod]
