"""Rendering: pure command builders and cut lists, then real ffmpeg on small generated VODs."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from autoclip import config, media, render, synth, timeline
from autoclip.commands import crop
from autoclip.errors import ConfigError, DiskFullError, MediaError
from autoclip.fsutil import TMP_PREFIX
from autoclip.selection import Segment

HOSTILE = "-it's a \"reel\" [x],y;z%d ストリーム"


# ---------------------------------------------------------------------------------------------
# Pure parts
# ---------------------------------------------------------------------------------------------




def test_safe_reel_names():
    assert render.safe_name(HOSTILE) == "it_s_a_reel_x_y_z_d_ストリーム"
    assert render.safe_name("---") == "vod"
    assert render.safe_name("a\udcffb") == "a_b"  # undecodable bytes from a non-UTF-8 name
    assert render.reel_name(f"/x/{HOSTILE}.mkv", "vod-123") == "it_s_a_reel_x_y_z_d_ストリーム-vod-123"


def test_escape_value_both_levels():
    # option level escapes \ ' :, graph level escapes \ ' [ ] , ;
    assert render.escape_value("/a:b") == "/a\\\\:b"
    assert render.escape_value("it's") == "it\\\\\\'s"
    assert render.escape_value("x[1],y;z") == "x\\[1\\]\\,y\\;z"


def test_concat_list_quotes_names(tmp_path):
    text = render.concat_list([tmp_path / "it's.mp4", tmp_path / "plain.mp4"])
    assert text.splitlines()[0] == "ffconcat version 1.0"
    assert f"file '{tmp_path}/it'\\''s.mp4'" in text


def test_overlay_text_fields_and_escaping():
    seg = Segment(3725.2, 3733.0, 0.876, 3729.0)
    text = render.overlay_text("{vod} {timestamp} {score:.2f} #{index} 100%", vod="/v/a\\b%.mkv", segment=seg, index=3)
    assert text == "a\\\\b\\%.mkv 01:02:05 0.88 #3 100\\%"
    assert render.overlay_text("{clock}", vod="v", segment=seg, index=1) == "%{pts:hms:3725.200}"
    assert render.overlay_text("{vod}", vod="/v/a\nb", segment=seg, index=1) == "a b"
    with pytest.raises(ConfigError, match="render.overlay"):
        render.overlay_text("{nope}", vod="v", segment=seg, index=1)


def test_cut_lists():
    segs = [Segment(100.0, 108.0, 0.9, 104.0), Segment(3600.5, 3610.5, 0.75, 3605.0)]
    assert render.reel_offsets(segs, 30) == [(0.0, 8.0), (8.0, 18.0)]
    meta = render.ffmetadata(segs, 30, "a=b;c")
    assert meta.startswith(";FFMETADATA1\ntitle=a\\=b\\;c\n")
    assert "START=8000\nEND=18000" in meta
    assert render.chapters_text(segs, 30) == "00:00:00 1. 00:01:40 (score 0.90)\n00:00:08 2. 01:00:00 (score 0.75)\n"


def test_clip_command_uses_input_seeking_and_whitelist():
    st = render.clip_settings(config.RenderConfig(), src_fps=29.97, src_height=1080, has_audio=False)
    assert (st.fps, st.height) == ("30000/1001", 720)
    cmd = render.clip_command("/v/-x.mp4", Segment(10, 18, 0.9, 12), "/o/c.mp4", st, "/t/o.txt")
    i = cmd.index("-i")
    assert cmd[i + 1] == "file:/v/-x.mp4"
    assert cmd[i - 2:i] == ["-ss", "10.000"]  # -ss before -i: input seeking
    assert cmd.index("-protocol_whitelist") < i and "-nostdin" in cmd and cmd[-1] == "-y"
    assert "anullsrc=channel_layout=stereo:sample_rate=48000" in cmd  # silent track when no audio
    assert cmd[cmd.index("-t") + 1] == f"{round(8 * 30000 / 1001) / (30000 / 1001):.6f}"
    graph = cmd[cmd.index("-filter_complex") + 1]
    assert "scale=-2:720" in graph and "textfile=/t/o.txt" in graph and "afade=d=0.150:st=0:t=in" in graph


def test_output_never_upscales():
    assert render.clip_settings(config.RenderConfig(height=720), src_fps=30, src_height=181, has_audio=True).height == 180
    assert render.clip_settings(config.RenderConfig(height=0), src_fps=30, src_height=1080, has_audio=True).height == 1080


# ---------------------------------------------------------------------------------------------
# Real ffmpeg
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def vods(tmp_path_factory):
    folder = tmp_path_factory.mktemp("media") / "odd 'dir': [1],x;y"
    events = [synth.Event(5.0, 9.0, "highlight"), synth.Event(20.0, 24.0, "highlight")]
    with_audio = synth.make_vod(folder / f"{HOSTILE}.mp4", 30, events)
    silent = synth.make_vod(folder / "silent.mkv", 12, [], audio=False)
    return with_audio, silent


def deployment(tmp_path: Path, **render_cfg) -> config.Config:
    root = tmp_path / "deploy 'here'"
    root.mkdir(parents=True, exist_ok=True)
    cfg = config.from_dict({"render": {"height": 180, "preset": "ultrafast", **render_cfg}, "shorts": {"count": 0}},
                          root=root)
    cfg.ensure_dirs()
    return cfg


def do_render(vod: synth.SynthVod, segs, cfg, name="reel"):
    info = media.probe(vod.path)
    return render.render_reel(vod.path, segs, cfg, name=name, src_fps=info.fps, src_height=info.height,
                              has_audio=info.has_audio, meta={"model": "m-test", "job": "j1"})


def first_frame(path: Path, at: float = 0.0) -> np.ndarray:
    out = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-ss", str(at), "-i", str(path), "-frames:v", "1",
                          "-f", "rawvideo", "-pix_fmt", "gray", "-"], capture_output=True, check=True).stdout
    return np.frombuffer(out, dtype=np.uint8)


def chapters(path: Path) -> list[dict]:
    out = subprocess.run(["ffprobe", "-v", "error", "-show_chapters", "-of", "json", str(path)],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)["chapters"]


def no_temp_files(folder: Path) -> bool:
    return not any(p.name.startswith(TMP_PREFIX) for p in folder.rglob("*"))


def test_reel_duration_cut_lists_and_hostile_names(vods, tmp_path):
    vod, _ = vods
    cfg = deployment(tmp_path)
    segs = [Segment(3.2, 10.7, 0.91, 6.0), Segment(12.05, 15.0, 0.8, 14.0), Segment(19.5, 25.3, 0.7, 22.0)]
    res = do_render(vod, segs, cfg)
    reels = cfg.path("reels")
    assert res.reel == reels / "reel.mp4" and res.reel.exists()
    info = media.probe(res.reel)
    assert abs(info.duration - sum(s.length for s in segs)) <= 0.1 * len(segs)
    assert info.has_audio and info.height == 180
    chaps = chapters(res.reel)
    assert len(chaps) == 3
    for seg, ch in zip(segs, chaps, strict=True):
        assert abs(float(ch["end_time"]) - float(ch["start_time"]) - seg.length) <= 0.1
        assert ch["tags"]["title"].endswith(f"(score {seg.score:.2f})")
    doc = json.loads(res.segments_file.read_text())
    assert doc["vod"] == str(vod.path) and doc["model"] == "m-test" and doc["reel"] == str(res.reel)
    assert [(d["start"], d["end"], d["score"]) for d in doc["segments"]] == [(s.start, s.end, s.score) for s in segs]
    assert sorted(res.exports) == ["edl", "fcpxml", "otio"] and res.edl == res.exports["edl"]
    for path in res.exports.values():  # the VOD's hostile name survives every timeline
        back = timeline.read(path, 30.0)
        urls = {c.media_reference.target_url for c in back.find_clips()}
        assert [timeline.vod_path(u) for u in urls] == [vod.path], path
    assert len(res.chapters.read_text().splitlines()) == 3
    assert no_temp_files(reels)


def test_overlay_is_drawn(vods, tmp_path):
    vod, _ = vods
    seg = [Segment(2.0, 4.0, 0.9, 3.0)]
    plain = do_render(vod, seg, deployment(tmp_path / "a", overlay=""))
    drawn = do_render(vod, seg, deployment(tmp_path / "b", overlay="{vod} {timestamp} {score:.2f}", font_size=60))
    a, b = first_frame(plain.reel).reshape(180, -1), first_frame(drawn.reel).reshape(180, -1)
    top = np.abs(a[:40].astype(int) - b[:40].astype(int)).mean()
    bottom = np.abs(a[100:].astype(int) - b[100:].astype(int)).mean()
    assert top > 10 * max(bottom, 0.5), (top, bottom)  # text in the top-left band only


def test_no_audio_gets_silence_and_clips(vods, tmp_path):
    _, silent = vods
    cfg = deployment(tmp_path, clips=True)
    segs = [Segment(1.0, 4.0, 0.9, 2.0), Segment(6.0, 10.0, 0.8, 7.0)]
    res = do_render(silent, segs, cfg)
    info = media.probe(res.reel)
    assert info.has_audio
    assert abs(info.duration - 7.0) <= 0.2
    assert len(res.clips) == 2 and all(c.parent == cfg.path("reels") / "reel.clips" for c in res.clips)
    assert abs(media.probe(res.clips[1]).duration - 4.0) <= 0.1


def test_failure_leaves_previous_reel_and_no_partial(vods, tmp_path):
    vod, _ = vods
    cfg = deployment(tmp_path)
    good = do_render(vod, [Segment(2.0, 5.0, 0.9, 3.0)], cfg)
    before = good.reel.read_bytes()
    bad = deployment(tmp_path, video_codec="no_such_codec")
    with pytest.raises(MediaError, match="ffmpeg failed while cutting clip 1") as err:
        do_render(vod, [Segment(10.0, 14.0, 0.9, 12.0)], bad)
    assert err.value.detail  # ffmpeg's stderr tail
    assert good.reel.read_bytes() == before
    assert json.loads(good.segments_file.read_text())["segments"][0]["start"] == 2.0
    assert sorted(p.name for p in cfg.path("reels").iterdir()) == [
        "reel.chapters.txt", "reel.edl", "reel.fcpxml", "reel.mp4", "reel.otio", "reel.segments.json"]


def test_no_segments_writes_empty_list_and_removes_stale_reel(vods, tmp_path):
    vod, _ = vods
    cfg = deployment(tmp_path)
    do_render(vod, [Segment(2.0, 5.0, 0.9, 3.0)], cfg)
    res = do_render(vod, [], cfg)
    assert res.reel is None
    assert json.loads(res.segments_file.read_text())["segments"] == []
    assert [p.name for p in cfg.path("reels").iterdir()] == ["reel.segments.json"]


def test_disk_full_is_reported(vods):
    vod, _ = vods
    cmd = ["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(vod.path), "-t", "2", "-f", "wav", "/dev/full"]
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full")
    with pytest.raises(DiskFullError):
        render.run_ffmpeg(cmd, "writing a test file")


def test_crop_preview_png(vods, tmp_path):
    vod, _ = vods
    from PIL import Image

    out = tmp_path / "x.png"
    crop.save_crop_preview(vod.path, 6.0, out, width=320, height=180, box=vod.facecam, current=True,
                           cfg=deployment(tmp_path))
    with Image.open(out) as im:
        assert im.size == (320, 180)
        px = np.asarray(im.convert("RGB"))
    x, y, _w, _h = vod.facecam
    assert px[y + 20, x, 1] > 200 and px[y + 20, x, 0] < 100  # the green box edge


def test_non_utf8_file_name(vods, tmp_path):
    import os
    import shutil

    vod, _ = vods
    raw = os.fsencode(tmp_path) + b"/bad\xff\nname.mp4"  # not UTF-8, with a newline
    shutil.copyfile(vod.path, raw)
    path = Path(os.fsdecode(raw))
    cfg = deployment(tmp_path)
    info = media.probe(path)
    name = render.reel_name(path, "job1")
    res = render.render_reel(path, [Segment(1.0, 3.0, 0.9, 2.0)], cfg, name=name, src_fps=info.fps,
                             src_height=info.height, has_audio=info.has_audio)
    assert name == "bad_name-job1" and res.reel.exists()
    assert json.loads(res.segments_file.read_text())["vod"] == str(path)
    back = timeline.read(res.exports["otio"], 30.0)
    assert {timeline.vod_path(c.media_reference.target_url) for c in back.find_clips()} == {path}


def test_published_files_get_the_umask_permissions(vods, tmp_path):
    """A reel written by the service user can be opened by the streamer's account: under umask
    022 every published file is 0644 and folders 0755 (temporary files start 0600)."""
    import os
    import stat

    from autoclip.fsutil import current_umask

    vod, _ = vods
    cfg = deployment(tmp_path, clips=True)
    before = os.umask(0o022)
    try:
        res = do_render(vod, [Segment(3.2, 6.0, 0.9, 4.0), Segment(12.0, 14.5, 0.8, 13.0)], cfg)
        published = [res.reel, res.segments_file, res.chapters, *res.exports.values(), *res.clips]
        assert len(published) >= 6
        for path in published:
            assert stat.S_IMODE(path.stat().st_mode) == 0o644, path
        assert stat.S_IMODE(res.clips[0].parent.stat().st_mode) == 0o755
        os.umask(0o027)
        tight = do_render(vod, [Segment(3.2, 6.0, 0.9, 4.0)], cfg, name="group-only")
        assert stat.S_IMODE(tight.reel.stat().st_mode) == 0o640
        # `[paths] umask` is what the CLI (and the daemon) apply when they load the config
        (cfg.root / "config.toml").write_text("[paths]\numask = 0o007\n")
        from autoclip.commands import Context

        assert Context(config_path=str(cfg.root / "config.toml")).config.paths.umask == 0o007
        assert current_umask() == 0o007
    finally:
        os.umask(before)


def test_clips_are_cut_two_at_a_time_in_order_and_a_failure_stops_the_rest() -> None:
    import threading
    import time

    running, most, lock = [0], [0], threading.Lock()

    def work(x: int) -> int:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.05)
        with lock:
            running[0] -= 1
        return x * x

    assert render._in_parallel(work, list(range(8))) == [x * x for x in range(8)]
    assert most[0] == render.RENDER_WORKERS
    started = []

    def failing(x: int) -> int:
        started.append(x)
        time.sleep(0.05)
        if x == 1:
            raise MediaError("cutting clip 2 failed")
        return x

    with pytest.raises(MediaError, match="clip 2"):
        render._in_parallel(failing, list(range(10)))
    assert len(started) < 10  # the clips not yet started when clip 2 failed were never cut
