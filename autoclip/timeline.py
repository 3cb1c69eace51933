"""A reel as an OpenTimelineIO timeline: the one model of what was cut, and its exports.

The timeline holds the source VOD as an external media reference (its ``file://`` URL and its
whole length as the available range) and, on a video and an audio track, one clip per segment
with its exact source range in frames of the VOD's rate; a marker at each segment's peak
carries its score, peak time and why it is there. Editors' files are written from it through
OTIO's maintained adapter plugins, by adapter name:

==========  =====================  ==============================================
export      adapter                opens in
==========  =====================  ==============================================
``otio``    otio_json (built in)   anything OTIO reads (Resolve, Hiero, RV, OTIO tools)
``edl``     cmx_3600               any NLE (CMX 3600), Avid, Premiere, Resolve
``fcpxml``  otio_fcpx_xml_lite     Final Cut Pro X, DaVinci Resolve
``xml``     fcp_xml                Premiere Pro, DaVinci Resolve (FCP 7 XML)
==========  =====================  ==============================================

opentimelineio is imported here only, when a timeline is made.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from autoclip.errors import MediaError
from autoclip.fsutil import atomic_write_text
from autoclip.selection import Segment

log = logging.getLogger(__name__)
# the FCP X writer logs every step at INFO; its warnings still show
logging.getLogger("otio_fcpx_xml_lite_adapter").setLevel(logging.WARNING)

#: export name -> (OTIO adapter name, file suffix)
EXPORTS: dict[str, tuple[str, str]] = {
    "otio": ("otio_json", ".otio"),
    "edl": ("cmx_3600", ".edl"),
    "fcpxml": ("otio_fcpx_xml_lite_adapter", ".fcpxml"),
    "xml": ("fcp_xml", ".xml"),
}
#: reading an EDL back needs its rate (CMX 3600 stores timecode only)
RATE_ARG = {"cmx_3600"}


def vod_url(vod: str | os.PathLike[str]) -> str:
    """The VOD's ``file://`` URL, percent-encoded (spaces, non-ASCII and undecodable bytes too)."""
    return Path(os.path.abspath(os.fspath(vod))).as_uri()


def vod_path(url: str) -> Path:
    """The file a ``file://`` URL names (inverse of ``vod_url``)."""
    from urllib.parse import unquote_to_bytes, urlparse

    return Path(os.fsdecode(unquote_to_bytes(urlparse(url).path)))


def edit_rate(fps: float) -> float:
    """The timeline's frame rate: the reel's (``render.edit_rate``)."""
    from autoclip.render import edit_rate as rate

    return rate(fps)


def frames(seconds: float, rate: float) -> int:
    return round(seconds * rate)


def _text(name: str) -> str:
    """Valid UTF-8 for OTIO's strings (undecodable bytes of a file name shown as U+FFFD; the
    media URL keeps the exact bytes)."""
    return os.fsencode(name).decode("utf-8", "replace")


def edl_reel(vod: str | os.PathLike[str]) -> str:
    """A CMX 3600 reel name for the VOD: up to 8 letters or digits of its name (no spaces), else AX."""
    import re

    return re.sub(r"[^A-Za-z0-9]", "", Path(os.fsdecode(os.fspath(vod))).stem)[:8] or "AX"


def clip_name(index: int, segment: Segment) -> str:
    from autoclip.render import hms

    return f"{index:02d} {hms(segment.start)} score {segment.score:.2f}"


def build(vod: str | os.PathLike[str], segments: Sequence[Segment], *, rate: float, vod_duration: float,
          name: str, clip_lengths: Sequence[float] | None = None, reason: str = "in-reel") -> Any:
    """The reel's timeline. ``clip_lengths``: the rendered length of each clip (whole frames;
    default the segment's length) so the timeline matches the reel frame for frame."""
    import opentimelineio as otio
    from opentimelineio.opentime import RationalTime, TimeRange

    def span(start: float, length: float) -> TimeRange:
        return TimeRange(RationalTime(frames(start, rate), rate), RationalTime(max(1, frames(length, rate)), rate))

    url = vod_url(vod)
    reel = edl_reel(vod)
    available = span(0.0, vod_duration)
    lengths = list(clip_lengths) if clip_lengths is not None else [s.length for s in segments]
    timeline = otio.schema.Timeline(name=name, global_start_time=RationalTime(0, rate))
    timeline.metadata["autoclip"] = {"vod": _text(os.fspath(vod)), "rate": rate}
    for kind in (otio.schema.TrackKind.Video, otio.schema.TrackKind.Audio):
        track = otio.schema.Track(name="V1" if kind == otio.schema.TrackKind.Video else "A1", kind=kind)
        for i, (seg, length) in enumerate(zip(segments, lengths, strict=True), 1):
            ref = otio.schema.ExternalReference(target_url=url, available_range=available)
            ref.name = _text(Path(os.fspath(vod)).name)
            clip = otio.schema.Clip(name=clip_name(i, seg), media_reference=ref, source_range=span(seg.start, length))
            info = {"score": round(seg.score, 4), "peak": round(seg.peak, 3), "reason": reason,
                    "start": round(seg.start, 3), "end": round(seg.end, 3)}
            clip.metadata["autoclip"] = info
            clip.metadata["cmx_3600"] = {"reel": reel}
            peak = min(max(seg.peak, seg.start), seg.start + length - 1 / rate)
            clip.markers.append(otio.schema.Marker(
                name=f"peak {seg.score:.2f}", marked_range=span(peak, 1 / rate),
                color=otio.schema.MarkerColor.RED, metadata={"autoclip": info}))
            track.append(clip)
        timeline.tracks.append(track)
    return timeline


def to_string(timeline: Any, export: str) -> str:
    import opentimelineio as otio

    adapter, _suffix = EXPORTS[export]
    try:
        return otio.adapters.write_to_string(timeline, adapter)
    except otio.exceptions.NoKnownAdapterForExtensionError as err:  # pragma: no cover - install problem
        raise MediaError(f"OTIO adapter {adapter} missing: reinstall autoclip's dependencies ({err})",
                         code="render") from None


def write_exports(timeline: Any, folder: Path, name: str, exports: Iterable[str]) -> dict[str, Path]:
    """Write each named export beside the reel as NAME.<suffix> (atomically); returns their paths."""
    written: dict[str, Path] = {}
    for export in dict.fromkeys(exports):
        path = folder / f"{name}{EXPORTS[export][1]}"
        atomic_write_text(path, to_string(timeline, export))
        written[export] = path
    return written


def read(path: str | os.PathLike[str], rate: float) -> Any:
    """An exported file read back with OTIO (the adapter chosen by its suffix)."""
    import opentimelineio as otio

    suffix = Path(path).suffix
    adapter = next(a for a, s in EXPORTS.values() if s == suffix)
    kwargs = {"rate": rate} if adapter in RATE_ARG else {}
    return otio.adapters.read_from_file(os.fspath(path), adapter, **kwargs)


def source_ranges(timeline: Any) -> list[tuple[float, float]]:
    """(start, end) in seconds of each clip of the timeline's first video track."""
    track = next(t for t in timeline.tracks if t.kind == "Video")
    out = []
    for clip in track.find_clips():
        r = clip.source_range
        out.append((r.start_time.to_seconds(), r.end_time_exclusive().to_seconds()))
    return out

