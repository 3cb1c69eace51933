"""What a media file holds, and whether it is finished: ``probe`` (ffprobe, with a reason code
for every refusal: empty, not media, demuxer outside the allowlist, no video, too large, FIFO,
folder) and ``check_complete`` (the last packet against the declared duration, so a file still
being copied or an interrupted recording is refused, not half processed).
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import stat
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from autoclip.config import MediaConfig
from autoclip.errors import MediaError

log = logging.getLogger(__name__)

_WHITELIST_RE = re.compile(r"\[(\w+) @ [^\]]*\] Format not on whitelist")
_STDERR_TAIL = 30
#: stderr lines that reveal a damaged or unfinished file even when ffmpeg exits 0
_TRUNCATION_HINTS = ("File ended prematurely", "moov atom not found", "Truncating packet",
                     "Invalid data found when processing input", "EBML header parsing failed")
_TOO_LARGE_HINT = "exceeds specified max pixel count"
_MP4_BOXES = (b"ftyp", b"mdat", b"free", b"wide", b"skip", b"moov")


@dataclass(frozen=True)
class ProbeInfo:
    path: str
    size: int
    duration: float
    container: str
    video_codec: str | None
    width: int  # display size, after rotation
    height: int
    rotation: int  # degrees clockwise the picture is turned for display (a phone's "rotate" tag)
    fps: float
    vfr: bool
    has_audio: bool
    audio_codec: str | None
    sample_rate: int | None
    channels: int | None
    start_time: float = 0.0
    #: seconds from the file's start where the video stream ends, if the container says
    video_end: float | None = None
    #: the stream's nominal frame rate (r_frame_rate), which a variable-rate recording was set to
    nominal_fps: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def declared_end(self) -> float:
        """Where the video should end: the video stream's own end if known, else the duration."""
        return self.video_end if self.video_end else self.duration


def _media(media: MediaConfig | None) -> MediaConfig:
    return media if media is not None else MediaConfig()


def file_url(path: str | os.PathLike[str]) -> str:
    """An input URL that can only mean a local file, whatever the name (leading '-', ':' ...)."""
    return "file:" + os.path.abspath(os.fspath(path))


def _input_args(media: MediaConfig) -> list[str]:
    """Safety options for every ffmpeg/ffprobe input: local files and allowed containers only."""
    return ["-protocol_whitelist", "file", "-format_whitelist", ",".join(media.demuxers)]


def _name(path: str | os.PathLike[str]) -> str:
    """A file's name fit for a one-line message: control characters and undecodable bytes escaped."""
    name = os.fsencode(Path(path).name).decode("utf-8", "backslashreplace")
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in name)


def _tail(text: str, n: int = _STDERR_TAIL) -> str:
    return "\n".join(text.strip().splitlines()[-n:])


def _last_line(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1].strip() if lines else ""


def _reason(text: str) -> str:
    """ffmpeg's last stderr line without the file's full path (which the message names anyway)."""
    line = _last_line(text)
    return re.sub(r"^file:.*?: ", "", line)[:200]


def check_file(path: str | os.PathLike[str]) -> os.stat_result:
    """Refuse what is not a readable, non-empty regular file, without opening it (FIFOs block)."""
    name = _name(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise MediaError(f"{name}: file not found", code="missing") from None
    except OSError as err:
        raise MediaError(f"{name}: cannot read ({err.strerror})", code="unreadable") from None
    if stat.S_ISDIR(st.st_mode):
        raise MediaError(f"{name}: is a folder, not a video file", code="not_file")
    if not stat.S_ISREG(st.st_mode):
        raise MediaError(f"{name}: not a regular file (FIFO, socket or device); remove it", code="not_file")
    if st.st_size == 0:
        raise MediaError(f"{name}: empty file (0 bytes); was the copy interrupted? Copy it again", code="empty")
    if not os.access(path, os.R_OK):
        raise MediaError(f"{name}: no permission to read it; fix its permissions", code="unreadable")
    return st


def _ratio(value: str | None) -> float:
    if not value or value in ("0/0", "N/A"):
        return 0.0
    if "/" in value:
        num, den = value.split("/", 1)
        return float(num) / float(den) if float(den) else 0.0
    return float(value)


def _rotation(stream: dict) -> int:
    """Clockwise display rotation, a multiple of 90 (ffmpeg turns only those; others: 0)."""
    value = None
    for sd in stream.get("side_data_list") or []:
        if "rotation" in sd:
            value = -(_float(sd["rotation"]) or 0.0)  # display matrices count counter-clockwise
    if value is None:
        value = _float((stream.get("tags") or {}).get("rotate")) or 0.0
    if abs(value) > 3600:  # a broken matrix (ffprobe prints INT64_MIN for NaN)
        return 0
    nearest = int(round(value / 90.0)) * 90
    return nearest % 360 if abs(value - nearest) < 1.0 else 0


def _float(value: object) -> float | None:
    try:
        f = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _head(path: str | os.PathLike[str], n: int = 16) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(n)
    except OSError:
        return b""


def _probe_failure(path: str | os.PathLike[str], name: str, err: str, media: MediaConfig) -> MediaError:
    """The MediaError for an ffprobe that could not open the file."""
    m = _WHITELIST_RE.search(err)
    if m or "Format not on whitelist" in err:
        fmt = m.group(1) if m else "unknown"
        return MediaError(f"{name}: a '{fmt}' file, not a video container autoclip accepts (HLS playlists and "
                          f"concat scripts are refused; allowed: {', '.join(media.demuxers)})",
                          code="demuxer", detail=_tail(err))
    if "moov atom not found" in err and _head(path)[4:8] in _MP4_BOXES:
        return MediaError(f"{name}: unfinished MP4 (no index at the end): still being written, or the recorder "
                          "crashed; wait for it to finish, or remux what is there with a repair tool",
                          code="truncated", detail=_tail(err))
    return MediaError(f"{name}: not a media file autoclip can read ({_reason(err) or 'ffprobe failed'})",
                      code="not_media", detail=_tail(err))


def _run_ffprobe(path: str | os.PathLike[str], media: MediaConfig, name: str) -> dict:
    cmd = [media.ffprobe, "-v", "error", *_input_args(media),
           "-show_format", "-show_streams", "-of", "json", file_url(path)]
    try:
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              errors="replace", timeout=120)
    except FileNotFoundError:
        raise MediaError(f"{media.ffprobe} not found: install ffmpeg (apt-get install ffmpeg)", code="no_ffmpeg") from None
    except subprocess.TimeoutExpired:
        raise MediaError(f"{name}: ffprobe hung for 120 s; the file is probably damaged", code="corrupt") from None
    if proc.returncode != 0:
        raise _probe_failure(path, name, proc.stderr, media)
    try:
        return json.loads(proc.stdout or "{}")
    except json.JSONDecodeError:
        raise MediaError(f"{name}: ffprobe gave unreadable output", code="not_media") from None


