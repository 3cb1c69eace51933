"""The media layer: the only module that runs ffprobe/ffmpeg to read media.

Files are untrusted. Every call uses an argument list (no shell), the ``file:`` protocol only,
a demuxer allowlist and a pixel limit, and failures become a ``MediaError`` whose message says
what is wrong and what to do (``detail`` carries ffmpeg's stderr tail).

Frames are sampled inside ffmpeg (a ``select`` on presentation-time bins, crop, fast scaling, the
deblocking loop filter skipped: invisible at model resolution) and streamed through a pipe in
batches with their real presentation times, so memory is bounded by the batch, never by the VOD.
Audio streams through a second process as mono float32.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import re
import stat
import subprocess
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from autoclip.config import MediaConfig
from autoclip.errors import MediaError

log = logging.getLogger(__name__)

_PTS_RE = re.compile(r"\bn:\s*(\d+)\s+pts:\s*(-?\d+)\s+pts_time:\s*(-?[\d.]+)")
_STDERR_TAIL = 30
#: stderr lines that reveal a damaged or unfinished file even when ffmpeg exits 0
_TRUNCATION_HINTS = ("File ended prematurely", "moov atom not found", "Truncating packet",
                     "Invalid data found when processing input", "EBML header parsing failed")


@dataclass(frozen=True)
class ProbeInfo:
    path: str
    size: int
    duration: float
    container: str
    video_codec: str | None
    width: int  # display size, after rotation
    height: int
    rotation: int
    fps: float
    vfr: bool
    has_audio: bool
    audio_codec: str | None
    sample_rate: int | None
    channels: int | None
    start_time: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class FrameBatch:
    times: np.ndarray  # (N,) float64 seconds from the file's start, from presentation timestamps
    frames: np.ndarray  # (N, S, S, 3) uint8 RGB


def _media(media: MediaConfig | None) -> MediaConfig:
    return media if media is not None else MediaConfig()


def _url(path: str | os.PathLike[str]) -> str:
    """An input URL that can only mean a local file, whatever the name (leading '-', ':' ...)."""
    return "file:" + os.path.abspath(os.fspath(path))


def _tail(text: str, n: int = _STDERR_TAIL) -> str:
    return "\n".join(text.strip().splitlines()[-n:])


def _last_line(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1].strip() if lines else ""


def check_file(path: str | os.PathLike[str]) -> os.stat_result:
    """Refuse what is not a readable, non-empty regular file, without opening it (FIFOs block)."""
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise MediaError(f"{p.name}: file not found", code="missing") from None
    except OSError as err:
        raise MediaError(f"{p.name}: cannot read ({err.strerror})", code="unreadable") from None
    if stat.S_ISDIR(st.st_mode):
        raise MediaError(f"{p.name}: is a folder, not a video file", code="not_file")
    if not stat.S_ISREG(st.st_mode):
        raise MediaError(f"{p.name}: not a regular file (FIFO, socket or device); remove it", code="not_file")
    if st.st_size == 0:
        raise MediaError(f"{p.name}: empty file (0 bytes); was the copy interrupted? Copy it again", code="empty")
    return st


def _ratio(value: str | None) -> float:
    if not value or value in ("0/0", "N/A"):
        return 0.0
    if "/" in value:
        num, den = value.split("/", 1)
        return float(num) / float(den) if float(den) else 0.0
    return float(value)


def _rotation(stream: dict) -> int:
    for sd in stream.get("side_data_list") or []:
        if "rotation" in sd:
            return int(round(float(sd["rotation"]))) % 360
    rotate = (stream.get("tags") or {}).get("rotate")
    return (-int(rotate)) % 360 if rotate else 0


def _float(value: object) -> float | None:
    try:
        f = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return f if np.isfinite(f) else None


def probe(path: str | os.PathLike[str], media: MediaConfig | None = None) -> ProbeInfo:
    """What the media layer sees in ``path``. Raises MediaError with a reason code."""
    media = _media(media)
    st = check_file(path)
    name = Path(path).name
    cmd = [media.ffprobe, "-v", "error", "-protocol_whitelist", "file",
           "-format_whitelist", ",".join(media.demuxers),
           "-show_format", "-show_streams", "-of", "json", _url(path)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, errors="replace", timeout=120)
    except FileNotFoundError:
        raise MediaError(f"{media.ffprobe} not found: install ffmpeg (apt-get install ffmpeg)", code="no_ffmpeg") from None
    except subprocess.TimeoutExpired:
        raise MediaError(f"{name}: ffprobe hung for 120 s; the file is probably damaged", code="corrupt") from None
    if proc.returncode != 0:
        raise MediaError(f"{name}: not a media file autoclip can read ({_last_line(proc.stderr) or 'ffprobe failed'})",
                         code="not_media", detail=_tail(proc.stderr))
    try:
        data = json.loads(proc.stdout or "{}")
    except json.JSONDecodeError:
        raise MediaError(f"{name}: ffprobe gave unreadable output", code="not_media") from None
    fmt = data.get("format") or {}
    container = fmt.get("format_name", "")
    if not set(container.split(",")) & set(media.demuxers):
        raise MediaError(f"{name}: container '{container}' is not allowed (allowed: {', '.join(media.demuxers)})",
                         code="demuxer")
    streams = data.get("streams") or []
    video = next((s for s in streams if s.get("codec_type") == "video"
                  and not (s.get("disposition") or {}).get("attached_pic")), None)
    audio = next((s for s in streams if s.get("codec_type") == "audio"), None)
    if video is None:
        raise MediaError(f"{name}: no video stream (audio-only files have no face cam to score); skipped", code="no_video")
    w, h = int(video.get("width") or 0), int(video.get("height") or 0)
    if w <= 0 or h <= 0:
        raise MediaError(f"{name}: video stream has no picture size; the file is damaged", code="corrupt")
    if w * h > media.max_pixels:
        raise MediaError(f"{name}: {w}x{h} exceeds media.max_pixels = {media.max_pixels}; refused (raise the limit if genuine)",
                         code="too_large")
    rotation = _rotation(video)
    if rotation in (90, 270):
        w, h = h, w
    duration = _float(fmt.get("duration")) or _float(video.get("duration"))
    if not duration or duration <= 0:
        raise MediaError(f"{name}: no duration in the file (still being written, or damaged); try again once it is complete",
                         code="no_duration")
    avg, real = _ratio(video.get("avg_frame_rate")), _ratio(video.get("r_frame_rate"))
    fps = avg or real
    vfr = bool(avg and real and abs(avg - real) / max(avg, real) > 0.01)
    return ProbeInfo(
        path=os.path.abspath(os.fspath(path)), size=st.st_size, duration=float(duration), container=container,
        video_codec=video.get("codec_name"), width=w, height=h, rotation=rotation, fps=round(fps, 3), vfr=vfr,
        has_audio=audio is not None, audio_codec=(audio or {}).get("codec_name"),
        sample_rate=int(audio["sample_rate"]) if audio and audio.get("sample_rate") else None,
        channels=int(audio["channels"]) if audio and audio.get("channels") else None,
        start_time=_float(fmt.get("start_time")) or 0.0,
    )


def last_timestamp(path: str | os.PathLike[str], info: ProbeInfo, media: MediaConfig | None = None,
                   tail: float = 30.0) -> tuple[float | None, str]:
    """Presentation time of the last video packet (read from the last ``tail`` seconds) + stderr."""
    media = _media(media)
    start = max(0.0, info.duration - tail)
    cmd = [media.ffprobe, "-v", "error", "-protocol_whitelist", "file",
           "-format_whitelist", ",".join(media.demuxers), "-select_streams", "v:0",
           "-read_intervals", f"{start:.3f}%", "-show_entries", "packet=pts_time,dts_time,duration_time",
           "-of", "csv=p=0", _url(path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, errors="replace", timeout=300)
    last = None
    for line in proc.stdout.splitlines():
        parts = [_float(x) for x in line.split(",")]
        t = parts[0] if parts and parts[0] is not None else (parts[1] if len(parts) > 1 else None)
        if t is None:
            continue
        dur = parts[2] if len(parts) > 2 and parts[2] is not None else 0.0
        last = max(last or 0.0, t + dur)
    return (None if last is None else last - info.start_time), proc.stderr


def check_complete(path: str | os.PathLike[str], info: ProbeInfo, media: MediaConfig | None = None) -> None:
    """Raise MediaError(code="truncated") when the file ends before its declared duration.

    A half-written MKV passes ffprobe with the full duration in its header; only its packets
    give it away. Reads only the last seconds of the file, so it is cheap on long VODs.
    """
    media = _media(media)
    name = Path(path).name
    last, err = last_timestamp(path, info, media)
    hint = next((h for h in _TRUNCATION_HINTS if h in err), None)
    if last is None:
        last, err2 = last_timestamp(path, info, media, tail=info.duration + 1)
        hint = hint or next((h for h in _TRUNCATION_HINTS if h in err2), None)
    if last is None:
        raise MediaError(f"{name}: no video packets could be read; the file is damaged or unfinished", code="truncated",
                         detail=_tail(err))
    if last < info.duration - media.truncation_tolerance:
        raise MediaError(
            f"{name}: truncated: video ends at {last:.1f} s but the file declares {info.duration:.1f} s "
            "(still being written, or an interrupted copy); copy it again",
            code="truncated", detail=_tail(err))
    if hint and "Truncating packet" not in hint:
        raise MediaError(f"{name}: damaged or unfinished file ({hint})", code="truncated", detail=_tail(err))


class _Proc:
    """An ffmpeg child whose stderr is drained by a thread (into a bounded tail + a PTS queue)."""

    def __init__(self, cmd: list[str], parse_pts: bool = False) -> None:
        log.debug("run %s", cmd)
        try:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, bufsize=0)
        except FileNotFoundError:
            raise MediaError(f"{cmd[0]} not found: install ffmpeg (apt-get install ffmpeg)", code="no_ffmpeg") from None
        self.tail: deque[str] = deque(maxlen=_STDERR_TAIL)
        self.hints: set[str] = set()
        self.pts: queue.Queue[float | None] = queue.Queue()
        self._parse = parse_pts
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip()
            if self._parse and "pts_time:" in line:
                m = _PTS_RE.search(line)
                if m:
                    self.pts.put(float(m.group(3)))
                    continue
            for h in _TRUNCATION_HINTS:
                if h in line:
                    self.hints.add(h)
            if line and "Parsed_showinfo" not in line:
                self.tail.append(line)
        self.pts.put(None)

    def read_exact(self, n: int) -> bytes:
        assert self.proc.stdout is not None
        buf = bytearray()
        while len(buf) < n:
            chunk = self.proc.stdout.read(n - len(buf))
            if not chunk:
                break
            buf += chunk
        return bytes(buf)

    def stderr_tail(self) -> str:
        return "\n".join(self.tail)

    def close(self) -> int:
        if self.proc.poll() is None:
            self.proc.kill()
        rc = self.proc.wait()
        self._thread.join(timeout=5)
        for s in (self.proc.stdout, self.proc.stderr):
            if s:
                s.close()
        return rc


def _seek_args(start: float, end: float | None) -> list[str]:
    args = []
    if start > 0:
        args += ["-ss", f"{start:.3f}"]
    if end is not None:
        args += ["-t", f"{max(0.0, end - start):.3f}"]
    return args


def _video_filter(fps: float, size: int, crop: tuple[int, int, int, int] | None, info: ProbeInfo,
                  start: float) -> str:
    parts = [
        # the first frame of each 1/fps presentation-time bin: real PTS, exact count, no drift
        f"select='isnan(prev_selected_t)+gt(floor((t-{info.start_time:.6f})*{fps}),floor((prev_selected_t-{info.start_time:.6f})*{fps}))'",
    ]
    if crop is not None:
        x, y, w, h = crop
        if x < 0 or y < 0 or w <= 0 or h <= 0 or x + w > info.width or y + h > info.height:
            raise MediaError(f"crop box {list(crop)} does not fit the {info.width}x{info.height} video; "
                             "fix [frames] crop (see `autoclip crop VOD --at TIME`)", code="crop")
        parts.append(f"crop={w}:{h}:{x}:{y}")
    parts += [f"scale={size}:{size}:flags=fast_bilinear", "format=rgb24", "showinfo"]
    return ",".join(parts)


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

    Times are presentation times in seconds from the file's start. A full-file decode that ends
    well before the declared duration raises MediaError(code="truncated").
    """
    media = _media(media)
    info = info or probe(path, media)
    cmd = [media.ffmpeg, "-nostdin", "-hide_banner", "-nostats", "-loglevel", "info",
           "-protocol_whitelist", "file", "-skip_loop_filter", "all", "-copyts",
           *_seek_args(start, end), "-i", _url(path), "-map", "0:v:0", "-an", "-sn", "-dn",
           "-vf", _video_filter(fps, size, crop, info, start), "-fps_mode", "passthrough",
           "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"]
    frame_bytes = size * size * 3
    proc = _Proc(cmd, parse_pts=True)
    last_t = None
    try:
        while True:
            raw = proc.read_exact(frame_bytes * batch)
            n = len(raw) // frame_bytes
            if n == 0:
                break
            times = np.empty(n, dtype=np.float64)
            for i in range(n):
                t = proc.pts.get(timeout=60)
                if t is None:
                    raise MediaError(f"{Path(path).name}: frame timestamps were lost", code="corrupt",
                                     detail=proc.stderr_tail())
                times[i] = t - info.start_time
            frames = np.frombuffer(raw[: n * frame_bytes], dtype=np.uint8).reshape(n, size, size, 3)
            last_t = float(times[-1])
            yield FrameBatch(times, frames)
            if n < batch:
                break
    finally:
        rc = proc.close()
    _check_decode_end(path, info, media, rc, proc, last_t, start, end, fps)


