"""The sampled-frame grid of a VOD without decoding a picture.

``iter_frames`` samples the first frame of each 1/fps bin of presentation time. Those times are
the video packets' presentation timestamps, which the demuxer alone knows: ``frame_grid`` reads
them with ffprobe (no decoder runs, about 1 s per hour of 30 fps video) and applies the same rule
with the same floating-point arithmetic as the ``select`` filter, so it gives the times a decode of
the same range would give. The audio-first scoring cascade scores these times before deciding
which stretches are worth decoding.
"""

from __future__ import annotations

import heapq
import logging
import math
import os
import subprocess

import numpy as np

from autoclip.config import MediaConfig
from autoclip.errors import MediaError
from autoclip.media.probe import ProbeInfo, _input_args, _media, _name, file_url, probe

log = logging.getLogger(__name__)

#: packets a decoder may reorder (B-frame depth is at most 16 in H.264/HEVC); pts are emitted
#: once this many later packets have been read
_REORDER = 64


def frame_grid(path: str | os.PathLike[str], *, fps: float, start: float = 0.0, end: float | None = None,
               info: ProbeInfo | None = None, media: MediaConfig | None = None) -> np.ndarray:
    """Times (seconds from the file's start) of the frames ``iter_frames`` samples in [start, end)."""
    media = _media(media)
    info = info or probe(path, media)
    tb = _time_base(path, media)
    cmd = [media.ffprobe, "-v", "error", *_input_args(media), "-select_streams", "v:0",
           "-show_entries", "packet=pts,flags", "-of", "csv=p=0"]
    if start > 0 or end is not None:
        lo = max(0.0, start + info.start_time - 30.0)  # well before: reading starts at a keyframe
        cmd += ["-read_intervals", f"{lo:.6f}%" + ("" if end is None else f"{end + info.start_time + 1.0:.6f}")]
    cmd.append(file_url(path))
    log.debug("run %s", cmd)
    try:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
    except FileNotFoundError:
        raise MediaError(f"{media.ffprobe} not found: install ffmpeg (apt-get install ffmpeg)", code="no_ffmpeg") from None
    assert proc.stdout is not None and proc.stderr is not None
    picker = _Picker(fps, info.start_time, tb)
    heap: list[int] = []
    for line in proc.stdout:
        pts = _pts(line)
        if pts is None:
            continue
        heapq.heappush(heap, pts)
        if len(heap) > _REORDER:
            picker.feed(heapq.heappop(heap))
    while heap:
        picker.feed(heapq.heappop(heap))
    err = proc.stderr.read()
    if proc.wait() != 0 and not picker.times:
        raise MediaError(f"{_name(path)}: ffprobe could not read the video packets ({err.strip()[-200:]})",
                         code="corrupt")
    times = np.asarray(picker.times, dtype=np.float64) - info.start_time
    return times[(times >= start - 1e-6) & (times < (math.inf if end is None else end))]


def _pts(line: str) -> int | None:
    """A packet's pts from a ``pts,flags`` line; None for discarded packets or ones without a pts."""
    parts = line.strip().split(",")
    if len(parts) < 2 or not parts[0].lstrip("-").isdigit() or "D" in parts[1]:
        return None
    return int(parts[0])


def _time_base(path: str | os.PathLike[str], media: MediaConfig) -> tuple[int, int]:
    cmd = [media.ffprobe, "-v", "error", *_input_args(media), "-select_streams", "v:0",
           "-show_entries", "stream=time_base", "-of", "csv=p=0", file_url(path)]
    out = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    num, _, den = out.stdout.strip().splitlines()[0].partition("/") if out.stdout.strip() else ("", "", "")
    if out.returncode != 0 or not num.isdigit() or not den.isdigit() or int(den) == 0:
        raise MediaError(f"{_name(path)}: no video time base ({out.stderr.strip()[-200:]})", code="corrupt")
    return int(num), int(den)


class _Picker:
    """The ``select`` rule of ``decode._video_filter``: the first frame of each 1/fps bin.

    The bin uses ffmpeg's arithmetic (pts x double(time base), the start time as printed with
    six decimals); the reported time uses showinfo's parse (pts x num / den), as ``iter_frames`` does.
    """

    def __init__(self, fps: float, start_time: float, tb: tuple[int, int]) -> None:
        self.fps, self.st = fps, float(f"{start_time:.6f}")
        self.tb = tb
        self.q = tb[0] / tb[1]
        self.prev_bin: float | None = None
        self.times: list[float] = []

    def feed(self, pts: int) -> None:
        b = math.floor((pts * self.q - self.st) * self.fps)
        if self.prev_bin is None or b > self.prev_bin:
            self.prev_bin = b
            self.times.append(pts * self.tb[0] / self.tb[1])
