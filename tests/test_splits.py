"""Stable splits: no straddling, independent of order, and never moved by later labels."""

from __future__ import annotations

import itertools
import random

import pytest

from autoclip import splits
from autoclip.dataset import Clip
from autoclip.errors import LabelError


def make_clips(n_vods: int, *, per_vod: int = 12, pos_every: int = 3, seed: int = 0, first_id: int = 1) -> list[Clip]:
    """Clips on ``n_vods`` VODs; some pairs overlap, some touch, some chains link three clips.

    Overlapping clips share a label (a contradiction could not be stored)."""
    rng = random.Random(seed)
    clips, next_id = [], first_id
    for v in range(n_vods):
        t = 0.0
        for i in range(per_vod):
            label = int(i % pos_every == 0)
            start = t + rng.choice([0.0, 0.0, 5.0, 12.0])  # 0.0: touches the previous clip
            end = start + rng.uniform(3, 6)
            clips.append(Clip(f"/v/{seed}-{v}.mp4", f"fp{seed}-{v}", round(start, 3), round(end, 3), label, next_id))
            next_id += 1
            if rng.random() < 0.3:  # an overlapping clip of the same class
                clips.append(Clip(f"/v/{seed}-{v}.mp4", f"fp{seed}-{v}", round(start + 1, 3), round(end + 2, 3), label, next_id))
                next_id += 1
                end += 2
            t = end
    return clips


def where(result: dict[str, list[Clip]]) -> dict[int, str]:
    return {c.label_id: name for name, members in result.items() for c in members}


def assert_no_straddle(clips: list[Clip], result: dict[str, list[Clip]]) -> None:
    placed = where(result)
    assert sorted(placed) == sorted(c.label_id for c in clips), "every clip in exactly one split"
    for a, b in itertools.combinations(clips, 2):
        if a.fingerprint == b.fingerprint and a.start <= b.end and b.start <= a.end:
            assert placed[a.label_id] == placed[b.label_id], f"{a} and {b} overlap or touch but straddle splits"


def test_merge_units_joins_overlapping_touching_and_chained_clips() -> None:
    cs = [Clip("v", "f", 0, 5, 1, 1), Clip("v", "f", 4, 8, 1, 2), Clip("v", "f", 8, 10, 0, 3),
          Clip("v", "f", 10.5, 12, 0, 4), Clip("w", "g", 0, 5, 0, 5)]
    assert [[c.label_id for c in u] for u in splits.merge_units(cs)] == [[1, 2, 3], [4], [5]]
    assert [[c.label_id for c in u] for u in splits.merge_units(cs, gap=1.0)] == [[1, 2, 3, 4], [5]]


def test_splits_never_straddle_and_follow_the_fractions_roughly() -> None:
    clips = make_clips(6, per_vod=40)
    result = splits.split_clips(clips, (0.7, 0.2, 0.1), seed=0)
    assert_no_straddle(clips, result)
    n = len(clips)
    assert 0.55 * n < len(result["train"]) < 0.85 * n and len(result["val"]) > 0.08 * n and result["test"]
    assert {c.label for c in result["train"]} == {c.label for c in result["val"]} == {0, 1}


def test_split_ignores_input_order_and_the_seed_matters() -> None:
    clips = make_clips(3, per_vod=25)
    first = splits.split_clips(clips, seed=7)
    shuffled = clips[:]
    random.Random(1).shuffle(shuffled)
    assert splits.split_clips(shuffled, seed=7) == first
    assert any(splits.split_clips(clips, seed=s) != first for s in range(8, 12))


def test_a_clips_split_is_the_same_before_and_after_a_fourth_vod_is_labelled() -> None:
    three = make_clips(3, per_vod=20, seed=1)
    before = where(splits.split_clips(three, seed=0, gap=1.0))
    fourth = make_clips(1, per_vod=20, seed=2, first_id=1000)
    more_on_old = [Clip(three[0].vod, three[0].fingerprint, 5000.0 + 10 * i, 5004.0 + 10 * i, i % 2, 2000 + i) for i in range(6)]
    after = where(splits.split_clips(three + fourth + more_on_old, seed=0, gap=1.0))
    assert {k: after[k] for k in before} == before
    # a label that touches an existing clip joins that clip's split (its unit keeps its oldest clip)
    c = three[0]
    joined = Clip(c.vod, c.fingerprint, c.end, c.end + 0.5, c.label, 9999)
    again = where(splits.split_clips(three + fourth + [joined], seed=0, gap=1.0))
    assert again[9999] == again[c.label_id] == before[c.label_id]


def test_tiny_label_sets_lend_units_so_train_and_val_see_both_classes() -> None:
    for seed in range(10):
        clips = [Clip("/v/a", "a", i * 10.0, i * 10.0 + 4, int(i in (3, 11)), i + 1) for i in range(20)]
        result = splits.split_clips(clips, seed=seed)
        assert {c.label for c in result["train"]} == {c.label for c in result["val"]} == {0, 1}
        one = [Clip("/v/a", "a", i * 10.0, i * 10.0 + 4, int(i == 4), i + 1) for i in range(10)]
        assert 1 in {c.label for c in splits.split_clips(one, seed=seed)["train"]}
    assert splits.split_clips([]) == {"train": [], "val": [], "test": []}
    with pytest.raises(LabelError):
        splits.split_clips(clips, (0.0, 0.5, 0.5))


def test_overlapping_finds_clips_near_ranges() -> None:
    cs = [Clip("v", "f", 0, 5, 1, 1), Clip("v", "f", 10, 12, 0, 2), Clip("w", "g", 0, 5, 0, 3)]
    assert [c.label_id for c in splits.overlapping(cs, [("f", 4.0, 6.0)])] == [1]
    assert [c.label_id for c in splits.overlapping(cs, [("f", 6.0, 9.5)], gap=0.5)] == [2]
    assert splits.overlapping(cs, [("h", 0.0, 100.0)]) == []
