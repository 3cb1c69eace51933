"""Rendering a reel, its shorts and its editor timelines; the one ffmpeg runner.

Each segment is cut with *input* seeking (``-ss`` before ``-i``, ``-t`` after), so ffmpeg jumps
to the keyframe before the segment, decodes only from there and re-encodes the exact range: a
reel costs time in proportion to its own length, never the VOD's. Every clip is encoded with
identical settings (size, frame rate, pixel format, 48 kHz stereo AAC; a silent track is made
when the VOD has none), so the concat demuxer can join them with a stream copy. The filter
graphs are built with ffmpeg-python (``autoclip.graphs``); loudness is measured per segment
(audio only) and corrected in the same encode (``autoclip.loudness``).

Overlay text goes through a text file (``textfile=``) with drawtext's own escaping, so any file
name works. Outputs appear atomically in the reels folder (``fsutil.atomic_path``): the reel,
``segments.json``, chapters (in the MP4 and as a text file), the editor timelines of
``[render] exports`` made from one OpenTimelineIO timeline (``autoclip.timeline``) and the
vertical shorts (``autoclip.shorts``).
"""

from __future__ import annotations

import errno
import logging
import os
import re
import shutil
import subprocess
import tempfile
import unicodedata
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TypeVar

from autoclip import graphs
from autoclip.config import Config, RenderConfig
from autoclip.errors import ConfigError, DiskFullError, MediaError
from autoclip.fsutil import (
    TMP_PREFIX,
    atomic_path,
    atomic_write_json,
    atomic_write_text,
    cut_utf8,
    publish_mode,
)
from autoclip.selection import Segment
from autoclip.timefmt import hms

log = logging.getLogger(__name__)

AUDIO_RATE = graphs.AUDIO_RATE
FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/local/share/fonts/DejaVuSans.ttf",
    "/Library/Fonts/DejaVuSans.ttf",
)
_CLOCK = "\x00clock\x00"
_STDERR_TAIL = 20


# ---------------------------------------------------------------------------------------------
# Text and escaping (pure)
# ---------------------------------------------------------------------------------------------




def safe_name(text: str, limit: int = 80) -> str:
    """A file-name-safe version of ``text``: letters, digits, ``._-``; no leading dot or dash; at
    most ``limit`` bytes of UTF-8 (file names are measured in bytes; a character is never split)."""
    text = unicodedata.normalize("NFC", text.encode("utf-8", "replace").decode("utf-8"))
    out = re.sub(r"[^\w.\-]+", "_", text, flags=re.UNICODE).strip("._-")
    return cut_utf8(out, limit).rstrip("._-") or "vod"


def reel_name(vod: str | os.PathLike[str], job_id: str) -> str:
    """Stem of a reel's outputs: the VOD's sanitised stem and the job id, at most 80 + 1 + 24 bytes,
    which leaves room (NAME_MAX 255) for every name made from it, the longest
    ``.autoclip-tmp-old-NAME.shorts`` while an earlier shorts folder is replaced."""
    return f"{safe_name(Path(vod).stem)}-{safe_name(job_id, 24)}"


def printable(text: str) -> str:
    """Text safe to draw: valid UTF-8, control characters (newlines too) shown as spaces."""
    text = text.encode("utf-8", "replace").decode("utf-8")
    return "".join(" " if unicodedata.category(c).startswith("C") else c for c in text)


def overlay_text(template: str, *, vod: str, segment: Segment, index: int) -> str:
    """The overlay for one clip, from the [render] overlay template (drawtext-escaped).

    Fields: {vod} {timestamp} {start} {end} {score} {index}, and {clock}: a running HH:MM:SS.mmm
    of the VOD time on each frame.
    """
    fields = dict(vod=printable(Path(vod).name), timestamp=hms(segment.start), start=segment.start,
                  end=segment.end, score=segment.score, index=index, clock=_CLOCK)
    try:
        text = template.format(**fields)
    except (KeyError, IndexError, ValueError) as err:
        raise ConfigError(f"render.overlay: bad template {template!r} ({err}); fields: "
                          "{vod} {timestamp} {start} {end} {score} {index} {clock}") from None
    escaped = text.replace("\\", "\\\\").replace("%", "\\%")
    return escaped.replace(_CLOCK, f"%{{pts:hms:{segment.start:.3f}}}")


