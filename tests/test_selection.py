"""Selection: pure functions on score arrays (no media, no torch)."""

from __future__ import annotations

import numpy as np
import pytest

from autoclip.config import SelectionConfig
from autoclip.selection import (
    Segment,
    budget,
    hysteresis,
    limit_length,
    merge,
    pad,
    quietest,
    select,
    smooth,
    snap,
    thresholds,
)

FPS = 4.0


def track(duration: float, bumps: list[tuple[float, float, float]], base: float = 0.1):
    """Scores at FPS Hz: ``base`` everywhere, ``value`` inside each (start, end, value)."""
    times = np.arange(0, duration, 1 / FPS)
    scores = np.full_like(times, base)
    for s, e, v in bumps:
        scores[(times >= s) & (times < e)] = v
    return times, scores


def plain(**kw) -> SelectionConfig:
    """No smoothing, padding, merging, snapping or limits unless asked."""
    base = dict(smooth=0, pad_before=0, pad_after=0, merge_gap=0, min_length=0, max_length=1000,
                max_total=10000, max_count=100, min_spacing=0, snap=0)
    base.update(kw)
    return SelectionConfig(**base)


def test_smooth_averages_over_window_and_keeps_edges():
    times, scores = track(10, [(5, 5.25, 1.0)], base=0.0)
    sm = smooth(times, scores, 1.0)  # 4 samples
    assert sm.max() == pytest.approx(0.25)
    assert sm.sum() == pytest.approx(scores.sum())
    flat = smooth(times, np.full_like(times, 0.7), 2.0)
    assert np.allclose(flat, 0.7)  # edges are averages of what exists, not zero-padded


def test_smooth_keeps_the_length_of_short_tracks():
    # a window longer than the track (a very short VOD) used to return a longer array
    times = np.array([0.0, 0.25, 0.5])
    sm = smooth(times, np.array([0.0, 0.3, 0.9]), 10.0)
    assert sm.shape == (3,) and np.allclose(sm, [0.15, 0.4, 0.6])
    assert smooth(times[:1], np.array([0.4]), 10.0).tolist() == [0.4]


def test_hysteresis_starts_high_and_continues_above_low():
    times, scores = track(30, [(10, 12, 0.5), (12, 13, 0.9), (13, 16, 0.5), (20, 25, 0.5)])
    segs = hysteresis(times, scores, high=0.6, low=0.4)
    # the 0.5 run around the 0.9 burst is kept whole; the lone 0.5 run never reaches 0.6
    assert len(segs) == 1
    assert segs[0].start == pytest.approx(10.0)
    assert segs[0].end == pytest.approx(16.0)
    assert segs[0].score == pytest.approx(0.9)
    assert 12 <= segs[0].peak < 13


def test_percentile_cap_raises_the_start_threshold():
    times, scores = track(100, [(10, 14, 0.7), (50, 54, 0.95)])
    assert len(select(times, scores, plain(), duration=100)) == 2
    cfg = plain(percentile=97)
    high, low = thresholds(scores, cfg)
    assert high == pytest.approx(0.95)
    segs = select(times, scores, cfg, duration=100)
    assert [round(s.start) for s in segs] == [50]


def test_pad_clamps_to_the_vod():
    segs = pad([Segment(1, 5, 0.9, 3), Segment(95, 99, 0.9, 97)], 2, 3, duration=100)
    assert (segs[0].start, segs[0].end) == (0, 8)
    assert (segs[1].start, segs[1].end) == (93, 100)


def test_merge_joins_close_segments_and_keeps_best_peak():
    segs = [Segment(0, 5, 0.7, 2), Segment(6, 10, 0.9, 8), Segment(20, 25, 0.8, 22)]
    out = merge(segs, gap=2.0)
    assert out == [Segment(0, 10, 0.9, 8), Segment(20, 25, 0.8, 22)]
    assert merge(segs, gap=0.5) == segs


def test_limit_length_trims_around_the_peak():
    out = limit_length([Segment(0, 100, 0.9, 70), Segment(0, 100, 0.9, 2), Segment(0, 5, 0.9, 1)], 20)
    assert (out[0].start, out[0].end) == (60, 80)
    assert (out[1].start, out[1].end) == (0, 20)  # peak near the start: window stays inside
    assert (out[2].start, out[2].end) == (0, 5)


def test_budget_keeps_best_within_total_and_count():
    segs = [Segment(0, 10, 0.7, 5), Segment(20, 30, 0.9, 25), Segment(40, 50, 0.8, 45), Segment(60, 70, 0.95, 65)]
    assert [s.score for s in budget(segs, 25, 10, 0)] == [0.9, 0.95]
    assert [s.score for s in budget(segs, 1000, 3, 0)] == [0.9, 0.8, 0.95]  # back in time order
    # a long best one that does not fit is skipped, smaller ones still fill the reel
    segs2 = [Segment(0, 50, 0.99, 20), Segment(60, 65, 0.5, 62)]
    assert budget(segs2, 30, 10, 0) == [segs2[1]]


def test_min_spacing_between_picks():
    segs = [Segment(0, 10, 0.9, 5), Segment(15, 25, 0.95, 20), Segment(60, 70, 0.5, 65)]
    out = budget(segs, 1000, 10, min_spacing=10)
    assert [s.start for s in out] == [15, 60]  # 0-10 is only 5 s from the better 15-25


