"""Model inputs: log-mel windows aligned to frame times, paired with frames by SampleReader."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from autoclip import features, media
from autoclip.config import AudioConfig


def collect(reader: features.SampleReader) -> dict[str, np.ndarray]:
    batches = list(reader)
    return {k: np.concatenate([getattr(b, k) for b in batches]) for k in ("times", "frames", "mels", "loudness")}


@pytest.fixture(scope="module")
def vod(tmp_path_factory: pytest.TempPathFactory):
    """45 s synth VOD: an audio-only event, a picture-only event and a highlight (both)."""
    from autoclip import synth

    events = synth.plan_events(45, highlights=1, visual=1, audio=1, seed=0)
    return synth.make_vod(tmp_path_factory.mktemp("features") / "vod.mp4", 45, events)


@pytest.fixture(scope="module")
def full(vod) -> tuple[features.SampleReader, dict[str, np.ndarray]]:
    from autoclip.config import from_dict

    reader = features.SampleReader(vod.path, from_dict({}), crop=vod.facecam)
    return reader, collect(reader)


def inside(times: np.ndarray, start: float, end: float, margin: float = 0.5) -> np.ndarray:
    return (times > start + margin) & (times < end - margin)


#: log-mel values of the old hand-written filter bank on seeded noise (mean, three cells)
GOLDEN = [0.2343980, 0.2546027, 0.2840058, 0.2903060]


@pytest.mark.parametrize("tone_hz", [300.0, 1000.0, 3000.0, 6000.0])
def test_a_tone_lands_in_its_mel_band(tone_hz: float) -> None:
    """The log-mel (librosa's Slaney filter bank) puts a pure tone in the band centred nearest it."""
    import librosa

    a = AudioConfig()
    t = np.arange(a.sample_rate) / a.sample_rate
    mel = features.logmel((0.5 * np.sin(2 * np.pi * tone_hz * t)).astype(np.float32), a)
    centres = librosa.mel_frequencies(n_mels=a.n_mels + 2, fmin=0.0, fmax=a.fmax)[1:-1]
    peak = int(np.argmax(mel.mean(axis=1)))
    assert abs(peak - int(np.argmin(np.abs(centres - tone_hz)))) <= 1


def test_logmel_keeps_its_numbers() -> None:
    """Moving the filter bank to librosa kept the features (and the feature cache) as they were:
    these values were printed by the hand-written filter bank it replaced."""
    a = AudioConfig()
    x = (0.1 * np.random.default_rng(0).standard_normal(16000)).astype(np.float32)
    mel = features.logmel(x, a)
    np.testing.assert_allclose([mel.mean(), mel[0, 0], mel[32, 50], mel[63, 97]], GOLDEN, rtol=1e-5, atol=1e-5)


def test_logmel_shape_and_scale() -> None:
    a = AudioConfig()
    assert features.mel_frames(a) == 98  # 1 s of 25 ms windows every 10 ms
    rng = np.random.default_rng(0)
    quiet = features.logmel(0.01 * rng.standard_normal(16000).astype(np.float32), a)
    loud = features.logmel(0.5 * rng.standard_normal(16000).astype(np.float32), a)
    assert quiet.shape == loud.shape == (64, 98) and quiet.dtype == np.float32
    assert loud.mean() > quiet.mean() + 1.0
    assert -3 < quiet.mean() < 3 and -3 < loud.mean() < 3  # roughly zero-centred
    short = features.logmel(np.ones(100, np.float32), a)  # padded, not a crash
    assert short.shape == (64, 98)
    assert features.silent_mels(3, a).shape == (3, 64, 98)


def test_batch_windows_equal_standalone_logmel(vod) -> None:
    """Each frame's window is the log-mel of the second of audio centred on it (hop-grid aligned)."""
    a = AudioConfig()
    times = np.array([2.0, 2.2667, 9.5, 31.0])
    with media.AudioStream(vod.path, a.sample_rate) as stream:
        mels, loud = features.batch_mels(times, stream, a)
    audio = media.read_audio(vod.path, sample_rate=a.sample_rate)
    for t, mel in zip(times, mels, strict=True):
        s0 = int(round((t - 0.5) * 100)) * 160
        np.testing.assert_allclose(mel, features.logmel(audio[s0: s0 + 16000], a), atol=1e-4)
    assert loud[2] > loud[0] + 15  # 9.5 s is inside the loud audio event


def test_sample_reader_pairs_frames_and_audio(vod, full) -> None:
    reader, d = full
    n = len(d["times"])
    assert n == pytest.approx(45 * 4, abs=2)
    assert d["frames"].shape == (n, 128, 128, 3) and d["frames"].dtype == np.uint8
    assert d["mels"].shape == (n, 64, 98) and d["mels"].dtype == np.float32
    assert d["loudness"].shape == (n,)
    assert -2 < float(d["mels"].mean()) < 1
    quiet = np.ones(n, bool)
    for e in vod.events:
        quiet &= ~inside(d["times"], e.start - 1.5, e.end + 1.5, 0)
    for e in vod.events:
        i = inside(d["times"], e.start, e.end)
        red = d["frames"][i][:, 30:100, 30:100, 0].mean()
        if e.loud:
            assert d["loudness"][i].min() > d["loudness"][quiet].max() + 10
            assert d["mels"][i].mean() > d["mels"][quiet].mean() + 1
        if e.visual:
            assert red > 180
        else:
            assert red < 120


def test_loudness_track_covers_the_vod(full) -> None:
    reader, _ = full
    times, db = reader.loudness_track
    assert len(times) == len(db) == pytest.approx(45 * 20, abs=3)
    assert times[0] == pytest.approx(0.025) and np.allclose(np.diff(times), 0.05)


def test_clip_reader_matches_the_full_pass(vod, full) -> None:
    """Training samples (read per clip) must equal what scoring (one full pass) sees."""
    from autoclip.config import from_dict

    _, d = full
    for start, end in [(7.1, 12.0), (30.3, 35.76)]:
        part = collect(features.SampleReader(vod.path, from_dict({}), start=start, end=end, crop=vod.facecam))
        i = (d["times"] >= start) & (d["times"] < end)
        np.testing.assert_array_equal(part["times"], d["times"][i])
        np.testing.assert_array_equal(part["frames"], d["frames"][i])
        diff = np.abs(part["mels"] - d["mels"][i])
        assert np.median(diff) < 1e-3 and np.percentile(diff, 99) < 0.2  # audio decoded from a seek point
        np.testing.assert_allclose(part["loudness"], d["loudness"][i], atol=0.5)


def test_stopping_early_stops_both_decoders(vod, cfg) -> None:
    def ffmpeg_children() -> int:
        kids = []
        for task in os.listdir("/proc/self/task"):
            with open(f"/proc/self/task/{task}/children") as f:
                kids += f.read().split()
        return sum(1 for p in kids if os.path.exists(f"/proc/{p}/comm")
                   and open(f"/proc/{p}/comm").read().strip() == "ffmpeg")

    batches = iter(features.SampleReader(vod.path, cfg, batch=8))
    next(batches)
    assert ffmpeg_children() == 2  # video and audio
    batches.close()
    assert ffmpeg_children() == 0


def test_crop_profile_chosen_by_file_name(vod, make_cfg) -> None:
    box = list(vod.facecam)
    cfg = make_cfg({"frames": {"profiles": {"synth": {"match": "vod*.mp4", "box": box},
                                            "other": {"match": "x*", "box": [0, 0, 10, 10]}}}})
    reader = features.SampleReader(vod.path, cfg, start=30.5, end=32.0)
    assert reader.crop == tuple(box)
    frames = collect(reader)["frames"]
    assert frames[:, 30:100, 30:100, 0].mean() > 180  # the highlight's red box fills the crop


def test_no_audio_gives_silent_windows(tmp_path: Path, run_ffmpeg, cfg) -> None:
    path = tmp_path / "mute.mp4"
    run_ffmpeg("-f", "lavfi", "-i", "testsrc2=size=320x180:rate=30:duration=3", "-c:v", "libx264",
               "-preset", "ultrafast", str(path))
    reader = features.SampleReader(path, cfg)
    batches = list(reader)
    assert batches and not any(b.has_audio for b in batches)
    mels = np.concatenate([b.mels for b in batches])
    assert mels.shape == (12, 64, 98) and np.all(mels == mels.flat[0])
    assert np.all(np.concatenate([b.loudness for b in batches]) <= -99)
    assert len(reader.loudness_track[0]) == 0
