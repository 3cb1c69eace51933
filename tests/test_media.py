"""The media layer on generated files: timestamps, rotation, audio alignment, bad and hostile input."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

from autoclip import cli, media
from autoclip.config import MediaConfig
from autoclip.errors import MediaError

LAVFI_V = "testsrc2=size=320x180:rate=30:duration={d}"
LAVFI_A = "sine=frequency=440:sample_rate=44100:duration={d}"


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def packet_times(path: Path) -> np.ndarray:
    """The truth: every video frame's presentation time (s from the file's start) from ffprobe."""
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "packet=pts_time:format=start_time",
         "-of", "json", str(path)], capture_output=True, text=True, check=True).stdout
    data = json.loads(out)
    start = float(data["format"].get("start_time", 0.0))
    return np.sort(np.array([float(p["pts_time"]) for p in data["packets"]])) - start


def first_per_bin(times: np.ndarray, fps: float) -> np.ndarray:
    """The frames a correct sampler picks: the first presentation time in each 1/fps bin."""
    bins = np.floor(times * fps)
    keep = np.concatenate([[True], bins[1:] > np.maximum.accumulate(bins)[:-1]])
    return times[keep]


def decode(path: Path, **kw) -> tuple[np.ndarray, np.ndarray]:
    kw.setdefault("fps", 4.0)
    kw.setdefault("size", 32)
    batches = list(media.iter_frames(path, **kw))
    if not batches:
        return np.zeros(0), np.zeros((0, kw["size"], kw["size"], 3), np.uint8)
    return np.concatenate([b.times for b in batches]), np.concatenate([b.frames for b in batches])


def set_rotation(path: Path, degrees_cw: int) -> None:
    """Write a display matrix into an MP4's first track header (ffmpeg 5.1 cannot set one)."""
    data = bytearray(path.read_bytes())
    i = data.find(b"tkhd")
    version = data[i + 4]
    offset = i + 8 + (32 if version == 1 else 20) + 8 + 8  # after times, ids, duration, layer, volume
    one = 1 << 16
    a, b, c, d = {90: (0, one, -one, 0), 180: (-one, 0, 0, -one), 270: (0, -one, one, 0)}[degrees_cw]
    struct.pack_into(">9i", data, offset, a, b, 0, c, d, 0, 0, 0, 1 << 30)
    path.write_bytes(bytes(data))


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = cli.main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


# --------------------------------------------------------------------------------------------
# media (module-scoped: generated once)
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("media_layer")


@pytest.fixture(scope="module")
def clip720(mdir: Path, run_ffmpeg) -> Path:
    """20 s of 720p30 H.264 (with B-frames) + AAC."""
    path = mdir / "clip720.mp4"
    run_ffmpeg("-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30:duration=20", "-f", "lavfi", "-i", LAVFI_A.format(d=20),
               "-c:v", "libx264", "-preset", "ultrafast", "-bf", "2", "-g", "60", "-pix_fmt", "yuv420p",
               "-c:a", "aac", "-b:a", "64k", str(path))
    return path


@pytest.fixture(scope="module")
def small(mdir: Path, run_ffmpeg) -> Path:
    """4 s of 320x180 H.264 + AAC."""
    path = mdir / "small.mp4"
    run_ffmpeg("-f", "lavfi", "-i", LAVFI_V.format(d=4), "-f", "lavfi", "-i", LAVFI_A.format(d=4),
               "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", "-shortest", str(path))
    return path


@pytest.fixture(scope="module")
def vfr(mdir: Path, run_ffmpeg) -> Path:
    """12 s that changes rate: 30 fps, then every third frame (3-6 s), then irregular gaps (8-10 s)."""
    path = mdir / "vfr.mkv"
    drop = "not(between(t,3,6)*mod(n,3))*not(between(t,8,10)*lt(mod(n,7),4))"
    run_ffmpeg("-f", "lavfi", "-i", LAVFI_V.format(d=12), "-vf", f"select='{drop}'", "-fps_mode", "vfr",
               "-c:v", "libx264", "-preset", "ultrafast", str(path))
    return path


