"""Dataset: leakage-free splits, the label-set hash, the feature cache and sample decoding."""

from __future__ import annotations

import dataclasses
import itertools
import random
import shutil
from pathlib import Path

import numpy as np
import pytest

from autoclip import config, dataset, labels, store, synth
from autoclip.dataset import Clip
from autoclip.errors import LabelError
from autoclip.featcache import FeatureCache, decode_settings

# ---------------------------------------------------------------------------------------------
# Splits (pure)
# ---------------------------------------------------------------------------------------------


def make_clips(n_vods: int, *, per_vod: int = 12, pos_every: int = 3, seed: int = 0) -> list[Clip]:
    """Clips on ``n_vods`` VODs; some pairs overlap, some touch, some chains link three clips.

    Overlapping clips share a label (a contradiction could not be stored)."""
    rng = random.Random(seed)
    clips, next_id = [], 1
    for v in range(n_vods):
        t = 0.0
        for i in range(per_vod):
            label = int(i % pos_every == 0)
            start = t + rng.choice([0.0, 0.0, 5.0, 12.0])  # 0.0: touches the previous clip
            end = start + rng.uniform(3, 6)
            clips.append(Clip(f"/v/{v}.mp4", f"fp{v}", round(start, 3), round(end, 3), label, next_id))
            next_id += 1
            if rng.random() < 0.3:  # an overlapping clip of the same class
                clips.append(Clip(f"/v/{v}.mp4", f"fp{v}", round(start + 1, 3), round(end + 2, 3), label, next_id))
                next_id += 1
                end += 2
            t = end
    return clips


def assert_no_straddle(clips: list[Clip], splits: dict[str, list[Clip]]) -> None:
    where = {c.label_id: name for name, members in splits.items() for c in members}
    assert sorted(where) == sorted(c.label_id for c in clips), "every clip in exactly one split"
    assert sum(len(m) for m in splits.values()) == len(clips)
    for a, b in itertools.combinations(clips, 2):
        if a.fingerprint == b.fingerprint and a.start <= b.end and b.start <= a.end:
            assert where[a.label_id] == where[b.label_id], f"{a} and {b} overlap or touch but straddle splits"


def classes(members: list[Clip]) -> set[int]:
    return {c.label for c in members}


def test_merge_units_joins_overlapping_touching_and_chained_clips() -> None:
    cs = [Clip("v", "f", 0, 5, 1, 1), Clip("v", "f", 4, 8, 1, 2), Clip("v", "f", 8, 10, 0, 3),
          Clip("v", "f", 10.5, 12, 0, 4), Clip("w", "g", 0, 5, 0, 5)]
    assert [[c.label_id for c in u] for u in dataset.merge_units(cs)] == [[1, 2, 3], [4], [5]]
    assert [[c.label_id for c in u] for u in dataset.merge_units(cs, gap=1.0)] == [[1, 2, 3, 4], [5]]


def test_split_with_many_vods_keeps_each_vod_and_each_time_range_in_one_split() -> None:
    clips = make_clips(8)
    assert dataset.split_strategy(clips) == "vod"
    for seed in range(5):
        splits = dataset.split_clips(clips, (0.7, 0.2, 0.1), seed)
        assert_no_straddle(clips, splits)
        vods = {name: {c.fingerprint for c in m} for name, m in splits.items()}
        assert not (vods["train"] & vods["val"]) and not (vods["train"] & vods["test"]) and not (vods["val"] & vods["test"])
        assert [len(vods[s]) for s in dataset.SPLITS] == [5, 2, 1]
        assert classes(splits["train"]) == classes(splits["val"]) == {0, 1}


def test_split_with_fewer_than_three_vods_splits_clips_without_straddling() -> None:
    for n_vods in (1, 2):
        clips = make_clips(n_vods, per_vod=30)
        assert dataset.split_strategy(clips) == "clip"
        splits = dataset.split_clips(clips, seed=3)
        assert_no_straddle(clips, splits)
        assert all(splits[s] for s in dataset.SPLITS)
        assert classes(splits["train"]) == classes(splits["val"]) == {0, 1}
        assert len(splits["train"]) > len(splits["val"]) > 0


