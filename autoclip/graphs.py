"""ffmpeg filter graphs for every rendered output, built with ffmpeg-python.

Each builder returns an ffmpeg-python output node (inputs, filter chains, output options); the
pure ``compile_args`` turns it into the argument list that ``render.run_ffmpeg`` runs, so the
tests check the exact arguments without starting ffmpeg. ffmpeg-python escapes every filter
option at both filter-graph levels, so any file name (quotes, colons, brackets) is safe.

The pieces:

* ``reel_video``  scale to the reel height, square pixels, constant frame rate, overlay text;
* ``short_video`` a vertical frame: the face cam cropped on top and the game box below
                  (``vstack``), or the game box alone;
* ``audio_chain`` 48 kHz stereo, the loudness gain and a true-peak limiter (run at 4x the
                  sample rate, where true peak is measured), fades at the cuts;
* ``clip_graph`` / ``short_graph`` one segment cut by input seeking and encoded;
* ``concat_graph`` the clips joined by stream copy with chapters;
* ``measure_graph`` a segment's audio alone through ``ebur128`` (for the loudness gain).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import ffmpeg

from autoclip.media.probe import file_url

if TYPE_CHECKING:
    from autoclip.render import ClipSettings
    from autoclip.selection import Segment

AUDIO_RATE = 48000
#: true-peak limiting runs on audio upsampled this many times (as a true-peak meter does)
OVERSAMPLE = 4
GLOBAL_ARGS = ("-nostdin", "-hide_banner", "-nostats")

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class Gain:
    """Loudness correction of one output: ``db`` of gain, then a limiter at ``ceiling`` dBTP
    when the corrected true peak would pass it (``limit`` False: no limiter needed)."""

    db: float
    ceiling: float = -1.5
    limit: bool = True


@dataclass(frozen=True)
class ShortLayout:
    """Where a vertical short's pixels come from: ``face`` (or None) on top, ``game`` below.

    Both boxes are in source display pixels and already have the aspect of the region they
    fill (``face_height`` x ``width`` on top, the rest below), so scaling never distorts."""

    width: int
    height: int
    game: Box
    face: Box | None = None
    face_height: int = 0

    @property
    def game_height(self) -> int:
        return self.height - self.face_height


#: ffmpeg-python hashes its nodes' arguments as UTF-8, which file names holding undecodable
#: bytes (surrogate escapes) are not: such characters travel as _ESC + two hex digits
_ESC = "\U0010fffd"
_HIDDEN = re.compile(_ESC + "(" + _ESC + "|[0-9a-f]{2})")


def _hide(text: str) -> str:
    text = text.replace(_ESC, _ESC * 2)
    return re.sub("[\udc80-\udcff]", lambda m: f"{_ESC}{ord(m.group()) - 0xDC00:02x}", text)


def _unhide(text: str) -> str:
    return _HIDDEN.sub(lambda m: _ESC if m.group(1) == _ESC else chr(0xDC00 + int(m.group(1), 16)), text)


def path_arg(path: str | os.PathLike[str]) -> str:
    """An absolute path as a graph argument."""
    return _hide(os.path.abspath(os.fspath(path)))


def compile_args(node: Any, ffmpeg_bin: str = "ffmpeg", loglevel: str = "error") -> list[str]:
    """The ffmpeg argument list of an ffmpeg-python output node (pure)."""
    node = node.global_args(*GLOBAL_ARGS, "-loglevel", loglevel)
    return [_unhide(a) for a in ffmpeg.compile(node, cmd=ffmpeg_bin, overwrite_output=True)]


def seek_input(vod: str | os.PathLike[str], start: float) -> Any:
    """The VOD opened with input seeking (``-ss`` before ``-i``): decoding starts at the keyframe
    before ``start``, so a cut costs its own length, never the VOD's."""
    return ffmpeg.input(_hide(file_url(vod)), ss=f"{max(0.0, start):.3f}", protocol_whitelist="file")


def silence() -> Any:
    return ffmpeg.input(f"anullsrc=channel_layout=stereo:sample_rate={AUDIO_RATE}", f="lavfi")


