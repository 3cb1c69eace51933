"""The realistic benchmark: its plans and scoring (fast), and a smoke run of build + protocol (slow)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import numpy as np
import pytest

from benchmarks.realistic import evaluate as E
from benchmarks.realistic import plan as P
from benchmarks.realistic.protocol import deployment_config, parse_set
from benchmarks.realistic.tomlout import dumps

ROOT = Path(__file__).resolve().parent.parent


def test_suite_covers_the_formats_and_splits_the_issue_asks_for():
    suite = P.SUITE
    assert len(suite) >= 8
    assert [s.split for s in suite].count("seed") == 2
    assert [s.split for s in suite].count("pool") == 4
    held = [s for s in suite if s.split == "heldout"]
    seed_layouts = {s.layout for s in suite if s.split == "seed"}
    assert len(held) == 2 and sum(h.layout in seed_layouts for h in held) == 1
    assert {s.container for s in suite} == {"mp4", "mkv", "webm"}
    assert any(s.vfr for s in suite) and any(s.height > s.width for s in suite)
    assert {s.channels for s in suite} == {1, 2} and {s.sample_rate for s in suite} == {44100, 48000}
    assert all(300 <= s.duration <= 720 for s in suite)


@pytest.mark.parametrize("spec", [*P.SUITE, P.SMOKE], ids=lambda s: s.name)
def test_plans_are_deterministic_and_balanced(spec):
    a, b = P.make_plan(spec), P.make_plan(spec)
    assert a.truth() == b.truth()
    ev = a.events
    highs = [e for e in ev if e.kind == "highlight"]
    distractors = [e for e in ev if e.kind != "highlight"]
    assert len(distractors) == len(highs) >= 2
    assert all(3.0 <= e.end - e.start <= 10.0 for e in ev)
    assert all(e2.start - e1.end >= 12.0 for e1, e2 in zip(ev, ev[1:], strict=False))
    assert all(e.reaction and e.level_db < 0 for e in highs)  # both cues
    for d in distractors:  # exactly one cue each
        assert bool(d.reaction) + (d.level_db < 0) == 1, d
    x, y, w, h = a.facecam
    assert 0 <= x and x + w <= spec.width and 0 <= y and y + h <= spec.height
    assert 0.15 <= w / spec.width <= 0.35
    clips = P.seed_clips(a)
    assert sum(c[2] == "normal" for c in clips) == 2 * len(highs)
    assert all(c[2] == "highlight" or not any(h.start < c[1] and c[0] < h.end for h in highs) for c in clips)


def test_reel_matching_counts_each_true_highlight_once():
    truth = [(10.0, 20.0), (40.0, 45.0)]
    c = E.match([(11.0, 19.0), (12.0, 18.0), (41.0, 60.0), (100.0, 105.0)], truth)
    # (41, 60) has IoU 4/20 = 0.2 with (40, 45): not a match; the second segment on the first highlight is a false positive
    assert (c.tp, c.segments, c.truths) == (1, 4, 2)
    assert c.prf()["precision"] == 0.25 and c.prf()["recall"] == 0.5
    assert E.iou((0, 10), (5, 15)) == pytest.approx(5 / 15)


def test_oracle_needs_half_the_item_on_a_highlight():
    truth = {"highlights": [{"start": 10.0, "end": 16.0}]}
    assert E.oracle(truth, 10.0, 16.0) == "highlight"
    assert E.oracle(truth, 13.0, 19.0) == "highlight"  # exactly half
    assert E.oracle(truth, 14.0, 20.0) == "normal"


def test_loudness_baseline_tuning_finds_the_loud_stretches():
    times = np.arange(0, 120, E.HOP)
    db = np.full(len(times), -30.0)
    truth = [(20.0, 26.0), (70.0, 78.0)]
    for a, b in truth:
        db[(times >= a) & (times < b)] = -12.0
    base, res = E.tune_loudness([((times, db), truth)])
    assert res["f1"] == 1.0 and -30.0 < base.threshold <= -12.0


def test_config_overrides_become_valid_toml():
    truths = {"v1": {"file": "v1.mp4", "facecam": [10, 20, 300, 226]}}
    cfg = deployment_config(truths, parse_set(["frames.crop=auto", "train.epochs=2", "frames.profiles={}"]), Path("/c"))
    data = tomllib.loads(dumps(cfg))
    assert data["frames"]["crop"] == "auto" and data["train"]["epochs"] == 2 and not data["frames"].get("profiles")
    data = tomllib.loads(dumps(deployment_config(truths, {}, Path("/c"))))
    assert data["frames"]["profiles"]["v1"] == {"match": "v1.mp4", "box": [10, 20, 300, 226]}


@pytest.mark.slow
def test_smoke_build_and_one_round(tmp_path):
    """Build the 100 s smoke VOD (sources from PyPI/Debian, cached) and run round 0 + one round of both arms."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    t0 = time.monotonic()
    build = subprocess.run([sys.executable, "-m", "benchmarks.realistic.build", "--smoke"], cwd=ROOT, env=env,
                           capture_output=True, text=True)
    assert build.returncode == 0, build.stderr[-2000:]
    t_build = time.monotonic() - t0
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "benchmarks.realistic.protocol", "--smoke", "--rounds", "1", "--answers", "5",
           "--out", str(out), "--set", "frames.fps=2", "--set", "train.epochs=2", "--set", "frames.size=64"]
    run = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads((out / "results.json").read_text())
    rows = {(r["arm"], r["round"]): r for r in result["rows"]}
    assert set(rows) == {("both", 0), ("queue", 1), ("random", 1)}
    queue_answers = result_answers(out, "queue")
    assert 0 < len(queue_answers) <= 5
    assert len(result_answers(out, "random")) == len(queue_answers)
    assert rows[("queue", 1)]["labels"] > rows[("both", 0)]["labels"]
    for r in rows.values():
        assert 0.0 <= r["frame_ap"] <= 1.0 and 0.0 <= r["f1"] <= 1.0
    assert "| loudness baseline" in run.stdout and "| queue | 1 |" in run.stdout
    # a second run resumes from the state: nothing is redone
    t1 = time.monotonic()
    again = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-2000:]
    assert json.loads((out / "results.json").read_text())["rows"] == result["rows"]
    assert time.monotonic() - t1 < 60
    print(f"smoke build {t_build:.0f} s, protocol + resume {time.monotonic() - t0 - t_build:.0f} s")


def result_answers(out: Path, arm: str) -> list:
    state = json.loads((out / "state.json").read_text())
    return state["steps"][f"{arm}/r1/answers"]["answers"]