def test_quietest_prefers_nearest_of_equally_quiet():
    lt = np.arange(0, 10, 0.05)
    ldb = np.full_like(lt, -80.0)
    assert quietest(lt, ldb, 5.0, 3.0, 7.0) == pytest.approx(5.0)
    ldb[(lt > 4) & (lt < 6)] = -10.0
    assert quietest(lt, ldb, 5.0, 3.0, 7.0) in (pytest.approx(4.0), pytest.approx(6.0))


def speech_loudness(duration: float, words: list[tuple[float, float]]):
    """A 20 Hz dB track: loud (-12 dB) inside each word, quiet (-70 dB) between."""
    lt = np.arange(0, duration, 0.05)
    ldb = np.full_like(lt, -70.0)
    for s, e in words:
        ldb[(lt >= s) & (lt < e)] = -12.0
    return lt, ldb


def test_snap_moves_cuts_out_of_words():
    words = [(9.6, 10.5), (10.8, 11.4), (29.5, 30.6), (31.0, 31.5)]
    loud = speech_loudness(60, words)
    out = snap([Segment(10.0, 30.0, 0.9, 20)], loud, 1.5, 60, 1000)
    (s,) = out
    for w0, w1 in words:
        assert not (w0 < s.start < w1), s
        assert not (w0 < s.end < w1), s
    assert abs(s.start - 10.0) <= 1.5 and abs(s.end - 30.0) <= 1.5


def test_snap_away_from_a_loud_burst_in_full_selection():
    # a highlight from 20 to 30 s, surrounded by talk; every boundary lands between words
    times, scores = track(120, [(20, 30, 0.95)])
    rng = np.random.default_rng(0)
    words, t = [], 0.3
    while t < 118:
        length = rng.uniform(0.3, 0.7)
        words.append((t, t + length))
        t += length + rng.uniform(0.2, 0.4)
    loud = speech_loudness(120, words)
    cfg = plain(pad_before=1.0, pad_after=1.0, snap=1.5)
    segs = select(times, scores, cfg, duration=120, loudness=loud)
    assert len(segs) == 1
    for cut in (segs[0].start, segs[0].end):
        assert not any(w0 < cut < w1 for w0, w1 in words), cut
    # without snapping the padded cuts (19 s, 31 s) might fall anywhere
    assert 17.5 <= segs[0].start <= 20.5 and 29.5 <= segs[0].end <= 32.5


def test_snap_respects_neighbours_and_max_length():
    loud = speech_loudness(100, [(19.0, 21.0), (39.0, 41.0)])  # loud at both cuts; quiet either side
    segs = [Segment(0, 20, 0.9, 10), Segment(40, 60, 0.9, 50)]
    out = snap(segs, loud, 3.0, 100, max_length=20)
    assert out[0].start == 0  # the VOD's start stays
    assert out[0].end <= 20 + 1e-9  # could only move inward: max_length
    assert out[1].start >= out[0].end
    for s in out:
        assert s.length <= 20 + 1e-9


def test_select_end_to_end_defaults():
    times, scores = track(600, [(100, 106, 0.9), (108, 112, 0.85), (300, 305, 0.95), (450, 451, 0.9)])
    segs = select(times, scores, SelectionConfig(), duration=600)
    # 100-112 merge (gap < 3 s after padding), 300-305 alone, the 1 s blip is smoothed away
    assert len(segs) == 2
    assert segs[0].start == pytest.approx(98, abs=1.0) and segs[0].end == pytest.approx(114, abs=1.0)
    assert segs[1].start == pytest.approx(298, abs=1.0) and segs[1].end == pytest.approx(307, abs=1.0)
    assert all(a.end <= b.start for a, b in zip(segs, segs[1:], strict=False))


def test_select_empty_and_flat():
    assert select(np.array([]), np.array([]), SelectionConfig(), duration=0) == []
    times, scores = track(60, [])
    assert select(times, scores, SelectionConfig(), duration=60) == []


def test_segment_roundtrip():
    s = Segment(1.23456, 7.5, 0.912345, 3.0)
    assert Segment.from_dict(s.to_dict()) == Segment(1.235, 7.5, 0.912, 3.0)


def test_snap_at_vod_end_keeps_max_length():
    loud = speech_loudness(100, [(79.0, 81.0)])  # loud at the start cut, quiet before it
    (s,) = snap([Segment(80, 100, 0.9, 90)], loud, 3.0, 100, max_length=20)
    assert s.end == 100 and s.length <= 20 + 1e-9


def test_merge_gap_is_measured_before_padding():
    # moments 7 s apart stay two clips with 2 s padding; 2 s apart merge; 3.5 s apart overlap once padded
    for gap, expected in ((7.0, 2), (2.0, 1), (3.5, 1)):
        times, scores = track(100, [(40, 45, 0.9), (45 + gap, 50 + gap, 0.9)])
        cfg = plain(pad_before=2.0, pad_after=2.0, merge_gap=3.0)
        segs = select(times, scores, cfg, duration=100)
        assert len(segs) == expected, (gap, segs)
        assert all(a.end <= b.start for a, b in zip(segs, segs[1:], strict=False))