def escape_value(value: str) -> str:
    """Escape a filter option value for both filter-graph levels (option, then graph)."""
    level1 = re.sub(r"([\\':])", r"\\\1", value)
    return re.sub(r"([\\'\[\],;])", r"\\\1", level1)


def concat_list(paths: Sequence[str | os.PathLike[str]]) -> str:
    """A concat-demuxer script naming ``paths`` (quoted; quotes inside escaped)."""
    lines = ["ffconcat version 1.0"]
    for p in paths:
        quoted = os.path.abspath(os.fspath(p)).replace("'", "'\\''")
        lines.append(f"file '{quoted}'")
    return "\n".join(lines) + "\n"


def _meta_escape(text: str) -> str:
    return re.sub(r"([=;#\\\n])", r"\\\1", printable(text))


def reel_offsets(segments: Sequence[Segment], fps: float) -> list[tuple[float, float]]:
    """(start, end) of each segment inside the reel, with clip lengths rounded to whole frames."""
    out, t = [], 0.0
    for s in segments:
        d = clip_duration(s, fps)
        out.append((t, t + d))
        t += d
    return out


def clip_duration(segment: Segment, fps: float) -> float:
    return max(1, round(segment.length * fps)) / fps


def chapter_title(segment: Segment, index: int) -> str:
    return f"{index}. {hms(segment.start)} (score {segment.score:.2f})"


def ffmetadata(segments: Sequence[Segment], fps: float, title: str) -> str:
    """An ffmetadata file with one chapter per segment (times in ms, in reel time)."""
    lines = [";FFMETADATA1", f"title={_meta_escape(title)}"]
    for i, (s, (a, b)) in enumerate(zip(segments, reel_offsets(segments, fps), strict=True), 1):
        lines += ["[CHAPTER]", "TIMEBASE=1/1000", f"START={round(a * 1000)}", f"END={round(b * 1000)}",
                  f"title={_meta_escape(chapter_title(s, i))}"]
    return "\n".join(lines) + "\n"


def chapters_text(segments: Sequence[Segment], fps: float) -> str:
    """YouTube-style chapter lines: reel time, then what it is."""
    rows = []
    for i, (s, (a, _b)) in enumerate(zip(segments, reel_offsets(segments, fps), strict=True), 1):
        rows.append(f"{hms(a)} {chapter_title(s, i)}")
    return "\n".join(rows) + ("\n" if rows else "")


# ---------------------------------------------------------------------------------------------
# Commands (pure)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClipSettings:
    """Everything that must be identical across a reel's clips (so concat can stream-copy)."""

    fps: str  # e.g. "30" or "30000/1001"
    height: int  # output height (even), never above the source's
    has_audio: bool
    font: str | None
    font_size: int
    fade: float
    overlay: str
    video_codec: str
    preset: str
    crf: int
    audio_bitrate: str
    ffmpeg: str = "ffmpeg"

    @property
    def fps_value(self) -> float:
        return float(Fraction(self.fps))


def output_fps(fps: float) -> str:
    """A constant output frame rate close to the source's (30 if unknown or absurd)."""
    if not 1 <= fps <= 120:
        return "30"
    if abs(fps - round(fps)) < 0.01:
        return str(round(fps))
    ntsc = round(fps * 1.001)
    if abs(fps - ntsc / 1.001) < 0.01:  # 23.976, 29.97, 59.94 (probe rounds them)
        return f"{ntsc * 1000}/1001"
    frac = Fraction(fps).limit_denominator(1000)
    return str(frac.numerator) if frac.denominator == 1 else f"{frac.numerator}/{frac.denominator}"


#: frame rates editors and SMPTE timecode support
STANDARD_RATES = (23.976, 24.0, 25.0, 29.97, 30.0, 48.0, 50.0, 59.94, 60.0, 120.0)


def edit_rate(fps: float) -> float:
    """The reel's (and its timeline's) frame rate for a VOD of ``fps``: its own rate when that is
    a standard editing rate (24, 25, 30, 60 and their NTSC variants...), else the nearest
    standard one (a variable-frame-rate VOD's average rate rarely is one)."""
    exact = float(Fraction(output_fps(fps)))
    nearest = min(STANDARD_RATES, key=lambda r: (abs(r - exact) / r, -r))
    if abs(nearest - exact) / nearest < 0.002:
        return exact
    return float(Fraction(output_fps(nearest)))


