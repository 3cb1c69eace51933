"""The reel's OpenTimelineIO timeline and its exports, read back with OTIO's adapters."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import pytest

from autoclip import config, media, render, timeline
from autoclip.selection import Segment

SEGS = [Segment(1.0, 3.5, 0.91, 2.2), Segment(4.4, 6.05, 0.8, 5.0), Segment(8.3, 10.9, 0.66, 9.9)]
#: rate of each generated VOD and the timeline rate expected for it
KINDS = {"30": ("30", 30.0), "60": ("60", 60.0), "29.97": ("30000/1001", 30000 / 1001), "vfr": ("30", 30.0)}


@pytest.fixture(scope="module")
def vods(tmp_path_factory, run_ffmpeg) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("tl") / "dir with space" / "ストリーム"
    folder.mkdir(parents=True)
    out = {}
    for kind, (rate, _) in KINDS.items():
        path = folder / f"vod {kind} fps ストリーム's.mp4"
        args = ["-f", "lavfi", "-i", f"testsrc2=size=160x90:rate={rate}:duration=12",
                "-f", "lavfi", "-i", "sine=frequency=300:duration=12"]
        if kind == "vfr":  # every third frame from 3 s to 6 s, irregular gaps from 8 s to 10 s
            drop = "not(between(t,3,6)*mod(n,3))*not(between(t,8,10)*lt(mod(n,7),4))"
            args += ["-vf", f"select='{drop}'", "-fps_mode", "vfr"]
        run_ffmpeg(*args, "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", "-shortest", str(path))
        out[kind] = path
    return out


def exact_fcpx_reader(monkeypatch) -> None:
    """The FCP X lite reader converts times with ``Fraction(1, int(rate))``, so 29.97 fps files read
    back 3 % off (the file it wrote has the exact rationals); read them with the exact rate."""
    import opentimelineio as otio
    import otio_fcpx_xml_lite_adapter.reader as reader

    def exact(seconds, rate):
        if seconds is None:
            return otio.opentime.RationalTime(0, rate)
        return otio.opentime.RationalTime(round(seconds * Fraction(rate).limit_denominator(1001)), rate)

    monkeypatch.setattr(reader, "_to_rational_time", exact)


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_export_reads_back_the_segments(vods, tmp_path, kind, monkeypatch):
    exact_fcpx_reader(monkeypatch)
    vod = vods[kind]
    info = media.probe(vod)
    assert info.vfr == (kind == "vfr")
    cfg = config.from_dict({"render": {"height": 90, "preset": "ultrafast", "loudness": "none", "overlay": "",
                                       "exports": ["edl", "fcpxml", "xml", "otio"]}, "shorts": {"count": 0}},
                           root=tmp_path / "deploy ストリーム")
    cfg.ensure_dirs()
    fps = render.source_rate(info.fps, info.vfr, info.nominal_fps)  # as the pipeline does
    res = render.render_reel(vod, SEGS, cfg, name="reel", src_fps=fps, src_height=info.height,
                             has_audio=info.has_audio, vod_duration=info.duration)
    rate = KINDS[kind][1]
    assert render.edit_rate(fps) == pytest.approx(rate)
    assert media.probe(res.reel).fps == pytest.approx(rate, abs=0.01)
    assert sorted(p.name for p in res.exports.values()) == ["reel.edl", "reel.fcpxml", "reel.otio", "reel.xml"]
    for export, path in res.exports.items():
        back = timeline.read(path, rate)
        ranges = timeline.source_ranges(back)
        assert len(ranges) == len(SEGS), export
        for (a, b), seg in zip(ranges, SEGS, strict=True):
            assert abs(a - seg.start) <= 1 / rate and abs(b - seg.end) <= 1 / rate, (export, a, b, seg)
        clips = list(next(t for t in back.tracks if t.kind == "Video").find_clips())
        assert {timeline.vod_path(c.media_reference.target_url) for c in clips} == {vod}, export
        assert clips[0].source_range.start_time.rate == pytest.approx(rate, rel=1e-4), export


def test_otio_holds_the_vod_range_and_markers(vods, tmp_path):
    vod = vods["30"]
    tl = timeline.build(vod, SEGS, rate=30.0, vod_duration=12.0, name="reel")
    path = timeline.write_exports(tl, tmp_path, "reel", ["otio"])["otio"]
    back = timeline.read(path, 30.0)
    assert [t.kind for t in back.tracks] == ["Video", "Audio"]
    clip = next(iter(back.find_clips()))
    assert clip.media_reference.available_range.duration.to_seconds() == 12.0
    assert clip.media_reference.available_range.start_time.to_seconds() == 0.0
    (marker,) = clip.markers
    assert marker.marked_range.start_time.to_seconds() == pytest.approx(2.2, abs=1 / 30)
    assert dict(marker.metadata["autoclip"]) == {"score": 0.91, "peak": 2.2, "reason": "in-reel",
                                                 "start": 1.0, "end": 3.5}
    doc = json.loads(path.read_text())  # plain JSON any OTIO tool opens
    assert doc["OTIO_SCHEMA"].startswith("Timeline.")


def test_edit_rates_and_urls():
    assert render.edit_rate(29.97) == 30000 / 1001 and render.edit_rate(60) == 60.0
    assert render.edit_rate(22.3) == 24000 / 1001 and render.edit_rate(24.5) == 25.0
    odd = Path("/v/a b/bad\udcff ストリーム#1?.mp4")
    assert timeline.vod_url(odd).startswith("file:///v/a%20b/bad%FF%20%E3%82%B9")
    assert timeline.vod_path(timeline.vod_url(odd)) == odd
    assert timeline.edl_reel("/v/my vod-1.mp4") == "myvod1" and timeline.edl_reel("/v/ストリーム.mp4") == "AX"