def probe(path: str | os.PathLike[str], media: MediaConfig | None = None) -> ProbeInfo:
    """What the media layer sees in ``path``. Raises MediaError with a reason code."""
    media = _media(media)
    st = check_file(path)
    name = _name(path)
    data = _run_ffprobe(path, media, name)
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
    if video.get("codec_name") in (None, "", "none"):
        raise MediaError(f"{name}: its video codec is unknown to this ffmpeg ({video.get('codec_tag_string', '?')}); "
                         "convert it, or install a fuller ffmpeg", code="unsupported_codec")
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
    start = _float(fmt.get("start_time")) or 0.0
    v_dur, v_start = _float(video.get("duration")), _float(video.get("start_time"))
    avg, real = _ratio(video.get("avg_frame_rate")), _ratio(video.get("r_frame_rate"))
    fps = avg or real
    vfr = bool(avg and real and abs(avg - real) / max(avg, real) > 0.01) or _packets_vary(path, media)
    return ProbeInfo(
        path=os.path.abspath(os.fspath(path)), size=st.st_size, duration=float(duration), container=container,
        video_codec=video.get("codec_name"), width=w, height=h, rotation=rotation, fps=round(fps, 3),
        vfr=vfr,
        has_audio=audio is not None, audio_codec=(audio or {}).get("codec_name"),
        sample_rate=int(audio["sample_rate"]) if audio and audio.get("sample_rate") else None,
        channels=int(audio["channels"]) if audio and audio.get("channels") else None,
        start_time=start,
        video_end=(v_dur + (v_start if v_start is not None else start) - start) if v_dur else None,
        nominal_fps=round(real or fps, 3),
    )


def _packets_vary(path: str | os.PathLike[str], media: MediaConfig, packets: int = 600) -> bool:
    """Variable frame rate seen in the first ``packets`` video packets (for containers such as
    MKV whose headers carry no frame count, so the average rate equals the nominal one)."""
    cmd = [media.ffprobe, "-v", "quiet", *_input_args(media), "-select_streams", "v:0",
           "-read_intervals", f"%+#{packets}", "-show_entries", "packet=pts_time", "-of", "csv=p=0", file_url(path)]
    try:
        out = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60).stdout
    except subprocess.TimeoutExpired:
        return False
    pts = np.sort([t for t in map(_float, out.split()) if t is not None])
    steps = np.diff(pts)
    if len(steps) < 10:
        return False
    typical = float(np.median(steps))
    return bool(np.mean(np.abs(steps - typical) > 0.25 * typical + 0.002) > 0.02)


def last_timestamp(path: str | os.PathLike[str], info: ProbeInfo, media: MediaConfig | None = None,
                   tail: float = 30.0) -> tuple[float | None, str]:
    """Presentation time of the end of the last video packet (from the last ``tail`` seconds) + stderr."""
    media = _media(media)
    start = max(0.0, info.declared_end - tail)
    cmd = [media.ffprobe, "-v", "error", *_input_args(media), "-select_streams", "v:0",
           "-read_intervals", f"{start:.3f}%", "-show_entries", "packet=pts_time,dts_time,duration_time",
           "-of", "csv=p=0", file_url(path)]
    try:
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              errors="replace", timeout=600)
    except subprocess.TimeoutExpired:
        return None, "ffprobe timed out reading the last packets"
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
    name = _name(path)
    last, err = last_timestamp(path, info, media)
    hint = next((h for h in _TRUNCATION_HINTS if h in err), None)
    if last is None:
        last, err2 = last_timestamp(path, info, media, tail=info.duration + 1)
        hint = hint or next((h for h in _TRUNCATION_HINTS if h in err2), None)
    if last is None:
        raise MediaError(f"{name}: no video packets could be read; the file is damaged or unfinished", code="truncated",
                         detail=_tail(err))
    if last < info.declared_end - media.truncation_tolerance:
        raise MediaError(
            f"{name}: truncated: video ends at {last:.1f} s but the file declares {info.declared_end:.1f} s "
            "(still being written, or an interrupted copy); copy it again",
            code="truncated", detail=_tail(err))
    if hint and hint != "Truncating packet":
        raise MediaError(f"{name}: damaged or unfinished file ({hint})", code="truncated", detail=_tail(err))