def source_rate(fps: float, vfr: bool = False, nominal: float = 0.0) -> float:
    """The frame rate a reel is made at: a variable-rate VOD's nominal rate when that is a
    standard one (what the recording was set to; its average is not), else its average rate."""
    if vfr and nominal and any(abs(nominal - r) / r < 0.002 for r in STANDARD_RATES):
        return nominal
    return fps


def find_font(configured: str) -> str | None:
    if configured:
        if not Path(configured).is_file():
            raise ConfigError(f"render.font: {configured} is not a file; point it at a .ttf/.otf or leave it empty")
        return configured
    return next((f for f in FONT_CANDIDATES if Path(f).is_file()), None)


def clip_settings(rcfg: RenderConfig, *, src_fps: float, src_height: int, has_audio: bool,
                  ffmpeg: str = "ffmpeg") -> ClipSettings:
    height = min(rcfg.height, src_height) if rcfg.height else src_height
    return ClipSettings(
        fps=output_fps(edit_rate(src_fps)), height=max(2, height - height % 2), has_audio=has_audio,
        font=find_font(rcfg.font) if rcfg.overlay else None,
        font_size=max(8, round(rcfg.font_size * height / 720)), fade=rcfg.fade, overlay=rcfg.overlay,
        video_codec=rcfg.video_codec, preset=rcfg.preset, crf=rcfg.crf, audio_bitrate=rcfg.audio_bitrate,
        ffmpeg=ffmpeg,
    )


def clip_command(vod: str | os.PathLike[str], segment: Segment, out: str | os.PathLike[str], st: ClipSettings,
                 textfile: str | os.PathLike[str] | None = None, gain: graphs.Gain | None = None) -> list[str]:
    """ffmpeg arguments cutting ``segment`` from ``vod`` (input seeking) and re-encoding it."""
    graph = graphs.clip_graph(vod, segment, out, st, clip_duration(segment, st.fps_value), textfile, gain)
    return graphs.compile_args(graph, st.ffmpeg)


def concat_command(list_file: str | os.PathLike[str], out: str | os.PathLike[str],
                   metadata: str | os.PathLike[str] | None = None, ffmpeg: str = "ffmpeg") -> list[str]:
    """Join clips listed in ``list_file`` by stream copy; embed chapters from ``metadata``."""
    return graphs.compile_args(graphs.concat_graph(list_file, out, metadata), ffmpeg)


# ---------------------------------------------------------------------------------------------
# Runner
# ---------------------------------------------------------------------------------------------


def run_ffmpeg(cmd: list[str], what: str, timeout: float | None = None) -> str:
    """Run ffmpeg; returns its log (stderr). MediaError (or DiskFullError) with the stderr tail on
    failure, MediaError when it runs past ``timeout`` seconds (it is killed)."""
    log.debug("run %s", cmd)
    try:
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, check=False, timeout=timeout)
    except FileNotFoundError:
        raise MediaError(f"{cmd[0]} not found: install ffmpeg (apt-get install ffmpeg)", code="no_ffmpeg") from None
    except subprocess.TimeoutExpired:
        raise MediaError(f"ffmpeg ran past {timeout:.0f} s while {what}; the file may be damaged", code="render") from None
    err = proc.stderr.decode("utf-8", "replace").strip()
    if proc.returncode == 0:
        return err
    tail = "\n".join(err.splitlines()[-_STDERR_TAIL:])
    last = err.splitlines()[-1].strip() if err else f"exit {proc.returncode}"
    if "No space left on device" in err:
        raise DiskFullError(f"disk full while {what}: free space in the reels/jobs folder; the job is retried later",
                            detail=tail)
    raise MediaError(f"ffmpeg failed while {what} ({last})", code="render", detail=tail)


@dataclass
class RenderResult:
    name: str
    reel: Path | None
    segments_file: Path
    edl: Path | None
    chapters: Path | None
    clips: list[Path]
    exports: dict[str, Path] = field(default_factory=dict)
    shorts: list[Path] = field(default_factory=list)
    shorts_file: Path | None = None


def _outputs(reels: Path, name: str) -> dict[str, Path]:
    from autoclip.timeline import EXPORTS

    out = {"reel": reels / f"{name}.mp4", "segments": reels / f"{name}.segments.json",
           "chapters": reels / f"{name}.chapters.txt", "clips": reels / f"{name}.clips",
           "shorts": reels / f"{name}.shorts"}
    out.update({f"export:{k}": reels / f"{name}{suffix}" for k, (_a, suffix) in EXPORTS.items()})
    return out


