"""The newcomer's first command, end to end: `autoclip demo` (what scripts/demo.sh runs) on a
fresh folder generates sample VODs, trains, starts the real daemon, drops a VOD and gets its
reel; run again, it reuses all of that and still answers (the dropped copy is a duplicate, moved
out of the inbox, not left sitting there)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from autoclip import media, synth
from autoclip.metrics import match_segments


def _demo(folder: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="2", MPLBACKEND="Agg")
    return subprocess.run([sys.executable, "-m", "autoclip", "demo", str(folder), "--timeout", "300"],
                          capture_output=True, text=True, env=env, timeout=900)


@pytest.mark.slow
def test_demo_makes_a_reel_of_the_planted_highlights_and_reruns(tmp_path: Path) -> None:
    folder = tmp_path / "demo"
    first = _demo(folder)
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]

    db = sqlite3.connect(folder / "data" / "autoclip.db")
    (reel,) = [Path(r) for (r,) in db.execute("SELECT reel FROM jobs WHERE state = 'done'")]
    info = media.probe(reel)
    assert info.has_audio and info.duration > 5
    segments = json.loads(reel.with_suffix(".segments.json").read_text())["segments"]
    assert reel.with_suffix(".edl").exists()
    truth = synth.load_truth(folder / "samples" / "new-stream.mp4")
    planted = [(e.start, e.end) for e in truth.highlights()]
    cut = [(s["start"], s["end"]) for s in segments]
    m = match_segments(cut, planted)
    assert m.found >= len(planted) - 1 and m.right >= len(cut) - 1, (planted, cut)
    pending = db.execute("SELECT COUNT(*) FROM review_items WHERE state = 'pending' AND reason = 'in-reel'")
    assert pending.fetchone()[0] == len(segments)  # every reel segment waits for review

    again = _demo(folder)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    said = again.stdout + again.stderr
    assert "already processed" in said and reel.name in said  # the same reel, reported again
    assert not any((folder / "data" / "inbox").iterdir())
    states = sorted(s for (s,) in db.execute("SELECT state FROM jobs"))
    assert states == ["done", "duplicate"]
    db.close()