def test_split_is_deterministic_for_a_seed_and_ignores_input_order() -> None:
    for clips in (make_clips(6), make_clips(2, per_vod=25)):
        first = dataset.split_clips(clips, seed=7)
        shuffled = clips[:]
        random.Random(1).shuffle(shuffled)
        assert dataset.split_clips(shuffled, seed=7) == first
        others = [dataset.split_clips(clips, seed=s) for s in range(8, 14)]
        assert any(o != first for o in others), "the seed should matter"


def test_split_is_stratified_by_label() -> None:
    # 50 isolated clips on 2 VODs, 20% highlights: val (10 clips) gets 2, test (5) gets 1
    clips = [Clip(f"/v/{i % 2}.mp4", f"fp{i % 2}", i * 10.0, i * 10.0 + 4, int(i % 5 == 0), i + 1) for i in range(50)]
    for seed in range(4):
        s = dataset.split_clips(clips, seed=seed)
        assert [len(s[k]) for k in dataset.SPLITS] == [35, 10, 5]
        assert [sum(c.label for c in s[k]) for k in dataset.SPLITS] == [7, 2, 1]
    # 10 VODs, half of them with highlights: VOD-level stratification
    vod_clips = [Clip(f"/v/{v}", f"fp{v}", t * 10.0, t * 10.0 + 4, int(v < 5 and t == 0), v * 10 + t)
                 for v in range(10) for t in range(3)]
    for seed in range(4):
        s = dataset.split_clips(vod_clips, seed=seed)
        with_pos = [len({c.fingerprint for c in s[k] if c.label}) for k in dataset.SPLITS]
        assert with_pos[1] == 1 and with_pos[0] in (3, 4)


def test_split_gives_train_and_val_both_classes_when_the_data_allows() -> None:
    # only two highlight clips: one must train, one must validate, whatever the seed
    clips = [Clip("/v/a", "a", i * 10.0, i * 10.0 + 4, int(i in (3, 11)), i + 1) for i in range(20)]
    for seed in range(10):
        s = dataset.split_clips(clips, seed=seed)
        assert classes(s["train"]) == classes(s["val"]) == {0, 1}
    # a single highlight goes to train
    one = [Clip("/v/a", "a", i * 10.0, i * 10.0 + 4, int(i == 4), i + 1) for i in range(10)]
    for seed in range(10):
        assert 1 in classes(dataset.split_clips(one, seed=seed)["train"])
    # 4 VODs but highlights on only one: whole-VOD splits would starve train or val -> per clip
    mixed = [Clip(f"/v/{v}", f"fp{v}", t * 10.0, t * 10.0 + 4, int(v == 0 and t < 4), v * 10 + t)
             for v in range(4) for t in range(8)]
    assert dataset.split_strategy(mixed) == "clip"
    s = dataset.split_clips(mixed, seed=0)
    assert_no_straddle(mixed, s)
    assert classes(s["train"]) == classes(s["val"]) == {0, 1}


def test_split_small_and_bad_inputs() -> None:
    assert dataset.split_clips([]) == {"train": [], "val": [], "test": []}
    one = [Clip("v", "f", 0, 1, 1, 1)]
    assert dataset.split_clips(one) == {"train": one, "val": [], "test": []}
    two = [Clip("v", "f", 0, 1, 1, 1), Clip("v", "f", 5, 6, 0, 2)]
    s = dataset.split_clips(two)
    assert [len(s[k]) for k in dataset.SPLITS] == [1, 1, 0]
    three = two + [Clip("v", "f", 10, 11, 0, 3)]
    assert all(len(m) == 1 for m in dataset.split_clips(three).values())
    with pytest.raises(LabelError):
        dataset.split_clips(two, (0.0, 0.5, 0.5))


def test_label_set_hash_depends_on_content_only() -> None:
    clips = make_clips(3)
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


def test_long_clips_with_a_frame_cap_are_decoded_sparsely(vod: synth.SynthVod, tmp_path: Path) -> None:
    cfg = make_cfg(tmp_path, frames_per_clip=3)
    clip = Clip(str(vod.path), dataset.fsutil.fingerprint(vod.path), 1.0, 13.0, 0, 1)
    cache = FeatureCache(cfg.path("cache"))
    times, frames, mels = dataset.clip_samples(clip, cfg, cache)
    assert len(times) == 3 and frames.shape[0] == mels.shape[0] == 3
    np.testing.assert_allclose(times, [3.0, 7.0, 11.0], atol=0.25)


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
    args = dict(confidence=0.9, max_n=12, exclude_ranges=[(3.0, 4.0)], margin=0.5)
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
