"""Single frames at chosen times, small: what face-cam detection looks at.

Each frame is one short ffmpeg run with input seeking (``-ss`` before ``-i``: the demuxer jumps
to the keyframe before the time and only that group of pictures is decoded), scaled down inside
ffmpeg, so sampling 30 frames spread over a 1-hour VOD costs about 30 GOPs of decoding, never a
pass over the file. A few runs go at once (they are short and mostly wait on each other's I/O).
"""

from __future__ import annotations

import logging
import os
import subprocess
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from autoclip.config import MediaConfig
from autoclip.errors import MediaError
from autoclip.media.probe import ProbeInfo, _input_args, _media, _name, _reason, file_url, probe

log = logging.getLogger(__name__)

#: seconds one still may take before it is given up (a damaged file can make ffmpeg crawl)
_STILL_TIMEOUT = 60.0


def analysis_size(width: int, height: int, longest: int) -> tuple[int, int]:
    """(w, h) of a picture scaled so its longest side is at most ``longest``, even sides."""
    scale = min(1.0, longest / max(width, height))
    return max(2, round(width * scale / 2) * 2), max(2, round(height * scale / 2) * 2)


def _still_command(path: str | os.PathLike[str], at: float, size: tuple[int, int], media: MediaConfig) -> list[str]:
    w, h = size
    return [media.ffmpeg, "-nostdin", "-hide_banner", "-nostats", "-loglevel", "error", *_input_args(media),
            "-max_pixels", str(min(media.max_pixels + media.max_pixels // 4, 2**31 - 1)),
            "-threads", "1", "-skip_loop_filter", "all", "-ss", f"{max(0.0, at):.3f}", "-i", file_url(path),
            "-map", "0:v:0", "-an", "-sn", "-dn", "-frames:v", "1",
            "-vf", f"scale={w}:{h}:flags=area,format=rgb24", "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"]


def _one_still(path: str | os.PathLike[str], at: float, size: tuple[int, int], media: MediaConfig) -> np.ndarray | None:
    cmd = _still_command(path, at, size, media)
    try:
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=_STILL_TIMEOUT)
    except FileNotFoundError:
        raise MediaError(f"{cmd[0]} not found: install ffmpeg (apt-get install ffmpeg)", code="no_ffmpeg") from None
    except subprocess.TimeoutExpired:
        log.warning("%s: no frame at %.1f s within %.0f s; skipped", _name(path), at, _STILL_TIMEOUT)
        return None
    w, h = size
    if len(proc.stdout) < w * h * 3:
        if proc.returncode != 0:
            log.debug("%s: no frame at %.1f s (%s)", _name(path), at, _reason(proc.stderr.decode("utf-8", "replace")))
        return None
    return np.frombuffer(proc.stdout[: w * h * 3], dtype=np.uint8).reshape(h, w, 3)


def still_frames(path: str | os.PathLike[str], times: Sequence[float], *, longest: int = 800,
                 info: ProbeInfo | None = None, media: MediaConfig | None = None,
                 workers: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """(times, frames): the frame at (or just after) each of ``times``, RGB, scaled so the longest
    side is at most ``longest`` pixels (aspect kept). Times with no frame (past a truncated end)
    are left out; none at all raises MediaError."""
    media = _media(media)
    info = info or probe(path, media)
    size = analysis_size(info.width, info.height, longest)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        got = list(pool.map(lambda t: _one_still(path, float(t), size, media), times))
    keep = [i for i, f in enumerate(got) if f is not None]
    if not keep:
        raise MediaError(f"{_name(path)}: ffmpeg decoded no frame at any of {len(times)} times; "
                         "is the file damaged? Check it with `autoclip probe`", code="corrupt")
    return np.asarray([times[i] for i in keep], dtype=np.float64), np.stack([got[i] for i in keep])


def spread_times(duration: float, n: int) -> np.ndarray:
    """``n`` times spread evenly over ``duration`` (the middles of n equal parts)."""
    return (np.arange(n) + 0.5) * (max(0.0, duration) / max(1, n))
