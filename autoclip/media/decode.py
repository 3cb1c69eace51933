"""Decoding: sampled frames and streaming audio.

Frames are sampled inside ffmpeg (a ``select`` of the first frame in each 1/fps bin of
presentation time, so every pass over a file, whole or partial, lands on the same grid), then
cropped, scaled and converted; only the sampled frames are scaled. The deblocking loop filter is
skipped (mean difference 0.13 of 255 at 128 px on an x264 veryfast stream). Frames stream
through an enlarged pipe in batches with their real presentation times (integer PTS x time base,
from ``showinfo``), so memory is bounded by the batch, never by the VOD (about 200 MB in all for
a 1-hour 720p VOD, see benchmarks/memory.py). Audio streams through a second process as mono
float32, aligned to the file's timeline (late starts and gaps are filled with silence).
"""

from __future__ import annotations

import logging
import math
import os
import queue
import re
import subprocess
import tempfile
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from autoclip.config import MediaConfig
from autoclip.errors import MediaError
from autoclip.media.probe import (
    _STDERR_TAIL,
    _TOO_LARGE_HINT,
    _TRUNCATION_HINTS,
    ProbeInfo,
    _float,
    _input_args,
    _media,
    _name,
    _reason,
    file_url,
    probe,
)

log = logging.getLogger(__name__)

_TB_RE = re.compile(r"config in time_base:\s*(\d+)/(\d+)")
_PTS_RE = re.compile(r"\bn:\s*\d+\s+pts:\s*(-?\d+|NOPTS)\s+pts_time:\s*(\S+)")
#: swscale flags for the (already sampled) frames: area averaging does not alias on 5-10x
#: downscales and costs nothing measurable at 4 fps
SCALE_FLAGS = "area"
#: bytes of pipe buffer asked for, so ffmpeg decodes ahead while the consumer computes
_PIPE_SIZE = 1 << 20
#: containers whose seeks are not keyframe-exact, and how much earlier ranges start decoding there
_UNINDEXED = ("mpegts", "flv")
_UNINDEXED_MARGIN = 10.0


@dataclass
class FrameBatch:
    times: np.ndarray  # (N,) float64 seconds from the file's start, from presentation timestamps
    frames: np.ndarray  # (N, S, S, 3) uint8 RGB


class _Proc:
    """An ffmpeg child whose stderr is drained by a thread (into a bounded tail + a time queue)."""

    def __init__(self, cmd: list[str], parse_pts: bool = False) -> None:
        log.debug("run %s", cmd)
        try:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, bufsize=0)
        except FileNotFoundError:
            raise MediaError(f"{cmd[0]} not found: install ffmpeg (apt-get install ffmpeg)", code="no_ffmpeg") from None
        _grow_pipe(self.proc.stdout)
        self.tail: deque[str] = deque(maxlen=_STDERR_TAIL)
        self.hints: set[str] = set()
        self.times: queue.Queue[float | None] = queue.Queue()
        self._parse = parse_pts
        self._tb: tuple[int, int] | None = None
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()

    def _frame_time(self, line: str) -> bool:
        """Queue the time of a showinfo frame line; True if the line was one."""
        if "config in time_base" in line:
            m = _TB_RE.search(line)
            self._tb = (int(m.group(1)), int(m.group(2))) if m and int(m.group(2)) else None
            return True
        m = _PTS_RE.search(line) if "pts_time:" in line else None
        if m is None:
            return False
        if m.group(1) == "NOPTS":
            self.times.put(math.nan)
        elif self._tb is not None:
            self.times.put(int(m.group(1)) * self._tb[0] / self._tb[1])
        else:
            self.times.put(_float(m.group(2)) or math.nan)
        return True

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip()
            if self._parse and line.startswith("[Parsed_showinfo"):
                self._frame_time(line)
                continue
            for h in (*_TRUNCATION_HINTS, _TOO_LARGE_HINT, "Format not on whitelist", "matches no streams"):
                if h in line:
                    self.hints.add(h)
            if line:
                self.tail.append(line)
        self.times.put(None)

    def read_into(self, buf: np.ndarray) -> int:
        """Fill ``buf`` (uint8) from stdout; the bytes read (less only at the end of the stream)."""
        assert self.proc.stdout is not None
        view, got = memoryview(buf).cast("B"), 0
        while got < len(view):
            n = self.proc.stdout.readinto(view[got:])
            if not n:
                break
            got += n
        return got

    def stderr_tail(self) -> str:
        return "\n".join(self.tail)

    def close(self, wait: bool = False) -> int:
        """Stop the child (or, with ``wait``, let it finish after its output ended); its exit code."""
        if wait:
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
        if self.proc.poll() is None:
            self.proc.kill()
        rc = self.proc.wait()
        self._thread.join(timeout=5)
        for s in (self.proc.stdout, self.proc.stderr):
            if s:
                s.close()
        return rc


