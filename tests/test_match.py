"""Matching found segments against known highlights (one function for the demo, tests, experiments)."""

from __future__ import annotations

import numpy as np

from autoclip.metrics import frames_in, match_segments, overlap


def test_match_segments_counts_each_side() -> None:
    truth = [(10.0, 15.0), (40.0, 44.0), (80.0, 85.0)]
    found = [(9.0, 16.0), (43.0, 50.0), (60.0, 62.0)]  # covers, barely touches (1 of 4 s), stray
    m = match_segments(found, truth)
    assert (m.found, m.truth, m.right, m.segments) == (1, 3, 1, 3)
    assert m.recall == 1 / 3 and m.precision == 1 / 3
    assert "1 of 3 planted highlights found" in m.describe()
    loose = match_segments(found, truth, min_cover=0.2)  # 1 of 4 s is a quarter: matches now
    assert (loose.found, loose.right) == (2, 2)
    empty = match_segments([], [])
    assert empty.recall == 1.0 and empty.precision == 1.0
    assert overlap((0, 2), (3, 4)) == 0.0 and overlap((0, 5), (3, 9)) == 2.0


def test_frames_in_is_half_open() -> None:
    times = np.array([0.0, 1.0, 2.0, 3.0, 4.0])
    assert frames_in(times, [(1.0, 3.0)]).tolist() == [False, True, True, False, False]
    assert frames_in(times, []).tolist() == [False] * 5