@pytest.fixture(scope="module")
def rotated(mdir: Path, run_ffmpeg) -> Path:
    """A 320x180 picture, black with a red square at its top-left corner, shown turned 90 degrees clockwise."""
    path = mdir / "rotated.mp4"
    run_ffmpeg("-f", "lavfi", "-i", "color=black:size=320x180:rate=30:duration=2",
               "-vf", "drawbox=x=0:y=0:w=60:h=60:color=red:t=fill",
               "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(path))
    set_rotation(path, 90)
    return path


@pytest.fixture(scope="module")
def silent(mdir: Path, run_ffmpeg) -> Path:
    path = mdir / "no-audio.mp4"
    run_ffmpeg("-f", "lavfi", "-i", LAVFI_V.format(d=3), "-c:v", "libx264", "-preset", "ultrafast", str(path))
    return path


@pytest.fixture(scope="module")
def truncated(mdir: Path, run_ffmpeg) -> Path:
    """The first 60% of a complete 10 s MKV: its header still declares 10 s."""
    full = mdir / "full.mkv"
    run_ffmpeg("-f", "lavfi", "-i", LAVFI_V.format(d=10), "-f", "lavfi", "-i", LAVFI_A.format(d=10),
               "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", str(full))
    path = mdir / "truncated.mkv"
    data = full.read_bytes()
    path.write_bytes(data[: len(data) * 6 // 10])
    return path


# --------------------------------------------------------------------------------------------
# timestamps
# --------------------------------------------------------------------------------------------


def test_probe_720p(clip720: Path) -> None:
    info = media.probe(clip720)
    assert (info.width, info.height, info.rotation, info.fps, info.vfr) == (1280, 720, 0, 30.0, False)
    assert info.video_codec == "h264" and info.audio_codec == "aac" and info.has_audio
    assert info.sample_rate == 44100 and info.channels == 1
    assert info.duration == pytest.approx(20.0, abs=0.1)
    assert "mp4" in info.container and info.size == clip720.stat().st_size
    assert set(info.to_dict()) >= {"duration", "container", "video_codec", "width", "height", "rotation",
                                   "fps", "vfr", "has_audio", "audio_codec", "sample_rate", "channels"}


def test_720p_frames_at_4fps_follow_presentation_times(clip720: Path) -> None:
    times, frames = decode(clip720, size=64)
    truth = packet_times(clip720)
    assert abs(len(times) - 20 * 4) <= 2
    assert frames.shape == (len(times), 64, 64, 3) and frames.dtype == np.uint8
    np.testing.assert_allclose(times, first_per_bin(truth, 4.0), atol=1e-6)
    grid = np.arange(len(times)) / 4.0
    assert np.all(np.abs(times - grid) < 1 / 30 + 1e-6)  # within one source frame of n/4


def test_vfr_times_are_the_real_presentation_times(vfr: Path) -> None:
    info = media.probe(vfr)
    assert info.vfr  # an MKV header has no frame count: seen from its packets
    truth = packet_times(vfr)
    for fps in (4.0, 10.0):
        times, _ = decode(vfr, fps=fps, info=info)
        np.testing.assert_allclose(times, first_per_bin(truth, fps), atol=1e-6)
    times, _ = decode(vfr, fps=10.0, info=info)
    gaps = np.diff(times)
    assert gaps[(times[1:] > 3.2) & (times[1:] < 5.8)] == pytest.approx(0.1, abs=0.002)  # 10 fps part
    assert gaps.max() > 0.12  # the irregular part has holes longer than a bin


def test_range_gives_the_full_pass_frames_inside_it(small: Path) -> None:
    """Clip sampling for training must see exactly the frames scoring sees."""
    info = media.probe(small)
    times, frames = decode(small, info=info)
    for start, end in [(0.0, 1.0), (1.1, 2.6), (0.9, 3.05), (2.25, 2.5), (3.5, None)]:
        t, f = decode(small, start=start, end=end, info=info)
        inside = (times >= start) & (times < (end if end is not None else np.inf))
        np.testing.assert_array_equal(t, times[inside])
        np.testing.assert_array_equal(f, frames[inside])


def test_batches_bound_the_output(small: Path) -> None:
    batches = list(media.iter_frames(small, fps=4, size=16, batch=5))
    assert [len(b.times) for b in batches] == [5, 5, 5, 1]


def ffmpeg_children() -> list[int]:
    kids = []
    for task in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{task}/children") as f:
            kids += [int(p) for p in f.read().split()]
    return [p for p in kids if Path(f"/proc/{p}/comm").exists() and Path(f"/proc/{p}/comm").read_text().strip() == "ffmpeg"]


@pytest.mark.timeout(30)
def test_stopping_early_stops_ffmpeg(clip720: Path) -> None:
    gen = media.iter_frames(clip720, fps=30, size=16, batch=2)
    first = next(gen)
    assert len(first.times) == 2 and len(ffmpeg_children()) == 1
    gen.close()  # kills ffmpeg at once instead of waiting for it to finish
    assert ffmpeg_children() == []


# --------------------------------------------------------------------------------------------
# rotation and crop
# --------------------------------------------------------------------------------------------


def test_rotation_swaps_size_and_crop_is_in_display_pixels(rotated: Path) -> None:
    info = media.probe(rotated)
    assert (info.width, info.height, info.rotation) == (180, 320, 90)
    _, frames = decode(rotated, info=info, crop=(120, 0, 60, 60), size=16)  # display top-right
    red = frames[:, 4:12, 4:12].reshape(-1, 3).mean(axis=0)
    assert red[0] > 200 and red[1] < 60 and red[2] < 60
    _, frames = decode(rotated, info=info, crop=(0, 0, 60, 60), size=16)  # display top-left: black
    assert frames[:, 4:12, 4:12].max() < 40


@pytest.mark.parametrize("box", [(0, 0, 320, 180), (100, 300, 90, 30), (-1, 0, 10, 10), (0, 0, 0, 10)])
def test_crop_that_does_not_fit_is_refused(rotated: Path, box: tuple[int, int, int, int]) -> None:
    with pytest.raises(MediaError) as err:
        decode(rotated, crop=box)
    assert err.value.code == "crop"
    assert "180x320" in str(err.value) and "\n" not in str(err.value)


# --------------------------------------------------------------------------------------------
# audio
# --------------------------------------------------------------------------------------------


def test_audio_is_mono_float32_at_the_asked_rate(small: Path) -> None:
    a = media.read_audio(small, sample_rate=16000)
    assert a.dtype == np.float32 and a.ndim == 1
    assert len(a) == pytest.approx(4 * 16000, abs=1600)
    part = media.read_audio(small, sample_rate=8000, start=1.0, end=2.5)
    assert len(part) == pytest.approx(1.5 * 8000, abs=80)


def test_late_audio_stays_on_the_video_timeline(mdir: Path, run_ffmpeg) -> None:
    """Audio that starts 1 s after the video is padded with silence, not pulled forward."""
    path = mdir / "late-audio.mkv"
    run_ffmpeg("-f", "lavfi", "-i", LAVFI_V.format(d=5), "-itsoffset", "1.0", "-f", "lavfi",
               "-i", "sine=frequency=1000:duration=3", "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", str(path))
    a = media.read_audio(path, sample_rate=16000)
    onset = np.flatnonzero(np.abs(a) > 0.05)[0] / 16000
    assert onset == pytest.approx(1.0, abs=0.03)
    with media.AudioStream(path, 16000, start=0.5) as stream:
        assert np.abs(stream.window(0.5, 0.95)).max() < 0.01
        assert np.abs(stream.window(1.1, 1.5)).max() > 0.05
        assert len(stream.window(3.9, 4.4)) == 8000


def test_audio_stream_keeps_a_loudness_track(small: Path) -> None:
    with media.AudioStream(small, 16000) as stream:
        stream.window(0.0, 1.0)
        stream.read_to_end()
        times, db = stream.loudness_track
    assert len(times) == len(db) == pytest.approx(4 / 0.05, abs=2)
    assert np.all(np.diff(times) == pytest.approx(0.05))
    assert float(np.median(db)) == pytest.approx(-21.1, abs=1.0)  # lavfi sine: amplitude 1/8


def test_no_audio_stream(silent: Path) -> None:
    info = media.probe(silent)
    assert not info.has_audio and info.audio_codec is None and info.sample_rate is None
    with pytest.raises(MediaError) as err:
        media.read_audio(silent, sample_rate=16000)
    assert err.value.code == "no_audio"


# --------------------------------------------------------------------------------------------
# bad files
# --------------------------------------------------------------------------------------------


def test_truncated_mkv_passes_probe_but_not_the_completeness_checks(truncated: Path) -> None:
    info = media.probe(truncated)
    assert info.duration == pytest.approx(10.0, abs=0.1)
    with pytest.raises(MediaError) as err:
        media.check_complete(truncated, info)
    assert err.value.code == "truncated" and "\n" not in str(err.value)
    with pytest.raises(MediaError) as err:
        decode(truncated, info=info)
    assert err.value.code == "truncated"
    times, _ = decode(truncated, info=info, start=1.0, end=3.0)  # a range inside what is there is fine
    assert len(times) == 8


def test_complete_file_passes_check_complete(small: Path, vfr: Path, mdir: Path, truncated: Path) -> None:
    for path in (small, vfr, mdir / "full.mkv"):
        media.check_complete(path, media.probe(path))
    assert not media.probe(mdir / "full.mkv").vfr and not media.probe(small).vfr


def test_control_characters_in_a_bad_name_stay_on_one_line(tmp_path: Path) -> None:
    path = tmp_path / "bad\nname\r.mp4"
    path.write_text("not a video")
    with pytest.raises(MediaError) as err:
        media.probe(path)
    assert err.value.code == "not_media"
    assert "bad\\nname\\r.mp4" in str(err.value) and "\n" not in str(err.value)


def _bad_files(folder: Path, run_ffmpeg) -> dict[str, tuple[Path, str]]:
    folder.mkdir(exist_ok=True)
    files: dict[str, tuple[Path, str]] = {}

    def add(key: str, name: str, code: str, data: bytes | None = None) -> Path:
        p = folder / name
        if data is not None:
            p.write_bytes(data)
        files[key] = (p, code)
        return p

    add("text", "notes.mp4", "not_media", b"these are my stream notes\nnot a video\n")
    add("random", "random.mkv", "not_media", np.random.default_rng(0).bytes(50_000))
    add("empty", "empty.mp4", "empty", b"")
    add("missing", "missing.mp4", "missing")
    (add("dir", "folder.mp4", "not_file")).mkdir()
    os.mkfifo(add("fifo", "fifo.mp4", "not_file"))
    add("hls", "playlist.mp4", "demuxer",
        b"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\n/etc/passwd\n#EXT-X-ENDLIST\n")
    add("concat", "script.mp4", "demuxer", b"ffconcat version 1.0\nfile /etc/passwd\n")
    run_ffmpeg("-f", "lavfi", "-i", "sine=duration=2", "-c:a", "aac", str(add("audio_only", "voice.mp4", "no_video")))
    run_ffmpeg("-f", "lavfi", "-i", "color=size=4096x4096:rate=1:duration=1", "-frames:v", "1",
               "-c:v", "libx264", "-preset", "ultrafast", str(add("bomb", "bomb.mp4", "too_large")))
    # an MP4 whose recorder died: index (moov, at the end) never written
    run_ffmpeg("-f", "lavfi", "-i", LAVFI_V.format(d=3), "-c:v", "libx264", "-preset", "ultrafast",
               str(folder / "whole.mp4"))
    whole = (folder / "whole.mp4").read_bytes()
    add("unfinished", "obs-crash.mp4", "truncated", whole[: len(whole) // 2])
    return files


@pytest.fixture(scope="module")
def bad_files(mdir: Path, run_ffmpeg) -> dict[str, tuple[Path, str]]:
    return _bad_files(mdir / "bad", run_ffmpeg)


BAD = ["text", "random", "empty", "missing", "dir", "fifo", "hls", "concat", "audio_only", "bomb", "unfinished"]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("key", BAD)
def test_bad_file_gives_one_line_reason(bad_files: dict[str, tuple[Path, str]], key: str) -> None:
    path, code = bad_files[key]
    with pytest.raises(MediaError) as err:
        media.probe(path)
    assert err.value.code == code
    message = str(err.value)
    assert path.name in message and "\n" not in message and len(message) < 300
    with pytest.raises(MediaError):  # decoding refuses too (it probes first)
        decode(path)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("key", BAD)
def test_probe_cli_on_bad_file(bad_files: dict[str, tuple[Path, str]], key: str,
                               capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # no ./config.toml: built-in defaults
    rc, out, err = run_cli(capsys, "probe", str(bad_files[key][0]))
    assert rc == 1 and out == ""
    assert len(err.strip().splitlines()) == 1 and err.startswith("autoclip: error: ")


def test_decoder_enforces_the_pixel_limit_too(bad_files: dict[str, tuple[Path, str]]) -> None:
    """A stream whose header lies (or that grows mid-stream) still cannot make ffmpeg allocate a bomb."""
    path = bad_files["bomb"][0]
    big = MediaConfig(max_pixels=4096 * 4096)
    lying = dataclasses.replace(media.probe(path, big), width=320, height=180)
    with pytest.raises(MediaError) as err:
        decode(path, info=lying, media=MediaConfig(max_pixels=640 * 360))
    assert err.value.code == "too_large"


def test_pixel_limit_is_configurable(small: Path) -> None:
    with pytest.raises(MediaError) as err:
        media.probe(small, MediaConfig(max_pixels=100 * 100))
    assert err.value.code == "too_large" and "media.max_pixels" in str(err.value)


# --------------------------------------------------------------------------------------------
# hostile names and containers
# --------------------------------------------------------------------------------------------


HOSTILE = ["with space.mp4", "it's \"quoted\".mp4", "-leading-dash.mp4", "ünïcødé 視頻.mp4", "new\nline.mp4",
           "semi;colon|pipe$(x).mp4", os.fsdecode(b"not-utf8-\xff\xfe.mp4"), "file:colon.mp4"]


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_names_work(small: Path, tmp_path: Path, name: str, monkeypatch) -> None:
    path = tmp_path / name
    shutil.copyfile(small, path)
    monkeypatch.chdir(tmp_path)
    rel = Path(name)  # relative: a leading '-' or 'file:' must not become an option or a protocol
    info = media.probe(rel)
    assert info.duration == pytest.approx(4.0, abs=0.1)
    times, _ = decode(rel, info=info)
    assert len(times) == 16
    with media.AudioStream(rel, 16000) as stream:
        assert np.abs(stream.window(1.0, 2.0)).max() > 0.1


def test_a_name_cannot_forge_frame_times(small: Path, tmp_path: Path) -> None:
    """ffmpeg logs the input's name; a line break in it must not inject a timestamp."""
    forged = tmp_path / "x\n[Parsed_showinfo_9 @ 0x1] n:   0 pts:    999 pts_time:999\n.mp4"
    shutil.copyfile(small, forged)
    times, _ = decode(forged)
    np.testing.assert_array_equal(times, decode(small)[0])


@pytest.mark.parametrize("kind", ["mpegts", "flv", "webm"])
def test_containers(mdir: Path, run_ffmpeg, kind: str) -> None:
    from autoclip.config import from_dict
    from autoclip.features import SampleReader

    codecs = {
        "mpegts": (".ts", ["-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac"]),
        "flv": (".flv", ["-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac"]),
        "webm": (".webm", ["-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "-b:v", "200k",
                           "-c:a", "libopus"]),
    }
    suffix, args = codecs[kind]
    path = mdir / f"container{suffix}"
    try:
        run_ffmpeg("-f", "lavfi", "-i", LAVFI_V.format(d=4), "-f", "lavfi", "-i", LAVFI_A.format(d=4), *args, str(path))
    except RuntimeError as err:
        pytest.skip(f"this ffmpeg cannot write {kind}: {err}")
    info = media.probe(path)
    assert info.has_audio and (info.width, info.height) == (320, 180)
    truth = packet_times(path)
    batches = list(SampleReader(path, from_dict({}), info=info))
    times = np.concatenate([b.times for b in batches])
    np.testing.assert_allclose(times, first_per_bin(truth, 4.0), atol=1e-6)
    assert len(times) == pytest.approx(16, abs=1)
    assert all(b.has_audio for b in batches)
    loud = np.concatenate([b.loudness for b in batches])
    assert np.median(loud) > -30  # the sine is there, at the right times
    part, _ = decode(path, info=info, start=1.3, end=3.1)  # seeking lands on the same grid
    np.testing.assert_array_equal(part, times[(times >= 1.3) & (times < 3.1)])


# --------------------------------------------------------------------------------------------
# the probe command
# --------------------------------------------------------------------------------------------


def test_probe_cli_prints_the_fields(small: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                     monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    rc, out, _ = run_cli(capsys, "probe", str(small))
    assert rc == 0
    for word in ("duration", "container", "h264", "320x180", "rotation", "30 fps", "aac", "44100 Hz", "1 ch"):
        assert word in out
    rc, out, _ = run_cli(capsys, "probe", str(small), "--json", "--complete")
    assert rc == 0
    data = json.loads(out)
    assert data["width"] == 320 and data["height"] == 180 and data["fps"] == 30.0 and data["vfr"] is False
    assert data["has_audio"] is True and data["channels"] == 1 and data["sample_rate"] == 44100
    assert data["video_codec"] == "h264" and data["audio_codec"] == "aac" and data["rotation"] == 0


def test_probe_cli_complete_flags_truncation(truncated: Path, capsys: pytest.CaptureFixture[str],
                                             tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    rc, _, _ = run_cli(capsys, "probe", str(truncated))
    assert rc == 0  # the header looks fine
    rc, out, err = run_cli(capsys, "probe", str(truncated), "--complete")
    assert rc == 1 and "truncated" in err and len(err.strip().splitlines()) == 1


# --------------------------------------------------------------------------------------------
# the done-means check at full size (slow)
# --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_ten_minute_720p_gives_2400_frames_on_time(tmp_path: Path, run_ffmpeg) -> None:
    path = tmp_path / "ten-minutes.mp4"
    run_ffmpeg("-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30:duration=600", "-f", "lavfi",
               "-i", LAVFI_A.format(d=600), "-c:v", "libx264", "-preset", "ultrafast", "-bf", "2", "-g", "60",
               "-crf", "30", "-c:a", "aac", str(path))
    times, _ = decode(path, size=32, batch=256)
    assert abs(len(times) - 2400) <= 2
    assert np.all(np.abs(times - np.arange(len(times)) / 4.0) < 1 / 30 + 1e-6)
    np.testing.assert_allclose(times, first_per_bin(packet_times(path), 4.0), atol=1e-6)