def _grow_pipe(pipe: object) -> None:
    try:
        import fcntl

        fcntl.fcntl(pipe.fileno(), fcntl.F_SETPIPE_SZ, _PIPE_SIZE)  # type: ignore[attr-defined]
    except (ImportError, AttributeError, OSError, ValueError):
        pass  # not Linux, or above /proc/sys/fs/pipe-max-size: the default buffer works too


def _failure(name: str, proc: _Proc, rc: int, what: str) -> MediaError:
    """The MediaError for an ffmpeg decode that produced nothing."""
    detail = proc.stderr_tail()
    if _TOO_LARGE_HINT in proc.hints:
        return MediaError(f"{name}: a picture in the stream exceeds media.max_pixels; refused (raise the limit if genuine)",
                          code="too_large", detail=detail)
    if "Format not on whitelist" in proc.hints:
        return MediaError(f"{name}: not a video container autoclip accepts (see media.demuxers)",
                          code="demuxer", detail=detail)
    if "matches no streams" in proc.hints:
        return MediaError(f"{name}: has no {what} stream", code=f"no_{what}", detail=detail)
    return MediaError(f"{name}: ffmpeg could not decode the {what} ({_reason(detail) or f'exit {rc}'})",
                      code="corrupt", detail=detail)


@contextmanager
def _plain_input(path: str | os.PathLike[str]) -> Iterator[str]:
    """The input URL for an ffmpeg whose log is parsed. ffmpeg logs the input's name, so a name
    with a line break could forge a frame line: such a file is opened through a plain symlink."""
    real = os.path.abspath(os.fspath(path))
    if "\n" not in real and "\r" not in real:
        yield file_url(real)
        return
    suffix = Path(real).suffix if Path(real).suffix[1:].isalnum() else ""
    with tempfile.TemporaryDirectory(prefix="autoclip-input-") as folder:
        link = os.path.join(folder, "input" + suffix)
        os.symlink(real, link)
        yield file_url(link)


def _seek_args(start: float, end: float | None) -> list[str]:
    args = []
    if start > 0:
        args += ["-ss", f"{start:.6f}"]
    if end is not None:
        args += ["-t", f"{max(0.0, end - start):.6f}"]
    return args


def _video_filter(fps: float, size: int, crop: tuple[int, int, int, int] | None, info: ProbeInfo,
                  gate: float = 0.0) -> str:
    st = f"{info.start_time:.6f}"
    # the first frame of each 1/fps presentation-time bin: real PTS, exact count, no drift
    pick = f"isnan(prev_selected_t)+gt(floor((t-{st})*{fps!r}),floor((prev_selected_t-{st})*{fps!r}))"
    if gate > 0:  # frames decoded from before the range (seek margin) are not picked
        pick = f"gte(t-{st},{gate:.6f})*({pick})"
    parts = [f"select='{pick}'"]
    if crop is not None:
        x, y, w, h = (int(v) for v in crop)
        if x < 0 or y < 0 or w <= 0 or h <= 0 or x + w > info.width or y + h > info.height:
            raise MediaError(f"crop box {list(crop)} does not fit the {info.width}x{info.height} video "
                             f"{_name(info.path)}; fix [frames] crop or the matching crop profile", code="crop")
        parts.append(f"crop={w}:{h}:{x}:{y}")
    parts += [f"scale={size}:{size}:flags={SCALE_FLAGS}", "format=rgb24", "showinfo"]
    return ",".join(parts)


def _grid_seek(start: float, fps: float, info: ProbeInfo) -> tuple[float, float]:
    """(where ffmpeg seeks, where picking starts) for a range from ``start``.

    Picking starts at the start of ``start``'s bin (a hair early), so the first bin is whole and
    the range sees the full pass's frames. Containers without a keyframe index (MPEG-TS, FLV) seek
    to about the time asked, possibly past the keyframe it needs: those decode from earlier.
    """
    if start <= 0:
        return 0.0, 0.0
    gate = max(0.0, math.floor(start * fps + 1e-9) / fps - 1e-3)
    unindexed = bool(set(info.container.split(",")) & set(_UNINDEXED))
    return max(0.0, gate - (_UNINDEXED_MARGIN if unindexed else 0.0)), gate


