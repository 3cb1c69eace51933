"""Dataset: the label-set hash, clips from the labels table, the feature cache and sample decoding."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest

from autoclip import config, dataset, labels, store, synth
from autoclip.dataset import Clip
from autoclip.errors import LabelError
from autoclip.featcache import FeatureCache, decode_settings


def test_label_set_hash_depends_on_content_only() -> None:
    clips = [Clip(f"/v/{i % 3}.mp4", f"fp{i % 3}", i * 10.0, i * 10.0 + 4, i % 2, i + 1) for i in range(9)]
    h = dataset.label_set_hash(clips)
    moved = [Clip("/elsewhere" + c.vod, c.fingerprint, c.start, c.end, c.label, c.label_id + 100) for c in reversed(clips)]
    assert dataset.label_set_hash(moved) == h
    flipped = [dataclasses.replace(clips[0], label=1 - clips[0].label), *clips[1:]]
    assert dataset.label_set_hash(flipped) != h
    assert dataset.label_set_hash(clips[1:]) != h


# ---------------------------------------------------------------------------------------------
# Clips from the database, feature cache, decoding (real ffmpeg)
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def vod(tmp_path_factory: pytest.TempPathFactory) -> synth.SynthVod:
    root = tmp_path_factory.mktemp("dataset")
    return synth.make_vod(root / "src" / "stream.mp4", 14.0, [synth.Event(3.0, 5.0, "highlight")], seed=3)


def make_cfg(root: Path, **train: int) -> config.Config:
    return config.from_dict(
        {"frames": {"fps": 4, "size": 32}, "train": train,
         "paths": {"cache": "cache", "done": "done", "inbox": "inbox", "database": "db.sqlite"}},
        root=root,
    )


def test_load_clips_reads_the_labels_table(vod: synth.SynthVod, tmp_path: Path) -> None:
    conn = store.connect(tmp_path / "db.sqlite")
    hid = labels.add_label(conn, vod.path, 3.0, 5.0, "highlight", "cli")
    nid = labels.add_label(conn, vod.path, 8.0, 10.5, "normal", "cli")
    clips = dataset.load_clips(conn)
    fp = clips[0].fingerprint
    assert clips == [Clip(str(vod.path.resolve()), fp, 3.0, 5.0, 1, hid), Clip(str(vod.path.resolve()), fp, 8.0, 10.5, 0, nid)]


def test_clip_samples_are_cached_and_never_decoded_twice(vod: synth.SynthVod, tmp_path: Path) -> None:
    work = tmp_path / "work"
    shutil.copytree(vod.path.parent, work / "inbox")
    path = work / "inbox" / vod.path.name
    conn = store.connect(tmp_path / "db.sqlite")
    labels.add_label(conn, path, 3.0, 5.0, "highlight", "cli")
    clip = dataset.load_clips(conn)[0]
    cfg = make_cfg(work)
    cache = FeatureCache(cfg.path("cache"))
    times, frames, mels = dataset.clip_samples(clip, cfg, cache)
    assert cache.misses == 1 and cache.hits == 0
    assert frames.dtype == np.uint8 and frames.shape == (len(times), 32, 32, 3) and 7 <= len(times) <= 9
    assert mels.dtype == np.float32 and mels.shape[:2] == (len(times), cfg.audio.n_mels)
    assert times.min() >= 3.0 and times.max() < 5.0 and np.all(np.diff(times) > 0)
    settings = decode_settings(cfg, clip.vod)
    entry = cache.path_for(clip.fingerprint, {**settings, "range": [3.0, 5.0]})
    assert entry.is_file() and entry.suffix == ".npz"
    entry.write_bytes(entry.read_bytes()[:100])  # a torn or damaged entry is decoded again
    np.testing.assert_array_equal(dataset.clip_samples(clip, cfg, cache)[1], frames)
    assert cache.misses == 2

    path.unlink()  # the VOD is gone: only the cache can answer now
    again = FeatureCache(cfg.path("cache"))
    t2, f2, m2 = dataset.clip_samples(clip, cfg, again)
    assert again.misses == 0 and again.hits == 1
    np.testing.assert_array_equal(t2, times)
    np.testing.assert_array_equal(f2, frames)
    np.testing.assert_array_equal(m2, mels)

    capped = make_cfg(work, frames_per_clip=3)  # a cap is taken from the cached clip, no decode
    t3, f3, _ = dataset.clip_samples(clip, capped, again)
    assert again.misses == 0 and len(t3) == 3
    assert set(t3) <= set(times) and t3[0] > times[0] and t3[-1] < times[-1]

    smaller = config.from_dict({**cfg.model_dump(mode="json"), "frames": {"fps": 4, "size": 48}}, root=work)
    with pytest.raises(LabelError, match="missing"):  # other decode settings are another key
        dataset.clip_samples(clip, smaller, again)
    cfg.path("done").mkdir()
    shutil.copy(vod.path, cfg.path("done") / vod.path.name)
    _, f4, _ = dataset.clip_samples(clip, smaller, again)  # found by name (and fingerprint) in done/
    assert f4.shape[1:] == (48, 48, 3)


def test_long_clips_with_a_frame_cap_are_decoded_sparsely_in_runs(vod: synth.SynthVod, tmp_path: Path) -> None:
    cfg = make_cfg(tmp_path, frames_per_clip=3)
    clip = Clip(str(vod.path), dataset.fsutil.fingerprint(vod.path), 1.0, 13.0, 0, 1)
    cache = FeatureCache(cfg.path("cache"))
    times, frames, mels = dataset.clip_samples(clip, cfg, cache)
    assert len(times) == 3 and frames.shape[0] == mels.shape[0] == 3  # one run of consecutive frames
    step = 1.0 / cfg.frames.fps
    np.testing.assert_allclose(np.diff(times), step, atol=0.05)
    assert abs(times[1] - 7.0) <= step
    cfg16 = make_cfg(tmp_path, frames_per_clip=16)  # two runs of 8, around 4 s and 10 s
    times, _, _ = dataset.clip_samples(clip, cfg16, cache)
    assert len(times) == 16 and np.sum(np.diff(times) > 1.5 * step) == 1
    assert abs(times[:8].mean() - 4.0) <= step and abs(times[8:].mean() - 10.0) <= step


def test_pseudo_samples_take_confident_unlabelled_moments_and_cache_them(vod: synth.SynthVod, tmp_path: Path) -> None:
    work = tmp_path / "work"
    shutil.copytree(vod.path.parent, work / "done")
    path = work / "done" / vod.path.name
    fp = dataset.fsutil.fingerprint(path)
    cfg = make_cfg(work)
    grid = np.arange(0, 14.0, 0.25)
    teacher = np.full(len(grid), 0.5, np.float32)
    teacher[(grid >= 2.0) & (grid < 6.0)] = 0.95   # confident highlight, partly labelled
    teacher[(grid >= 9.0) & (grid < 13.0)] = 0.03  # confident normal
    teacher[grid < 1.0] = 0.8                       # not confident enough
    args = dict(positive=0.9, negative=0.1, max_n=12, exclude_ranges=[(3.0, 4.0)], margin=0.5)
    cache = FeatureCache(cfg.path("cache"))
    times, frames, mels, soft = dataset.pseudo_samples(cfg, cache, path, fp, grid, teacher, **args)
    assert 0 < len(times) <= 12 and frames.shape == (len(times), 32, 32, 3) and mels.shape[0] == len(times)
    assert np.all((soft >= 0.9) | (soft <= 0.1))
    assert not np.any((times >= 2.5) & (times <= 4.5)), "labelled range (with margin) excluded"
    expected = teacher[np.searchsorted(grid, times - 0.125)]
    np.testing.assert_array_equal(soft, expected)
    assert (soft > 0.5).sum() >= 4 and (soft < 0.5).sum() >= 4, "both classes represented"
    assert cache.misses >= 1 and len(list(cfg.path("cache").rglob("*.npz"))) == cache.misses

    path.unlink()
    again = FeatureCache(cfg.path("cache"))
    second = dataset.pseudo_samples(cfg, again, path, fp, grid, teacher, **args)
    assert again.misses == 0
    for a, b in zip(second, (times, frames, mels, soft), strict=True):
        np.testing.assert_array_equal(a, b)
    nothing = dataset.pseudo_samples(cfg, again, path, fp, grid, np.full(len(grid), 0.5), **args)
    assert all(len(a) == 0 for a in nothing) and nothing[1].shape[1:] == (32, 32, 3)
