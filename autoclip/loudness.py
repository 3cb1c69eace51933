"""Loudness normalisation of rendered outputs (EBU R128 / ITU-R BS.1770 integrated loudness).

Each segment's audio is measured once, alone (``graphs.measure_graph``: input seeking, audio
decoded, no video), before it is encoded; the encode then applies the gain that brings the
segment to ``[render] loudness`` and, when the corrected true peak would pass the ceiling, a
true-peak limiter. A reel is the concatenation of its clips, each at the target, so the reel,
its clips and the shorts made from the same segments all measure at the target, and nothing
reads the VOD a second time beyond the segments' own audio.

A limiter takes loudness off with the peaks it holds down (a lot, when clicks or shots carry
much of the energy): for a segment that needs it, the segment's audio is measured again
through the gain and the limiter, and the gain raised by what is missing, up to
``MAX_REFINE`` times (each an audio-only pass over the segment) until within ``TOLERANCE`` LU.
"""

from __future__ import annotations

import logging
import math
import os
import re
from dataclasses import dataclass, replace

from autoclip.graphs import Gain, compile_args, measure_graph

log = logging.getLogger(__name__)

#: the true-peak ceiling promised (dBTP); the limiter sits a little below it because the AAC
#: encoder's own overshoot adds a few tenths of a dB
TRUE_PEAK_MAX = -1.0
LIMITER_MARGIN = 1.0
#: gains are kept within this many dB (a near-silent segment is not blown up into hiss)
MAX_GAIN = 30.0
#: below this integrated loudness a segment counts as silent and keeps its level
SILENT_LUFS = -60.0
#: most extra audio-only measurements of a limited segment, and the miss (LU) that ends them
MAX_REFINE = 3
TOLERANCE = 0.4

_SUMMARY = re.compile(r"Integrated loudness:\s*I:\s*(-?[\d.]+|-inf|nan)\s*LUFS", re.S)
_PEAK = re.compile(r"True peak:\s*Peak:\s*(-?[\d.]+|-inf|nan)\s*dBFS", re.S)


@dataclass(frozen=True)
class Loudness:
    """Integrated loudness (LUFS) and true peak (dBTP) of a stretch of audio."""

    integrated: float
    true_peak: float


def parse_summary(log_text: str) -> Loudness:
    """The last ``ebur128`` summary in ffmpeg's log (ValueError when there is none)."""
    found, peaks = _SUMMARY.findall(log_text), _PEAK.findall(log_text)
    if not found:
        raise ValueError("no ebur128 summary in ffmpeg's output")
    return Loudness(float(found[-1]), float(peaks[-1]) if peaks else float("nan"))


def gain_for(measured: Loudness, target: float) -> Gain:
    """The gain bringing ``measured`` to ``target`` LUFS, limited when peaks would pass the ceiling."""
    if not math.isfinite(measured.integrated) or measured.integrated < SILENT_LUFS:
        return Gain(0.0, limit=False)
    db = max(-MAX_GAIN, min(MAX_GAIN, target - measured.integrated))
    ceiling = TRUE_PEAK_MAX - LIMITER_MARGIN
    peak = measured.true_peak if math.isfinite(measured.true_peak) else 0.0
    return Gain(round(db, 2), ceiling=ceiling, limit=peak + db > ceiling)


def measure_command(vod: str | os.PathLike[str], start: float, duration: float, ffmpeg: str = "ffmpeg",
                    gain: Gain | None = None) -> list[str]:
    return compile_args(measure_graph(vod, start, duration, gain), ffmpeg, loglevel="info")


def measure(vod: str | os.PathLike[str], start: float, duration: float, ffmpeg: str = "ffmpeg",
            gain: Gain | None = None) -> Loudness:
    """Loudness of ``duration`` seconds of ``vod``'s audio from ``start`` (audio only), after
    ``gain`` if given."""
    from autoclip.render import run_ffmpeg

    text = run_ffmpeg(measure_command(vod, start, duration, ffmpeg, gain), f"measuring loudness at {start:.1f} s",
                      timeout=60 + 5 * duration)
    try:
        return parse_summary(text)
    except ValueError:
        log.warning("no loudness measured at %.1f s of %s; its level is kept", start, os.path.basename(vod))
        return Loudness(float("-inf"), float("-inf"))


def segment_gain(vod: str | os.PathLike[str], start: float, duration: float, target: float,
                 ffmpeg: str = "ffmpeg") -> tuple[Gain, Loudness]:
    """The gain bringing this stretch of audio to ``target`` (and its first measurement)."""
    measured = measure(vod, start, duration, ffmpeg)
    gain = gain_for(measured, target)
    for _ in range(MAX_REFINE if gain.limit else 0):
        miss = target - measure(vod, start, duration, ffmpeg, gain).integrated
        if not math.isfinite(miss) or abs(miss) <= TOLERANCE:
            break
        gain = replace(gain, db=round(max(-MAX_GAIN, min(MAX_GAIN, gain.db + miss)), 2))
    return gain, measured