def _remove_stale(out: dict[str, Path], keep: Sequence[str] = ()) -> None:
    """Remove earlier outputs of this name except those in ``keep``."""
    for key, path in out.items():
        if key in keep or key == "segments":
            continue
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def segment_gains(vod: str | os.PathLike[str], segments: Sequence[Segment], cfg: Config,
                  st: ClipSettings) -> dict[int, graphs.Gain] | None:
    """The loudness gain of each segment (1-based), from its own audio measured once; None when
    ``[render] loudness = "none"`` or the VOD has no audio."""
    from autoclip import loudness

    target = cfg.render.loudness
    if target == "none" or not st.has_audio:
        return None

    def measure(seg: Segment) -> tuple[graphs.Gain, loudness.Loudness]:
        return loudness.segment_gain(vod, seg.start, clip_duration(seg, st.fps_value), float(target), st.ffmpeg)

    gains = {}
    for i, (gain, measured) in enumerate(_in_parallel(measure, segments), 1):
        gains[i] = gain
        log.debug("segment %d: %.1f LUFS, %.1f dBTP -> gain %+.1f dB%s", i, measured.integrated,
                  measured.true_peak, gain.db, " + limiter" if gain.limit else "")
    return gains


#: ffmpeg processes a reel runs at once: one process leaves a core idle while it starts, seeks
#: to its keyframe and flushes; two hide that (a reel's cost follows its length, not its count)
RENDER_WORKERS = 2


_T = TypeVar("_T")
_R = TypeVar("_R")


def _in_parallel(fn: Callable[[_T], _R], items: Sequence[_T]) -> list[_R]:
    """``[fn(x) for x in items]``, ``RENDER_WORKERS`` at a time, in order. On the first error the
    calls not yet started are cancelled, and it is raised once those already running have ended."""
    if len(items) < 2:
        return [fn(x) for x in items]
    pool = ThreadPoolExecutor(max_workers=RENDER_WORKERS, thread_name_prefix="render")
    try:
        futures = [pool.submit(fn, x) for x in items]
        return [f.result() for f in futures]
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def clip_file_name(index: int, segment: Segment) -> str:
    """The working name of a reel's clip ``index`` (1-based; sorts in reel order)."""
    return f"{index:03d}-{hms(segment.start).replace(':', '')}.mp4"


def render_clips(vod: str | os.PathLike[str], segments: Sequence[Segment], st: ClipSettings,
                 work: Path, gains: dict[int, graphs.Gain] | None = None) -> list[Path]:
    """Encode each segment to ``work``/NN.mp4; returns the clip paths in order."""
    def cut(job: tuple[int, Segment]) -> Path:
        i, seg = job
        textfile = None
        if st.overlay:
            textfile = work / f"overlay-{i:03d}.txt"
            textfile.write_text(overlay_text(st.overlay, vod=os.fspath(vod), segment=seg, index=i), encoding="utf-8")
        out = work / clip_file_name(i, seg)
        log.info("clip %d/%d: %s-%s (score %.2f)", i, len(segments), hms(seg.start), hms(seg.end), seg.score)
        run_ffmpeg(clip_command(vod, seg, out, st, textfile, (gains or {}).get(i)),
                   f"cutting clip {i} ({hms(seg.start)})", timeout=120 + 30 * clip_duration(seg, st.fps_value))
        return out

    return _in_parallel(cut, list(enumerate(segments, 1)))


def _publish_dir(files: list[Path], target: Path) -> list[Path]:
    """Move ``files`` into a fresh folder that replaces ``target`` in one rename."""
    staging = Path(tempfile.mkdtemp(prefix=TMP_PREFIX, dir=target.parent))
    for c in files:  # the reel is joined already: move, do not copy
        os.replace(c, staging / c.name)
    publish_mode(staging)  # mkdtemp made it 0700
    if target.is_dir():
        old = target.with_name(f"{TMP_PREFIX}old-{target.name}")
        os.replace(target, old)
        shutil.rmtree(old, ignore_errors=True)
    os.replace(staging, target)
    return [target / c.name for c in files]


def _frame_size(vod: str | os.PathLike[str], cfg: Config, src_width: int | None, src_height: int) -> tuple[int, int]:
    if src_width:
        return src_width, src_height
    from autoclip import media

    info = media.probe(vod, cfg.media)
    return info.width, info.height