def drawtext(stream: Any, st: ClipSettings, textfile: str | os.PathLike[str] | None, *, size: int,
             y_offset: int = 0) -> Any:
    if textfile is None:
        return stream
    pad = max(4, size // 2)
    opts: dict[str, Any] = {}
    if st.font:
        opts["fontfile"] = _hide(st.font)
    opts.update(textfile=path_arg(textfile), fontsize=size, fontcolor="white", box=1,
                boxcolor="black@0.55", boxborderw=max(2, pad // 2), x=pad, y=y_offset + pad)
    return stream.filter("drawtext", **opts)


def reel_video(stream: Any, st: ClipSettings, textfile: str | os.PathLike[str] | None) -> Any:
    v = stream.filter("scale", -2, st.height).filter("setsar", 1).filter("fps", st.fps)
    return drawtext(v, st, textfile, size=st.font_size).filter("format", "yuv420p")


def _region(stream: Any, box: Box, width: int, height: int) -> Any:
    x, y, w, h = box
    return stream.crop(x, y, w, h).filter("scale", width, height).filter("setsar", 1)


def short_video(stream: Any, st: ClipSettings, layout: ShortLayout,
                textfile: str | os.PathLike[str] | None, font_size: int) -> Any:
    """The vertical frame: face cam over game (``vstack``) or the game box alone."""
    stream = stream.filter("fps", st.fps)
    if layout.face is None:
        v = _region(stream, layout.game, layout.width, layout.height)
    else:
        parts = stream.split()
        top = _region(parts[0], layout.face, layout.width, layout.face_height)
        bottom = _region(parts[1], layout.game, layout.width, layout.game_height)
        v = ffmpeg.filter([top, bottom], "vstack", inputs=2)
    return drawtext(v, st, textfile, size=font_size, y_offset=layout.face_height).filter("format", "yuv420p")


def audio_chain(stream: Any, duration: float, fade: float, gain: Gain | None) -> Any:
    a = stream.filter("aresample", AUDIO_RATE)
    if gain is not None:
        a = a.filter("volume", f"{gain.db:.2f}dB")
        if gain.limit:
            a = (a.filter("aresample", AUDIO_RATE * OVERSAMPLE)
                 .filter("alimiter", limit=f"{10 ** (gain.ceiling / 20):.4f}", level=0, latency=1,
                         attack=1, release=50)
                 .filter("aresample", AUDIO_RATE))
    a = a.filter("aformat", sample_fmts="fltp", sample_rates=AUDIO_RATE, channel_layouts="stereo")
    fade = min(fade, duration / 3)
    if fade > 0:
        a = a.filter("afade", t="in", st=0, d=f"{fade:.3f}")
        a = a.filter("afade", t="out", st=f"{duration - fade:.3f}", d=f"{fade:.3f}")
    return a


def encode_options(st: ClipSettings, duration: float) -> dict[str, Any]:
    """Output options identical across a reel's clips, so the concat demuxer can stream-copy them."""
    return {"t": f"{duration:.6f}", "c:v": st.video_codec, "preset": st.preset, "crf": st.crf,
            "c:a": "aac", "b:a": st.audio_bitrate, "ar": AUDIO_RATE, "ac": 2, "video_track_timescale": 90000,
            "map_metadata": -1, "map_chapters": -1, "sn": None, "dn": None, "f": "mp4"}


def _audio_source(src: Any, st: ClipSettings) -> Any:
    return src["a:0"] if st.has_audio else silence()


def clip_graph(vod: str | os.PathLike[str], segment: Segment, out: str | os.PathLike[str], st: ClipSettings,
               duration: float, textfile: str | os.PathLike[str] | None = None,
               gain: Gain | None = None) -> Any:
    """One reel clip: ``segment`` cut from ``vod`` and encoded with the reel's settings."""
    src = seek_input(vod, segment.start)
    v = reel_video(src["v:0"], st, textfile)
    a = audio_chain(_audio_source(src, st), duration, st.fade, gain if st.has_audio else None)
    return ffmpeg.output(v, a, path_arg(out), **encode_options(st, duration))


def short_graph(vod: str | os.PathLike[str], segment: Segment, out: str | os.PathLike[str], st: ClipSettings,
                duration: float, layout: ShortLayout, font_size: int,
                textfile: str | os.PathLike[str] | None = None, gain: Gain | None = None) -> Any:
    """One vertical short of ``segment``."""
    src = seek_input(vod, segment.start)
    v = short_video(src["v:0"], st, layout, textfile, font_size)
    a = audio_chain(_audio_source(src, st), duration, st.fade, gain if st.has_audio else None)
    opts = dict(encode_options(st, duration), movflags="+faststart")
    return ffmpeg.output(v, a, path_arg(out), **opts)


def concat_graph(list_file: str | os.PathLike[str], out: str | os.PathLike[str],
                 metadata: str | os.PathLike[str] | None = None) -> Any:
    """The clips named in ``list_file`` joined by stream copy; chapters from ``metadata``."""
    clips = ffmpeg.input(_hide(file_url(list_file)), f="concat", safe=0, protocol_whitelist="file")
    opts: dict[str, Any] = {"c": "copy", "movflags": "+faststart", "f": "mp4"}
    streams = [clips["v"], clips["a"]]
    if metadata is not None:
        # ffmpeg-python adds an input only when one of its streams is mapped: mapping the
        # metadata file's (absent) data streams optionally ("1:d?" maps nothing) makes it input 1
        meta = ffmpeg.input(_hide(file_url(metadata)), f="ffmetadata", protocol_whitelist="file")
        streams.append(meta["d?"])
        opts.update(map_metadata=1, map_chapters=1)
    return ffmpeg.output(*streams, path_arg(out), **opts)


def frame_graph(video: str | os.PathLike[str], at: float, out: str | os.PathLike[str], quality: int = 3) -> Any:
    """One frame of ``video`` at ``at`` seconds as a JPEG (a short's thumbnail)."""
    src = ffmpeg.input(_hide(file_url(video)), ss=f"{max(0.0, at):.3f}", protocol_whitelist="file")
    return ffmpeg.output(src["v:0"], path_arg(out), vframes=1, update=1, f="image2",
                         **{"q:v": quality})


def measure_graph(vod: str | os.PathLike[str], start: float, duration: float, gain: Gain | None = None) -> Any:
    """``duration`` seconds of the VOD's audio alone (no video decoded) through ``ebur128``, after
    ``gain`` as the encode applies it (if given); the summary (integrated loudness, true peak)
    is logged at the end."""
    src = seek_input(vod, start)
    a = audio_chain(src["a:0"], duration, 0.0, gain).filter("ebur128", peak="true", framelog="verbose")
    return ffmpeg.output(a, "-", t=f"{duration:.6f}", f="null", vn=None, sn=None, dn=None)