def iter_frames(
    path: str | os.PathLike[str],
    *,
    fps: float,
    size: int,
    crop: tuple[int, int, int, int] | None = None,
    batch: int = 64,
    start: float = 0.0,
    end: float | None = None,
    info: ProbeInfo | None = None,
    media: MediaConfig | None = None,
) -> Iterator[FrameBatch]:
    """Yield frames sampled at ``fps`` (cropped, resized to ``size`` x ``size``) in batches.

    Times are presentation times in seconds from the file's start, the first frame of each
    1/fps bin; a range [start, end) gives exactly the full pass's frames that fall inside it.
    A full-file decode that ends well before the declared duration raises
    MediaError(code="truncated").
    """
    media = _media(media)
    info = info or probe(path, media)
    seek, gate = _grid_seek(start, fps, info)
    cmd = [media.ffmpeg, "-nostdin", "-hide_banner", "-nostats", "-loglevel", "info", *_input_args(media),
           "-max_pixels", str(min(media.max_pixels + media.max_pixels // 4, 2**31 - 1)),
           *(["-threads", str(media.threads)] if media.threads else []),
           "-skip_loop_filter", "all", "-copyts", *_seek_args(seek, end),
           "-i", file_url(path), "-map", "0:v:0", "-an", "-sn", "-dn",
           "-vf", _video_filter(fps, size, crop, info, gate), "-fps_mode", "passthrough",
           "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"]
    frame_bytes = size * size * 3
    with _plain_input(path) as url:
        cmd[cmd.index(file_url(path))] = url
        proc = _Proc(cmd, parse_pts=True)
        last_t, ended, rc = None, False, -1
        try:
            while not ended:
                buf = np.empty(frame_bytes * batch, dtype=np.uint8)
                n = proc.read_into(buf) // frame_bytes
                ended = n < batch
                times = _take_times(proc, n, path) - info.start_time
                keep = (times >= start - 1e-6) & (times < (math.inf if end is None else end))
                if n:
                    last_t = float(times[-1])
                if keep.any():
                    frames = buf[: n * frame_bytes].reshape(n, size, size, 3)
                    yield FrameBatch(times[keep], frames if keep.all() else frames[keep])
        finally:
            rc = proc.close(wait=ended)  # stopped early: kill ffmpeg at once
    _check_decode_end(path, info, media, rc, proc, last_t, start, end, fps)


def _take_times(proc: _Proc, n: int, path: str | os.PathLike[str]) -> np.ndarray:
    times = np.empty(n, dtype=np.float64)
    for i in range(n):
        t = proc.times.get(timeout=60)
        if t is None:
            raise MediaError(f"{_name(path)}: frame timestamps were lost", code="corrupt",
                             detail=proc.stderr_tail())
        times[i] = t
    if n and np.isnan(times).any():  # frames without a timestamp: put them after their neighbour
        for i in np.flatnonzero(np.isnan(times)):
            times[i] = times[i - 1] + 1e-3 if i else 0.0
    return times


def _check_decode_end(path: str | os.PathLike[str], info: ProbeInfo, media: MediaConfig, rc: int, proc: _Proc,
                      last_t: float | None, start: float, end: float | None, fps: float) -> None:
    name = _name(path)
    if rc != 0 and last_t is None:
        raise _failure(name, proc, rc, "video")
    if rc != 0:
        log.warning("%s: ffmpeg exited with %s after %.1f s of frames: %s", name, rc, last_t,
                    _reason(proc.stderr_tail()))
    stop = info.duration if end is None else min(end, info.duration)
    if last_t is None:
        if stop - start > 2.0 / fps:
            raise MediaError(f"{name}: no frames decoded between {start:.1f} s and {stop:.1f} s", code="corrupt",
                             detail=proc.stderr_tail())
        return
    if end is None and last_t < info.declared_end - media.truncation_tolerance - 1.0 / fps:
        raise MediaError(f"{name}: truncated: frames end at {last_t:.1f} s of a declared {info.declared_end:.1f} s; "
                         "copy the file again", code="truncated", detail=proc.stderr_tail())


class AudioStream:
    """Mono float32 audio of ``path`` streamed from ffmpeg, read by windows in time order.

    Sample ``i`` of the stream is at ``start + i / sample_rate`` on the file's timeline (a late
    audio start or a gap is filled with silence, so audio never drifts from the video). Memory
    holds only the samples between the earliest window still needed and the latest read. While
    reading it keeps a loudness track (dBFS RMS per ``loudness_hop`` seconds) of all audio that
    went through, for cut snapping and the review UI.
    """

    def __init__(self, path: str | os.PathLike[str], sample_rate: int, start: float = 0.0,
                 end: float | None = None, media: MediaConfig | None = None,
                 loudness_hop: float = 0.05) -> None:
        media = _media(media)
        self.sr = sample_rate
        self.start = max(0.0, start)
        cmd = [media.ffmpeg, "-nostdin", "-hide_banner", "-nostats", "-loglevel", "error", *_input_args(media),
               *_seek_args(self.start, end), "-i", file_url(path), "-map", "0:a:0", "-vn", "-sn", "-dn",
               "-af", "aresample=async=1:first_pts=0", "-ac", "1", "-ar", str(sample_rate),
               "-f", "f32le", "pipe:1"]
        self._name = _name(path)
        self._proc = _Proc(cmd)
        self._origin = int(round(self.start * sample_rate))  # absolute index of stream sample 0
        self._buf = np.zeros(0, dtype=np.float32)
        self._pos = self._origin  # absolute sample index of _buf[0]
        self._read = 0  # samples read from ffmpeg so far
        self._eof = False
        self._hop = max(1, int(round(loudness_hop * sample_rate)))
        self._pending = np.zeros(0, dtype=np.float32)
        self._loud: list[np.ndarray] = []
        self.loudness_hop = self._hop / sample_rate

    def _read_more(self, seconds: float = 4.0) -> bool:
        chunk = np.empty(max(1, int(seconds * self.sr)), dtype=np.float32)
        n = self._proc.read_into(chunk) // 4
        if n == 0:
            self._eof = True
            rc = self._proc.close(wait=True)
            if rc != 0 and self._read == 0:
                raise _failure(self._name, self._proc, rc, "audio")
            return False
        chunk = chunk[:n]
        self._read += n
        self._buf = np.concatenate([self._buf, chunk]) if len(self._buf) else chunk
        self._track(chunk)
        return True

    def _track(self, chunk: np.ndarray) -> None:
        data = np.concatenate([self._pending, chunk])
        k = len(data) // self._hop
        if k:
            blocks = data[: k * self._hop].reshape(k, self._hop).astype(np.float64)
            rms = np.sqrt(np.mean(blocks * blocks, axis=1))
            self._loud.append((20 * np.log10(np.maximum(rms, 1e-5))).astype(np.float32))
        self._pending = data[k * self._hop:]

    def samples(self, s0: int, s1: int) -> np.ndarray:
        """Samples with absolute indices [s0, s1) (index = time x sample_rate), zero outside the audio.

        ``s0`` must not decrease from call to call: earlier samples are dropped.
        """
        while not self._eof and self._pos + len(self._buf) < s1:
            self._read_more()
        drop = min(s0 - self._pos, len(self._buf))
        if drop > 0:
            self._buf = self._buf[drop:]
            self._pos += drop
        out = np.zeros(max(0, s1 - s0), dtype=np.float32)
        lo, hi = max(s0, self._pos), min(s1, self._pos + len(self._buf))
        if hi > lo:
            out[lo - s0: hi - s0] = self._buf[lo - self._pos: hi - self._pos]
        return out

    @property
    def position(self) -> int:
        """Absolute index of the earliest sample still held (reads before it return zeros)."""
        return self._pos

    def window(self, t0: float, t1: float) -> np.ndarray:
        """Samples covering [t0, t1), zero-padded outside the audio. ``t0`` must not decrease."""
        s0 = int(round(t0 * self.sr))
        return self.samples(s0, s0 + int(round((t1 - t0) * self.sr)))

    def read_to_end(self) -> None:
        """Consume the rest of the stream (completes the loudness track)."""
        while not self._eof:
            self._read_more(16.0)
            keep = min(len(self._buf), self.sr)
            self._pos += len(self._buf) - keep
            self._buf = self._buf[len(self._buf) - keep:]

    @property
    def loudness_track(self) -> tuple[np.ndarray, np.ndarray]:
        """(times of block centres, dBFS) of everything read so far."""
        db = np.concatenate(self._loud) if self._loud else np.zeros(0, dtype=np.float32)
        times = self.start + (np.arange(len(db)) + 0.5) * self.loudness_hop
        return times, db

    def close(self) -> None:
        if not self._eof:
            self._proc.close()
            self._eof = True

    def __enter__(self) -> AudioStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_audio(path: str | os.PathLike[str], *, sample_rate: int, start: float = 0.0,
               end: float | None = None, media: MediaConfig | None = None) -> np.ndarray:
    """Mono float32 samples of [start, end) (whole file if end is None): for short ranges."""
    with AudioStream(path, sample_rate, start, end, media) as stream:
        chunks = []
        while stream._read_more(30.0):
            chunks.append(stream._buf)
            stream._pos += len(stream._buf)
            stream._buf = np.zeros(0, dtype=np.float32)
        return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)