def render_reel(vod: str | os.PathLike[str], segments: Sequence[Segment], cfg: Config, *,
                name: str, src_fps: float, src_height: int, has_audio: bool,
                meta: dict | None = None, src_width: int | None = None,
                vod_duration: float | None = None,
                clip_renderer: Callable[..., list[Path]] | None = None) -> RenderResult:
    """Cut, join and publish the reel of ``segments``, its timelines and shorts under cfg.path("reels").

    ``meta`` (vod, model, job...) goes into segments.json. ``clip_renderer(vod, segments, st, work,
    gains)`` encodes the clips (default ``render_clips``, here; a cluster runner renders them in
    parallel). With no segments, only segments.json (an empty list) is written and any earlier reel of the same name is removed.
    """
    from autoclip import shorts as shorts_mod
    from autoclip import timeline

    reels = cfg.path("reels")
    reels.mkdir(parents=True, exist_ok=True)
    out = _outputs(reels, name)
    st = clip_settings(cfg.render, src_fps=src_fps, src_height=src_height, has_audio=has_audio,
                       ffmpeg=cfg.media.ffmpeg)
    offsets = reel_offsets(segments, st.fps_value)
    doc = dict(meta or {}, vod=os.fspath(vod), name=name, reel=str(out["reel"]) if segments else None,
               segments=[dict(s.to_dict(), index=i, reel_start=round(a, 3), reel_end=round(b, 3))
                         for i, (s, (a, b)) in enumerate(zip(segments, offsets, strict=True), 1)])
    if not segments:
        _remove_stale(out)
        atomic_write_json(out["segments"], doc)
        log.info("no highlights found in %s: wrote %s, no reel", Path(vod).name, out["segments"].name)
        return RenderResult(name, None, out["segments"], None, None, [])
    plan = shorts_mod.plan(vod, segments, cfg, _frame_size(vod, cfg, src_width, src_height)) \
        if cfg.shorts.count else None
    rate = timeline.edit_rate(src_fps)
    tl = timeline.build(vod, segments, rate=rate, name=name, vod_duration=vod_duration or max(s.end for s in segments),
                        clip_lengths=[b - a for a, b in offsets])
    work = Path(tempfile.mkdtemp(prefix=TMP_PREFIX, dir=reels))
    try:
        gains = segment_gains(vod, segments, cfg, st)
        clips = (clip_renderer or render_clips)(vod, segments, st, work, gains)
        short_entries, short_files = [], []
        if plan is not None:
            (work / "shorts").mkdir()
            short_entries, short_files = shorts_mod.render_shorts(vod, plan, st, cfg, work / "shorts", gains)
            short_files.append(work / "shorts" / "shorts.json")
            atomic_write_json(short_files[-1], shorts_mod.shorts_doc(vod, name, plan, short_entries))
        (work / "list.ffconcat").write_text(concat_list(clips), encoding="utf-8")
        (work / "chapters.ffmeta").write_text(ffmetadata(segments, st.fps_value, Path(vod).name), encoding="utf-8")
        with atomic_path(out["reel"]) as tmp:
            run_ffmpeg(concat_command(work / "list.ffconcat", tmp, work / "chapters.ffmeta", st.ffmpeg),
                       "joining the reel", timeout=120 + 2 * offsets[-1][1])
            # everything expensive succeeded: the cut lists, then the reel itself (renamed last)
            atomic_write_json(out["segments"], doc)
            exports = timeline.write_exports(tl, reels, name, cfg.render.exports)
            atomic_write_text(out["chapters"], chapters_text(segments, st.fps_value))
            published = _publish_dir(clips, out["clips"]) if cfg.render.clips else []
            shorts = _publish_dir(short_files, out["shorts"]) if short_files else []
            _remove_stale(out, keep=["reel", "chapters", *(["clips"] if published else []),
                                     *(["shorts"] if shorts else []), *(f"export:{k}" for k in exports)])
    except OSError as err:
        if err.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DiskFullError(f"disk full while rendering into {reels}: free space; the job is retried later") from err
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    total = offsets[-1][1]
    log.info("reel %s: %d segments, %.1f s; %d shorts; timelines: %s", out["reel"].name, len(segments), total,
             len(short_entries), ", ".join(exports) or "none")
    return RenderResult(name, out["reel"], out["segments"], exports.get("edl"), out["chapters"], published,
                        exports, [p for p in shorts if p.suffix == ".mp4"], out["shorts"] / "shorts.json" if shorts else None)