def _check_decode_end(path, info: ProbeInfo, media: MediaConfig, rc: int, proc: _Proc,
                      last_t: float | None, start: float, end: float | None, fps: float) -> None:
    name = Path(path).name
    if rc != 0 and last_t is None:
        raise MediaError(f"{name}: ffmpeg could not decode it ({_last_line(proc.stderr_tail()) or f'exit {rc}'})",
                         code="corrupt", detail=proc.stderr_tail())
    stop = info.duration if end is None else min(end, info.duration)
    if last_t is None:
        if stop - start > 2.0 / fps:
            raise MediaError(f"{name}: no frames decoded between {start:.1f} s and {stop:.1f} s", code="corrupt",
                             detail=proc.stderr_tail())
        return
    if end is None and last_t < stop - media.truncation_tolerance:
        raise MediaError(f"{name}: truncated: frames end at {last_t:.1f} s of a declared {info.duration:.1f} s; "
                         "copy the file again", code="truncated", detail=proc.stderr_tail())


class AudioStream:
    """Mono float32 audio of ``path`` streamed from ffmpeg, read by windows in time order.

    Memory holds only the samples between the earliest window still needed and the latest read.
    While reading it keeps a loudness track (dBFS RMS per ``loudness_hop`` seconds) of all audio
    that went through, for cut snapping and the review UI.
    """

    def __init__(self, path: str | os.PathLike[str], sample_rate: int, start: float = 0.0,
                 end: float | None = None, media: MediaConfig | None = None,
                 loudness_hop: float = 0.05) -> None:
        media = _media(media)
        self.sr = sample_rate
        self.start = start
        cmd = [media.ffmpeg, "-nostdin", "-hide_banner", "-nostats", "-loglevel", "error",
               "-protocol_whitelist", "file", *_seek_args(start, end), "-i", _url(path),
               "-map", "0:a:0", "-vn", "-sn", "-dn", "-ac", "1", "-ar", str(sample_rate),
               "-f", "f32le", "pipe:1"]
        self._name = Path(path).name
        self._proc = _Proc(cmd)
        self._buf = np.zeros(0, dtype=np.float32)
        self._buf_t0 = start  # time of _buf[0]
        self._eof = False
        self._hop = max(1, int(round(loudness_hop * sample_rate)))
        self._pending = np.zeros(0, dtype=np.float32)
        self._loud: list[float] = []
        self.loudness_hop = self._hop / sample_rate

    def _read_more(self, seconds: float = 4.0) -> bool:
        raw = self._proc.read_exact(int(seconds * self.sr) * 4)
        n = len(raw) // 4
        if n == 0:
            self._eof = True
            rc = self._proc.close()
            if rc != 0 and self._buf_t0 == self.start and not len(self._buf) and not self._loud:
                raise MediaError(f"{self._name}: ffmpeg could not decode the audio "
                                 f"({_last_line(self._proc.stderr_tail()) or f'exit {rc}'})",
                                 code="corrupt", detail=self._proc.stderr_tail())
            return False
        chunk = np.frombuffer(raw[: n * 4], dtype=np.float32)
        self._buf = np.concatenate([self._buf, chunk])
        self._track(chunk)
        return True

    def _track(self, chunk: np.ndarray) -> None:
        data = np.concatenate([self._pending, chunk])
        k = len(data) // self._hop
        if k:
            blocks = data[: k * self._hop].reshape(k, self._hop).astype(np.float64)
            rms = np.sqrt(np.mean(blocks * blocks, axis=1))
            self._loud.extend((20 * np.log10(np.maximum(rms, 1e-5))).tolist())
        self._pending = data[k * self._hop:]

    def window(self, t0: float, t1: float) -> np.ndarray:
        """Samples covering [t0, t1), zero-padded outside the audio. ``t0`` must not decrease."""
        n = int(round((t1 - t0) * self.sr))
        while not self._eof and self._buf_t0 + len(self._buf) / self.sr < t1:
            self._read_more()
        # drop what no later window can need
        drop = int((t0 - self._buf_t0) * self.sr)
        if drop > 0:
            drop = min(drop, len(self._buf))
            self._buf = self._buf[drop:]
            self._buf_t0 += drop / self.sr
        out = np.zeros(n, dtype=np.float32)
        offset = int(round((t0 - self._buf_t0) * self.sr))
        lo, hi = max(0, offset), min(len(self._buf), offset + n)
        if hi > lo:
            out[lo - offset: hi - offset] = self._buf[lo:hi]
        return out

    def read_to_end(self) -> None:
        """Consume the rest of the stream (completes the loudness track)."""
        while not self._eof:
            self._read_more()
            self._buf = self._buf[-self.sr:]
            self._buf_t0 = self._end_time() - len(self._buf) / self.sr

    def _end_time(self) -> float:
        return self.start + (len(self._loud) * self._hop + len(self._pending)) / self.sr

    @property
    def loudness_track(self) -> tuple[np.ndarray, np.ndarray]:
        """(times of block centres, dBFS) of everything read so far."""
        db = np.asarray(self._loud, dtype=np.float32)
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
            stream._buf = np.zeros(0, dtype=np.float32)
        return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)
