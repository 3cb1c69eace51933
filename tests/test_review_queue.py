"""The review queue: choosing moments (pure), saving answers, undo, and the `review` CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from autoclip import cli, labels, store
from autoclip.config import from_dict
from autoclip.errors import UsageError
from autoclip.review import queue

FP = "fp-vod-a"
VOD = "/videos/a.mkv"


def _track(duration: float = 600.0, fps: float = 4.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    times = np.arange(0, duration, 1 / fps)
    scores = np.clip(rng.uniform(0, 1, len(times)), 0, 1)
    return times, scores


@pytest.fixture
def cfg(tmp_path):
    return from_dict({"review": {"per_vod": 6, "uncertain": 4, "min_spacing": 20.0, "uncertain_length": 6.0,
                                 "check_labels": 2}}, root=tmp_path)


@pytest.fixture
def conn(cfg):
    c = store.connect(cfg.path("database"))
    yield c
    c.close()


# -- pure choice ---------------------------------------------------------------------------------


def test_uncertainty_peaks_at_threshold():
    u = queue.uncertainty(np.array([0.0, 0.3, 0.6, 0.8, 1.0]), 0.6)
    assert u[2] == 1.0 and u.argmax() == 2
    assert u[0] == 0.0 and u[1] > u[0] and u[3] > u[4]


def test_most_uncertain_stretch_is_found_first():
    times = np.arange(0, 300, 0.25)
    scores = np.where(times < 150, 0.02, 0.98)
    scores[(times >= 200) & (times < 206)] = 0.6  # the one place the model is unsure
    picked = queue.choose_uncertain(times, scores, threshold=0.6, count=1, length=6.0, min_spacing=10)
    assert len(picked) == 1
    c = picked[0]
    assert c.reason == "uncertain" and 199 <= c.start and c.end <= 207
    assert abs(c.score - 0.6) < 0.1


def test_uncertain_items_are_spread_out_and_capped():
    times = np.arange(0, 600, 0.25)
    scores = np.full(len(times), 0.59)  # uncertain everywhere: spacing alone must spread picks
    picked = queue.choose_uncertain(times, scores, threshold=0.6, count=50, length=6.0, min_spacing=30)
    assert 10 <= len(picked) <= 600 / 36 + 1
    spans = sorted((c.start, c.end) for c in picked)
    for (_, e0), (s1, _) in zip(spans, spans[1:], strict=False):
        assert s1 - e0 >= 30 - 1e-9
    assert len(queue.choose_uncertain(times, scores, threshold=0.6, count=3, length=6.0, min_spacing=30)) == 3


def test_choice_caps_per_vod_and_excludes_reel_and_taken_ranges():
    times, scores = _track()
    segments = [{"start": 10.0 + 60 * i, "end": 18.0 + 60 * i, "score": 0.6 + 0.03 * i} for i in range(5)]
    avoid = [(130.0, 140.0), (300.0, 420.0)]  # a label and an earlier item
    chosen = queue.choose_items(times, scores, segments, per_vod=6, uncertain=4, min_spacing=20.0,
                                length=6.0, threshold=0.6, avoid=avoid)
    reel = [c for c in chosen if c.reason == "in-reel"]
    unsure = [c for c in chosen if c.reason == "uncertain"]
    assert len(chosen) <= 6 and len(unsure) == 4 and len(reel) == 2
    # the reel segment overlapping the label (130-138) is never asked; likeliest false positives first
    assert all(not queue.too_close((c.start, c.end), (130.0, 140.0)) for c in chosen)
    assert [c.start for c in reel] == [10.0, 70.0]
    for c in unsure:
        for a in avoid:
            assert not queue.too_close((c.start, c.end), a)
        for s in segments:  # outside the reel and spaced from it
            assert not queue.too_close((c.start, c.end), (s["start"], s["end"]), 20.0)
    assert [c.priority for c in chosen] == sorted((c.priority for c in chosen), reverse=True)
    assert min(c.priority for c in reel) > max(c.priority for c in unsure)


def test_reel_segment_partly_labelled_is_trimmed_to_the_unknown_part():
    segs = [{"start": 0.0, "end": 10.0, "score": 0.8}, {"start": 20.0, "end": 30.0, "score": 0.8}]
    avoid = [(8.0, 12.0), (19.0, 28.5)]
    chosen = queue.choose_reel(segs, threshold=0.6, count=5, avoid=avoid)
    assert [(c.start, c.end) for c in chosen] == [(0.0, 8.0)]  # 28.5-30 is too little to judge
    assert queue.uncovered((0.0, 10.0), [(2.0, 3.0), (5.0, 6.0)]) == [(0.0, 2.0), (3.0, 5.0), (6.0, 10.0)]



def test_reel_items_record_the_padding_their_range_still_has():
    """A reel segment is the selection's segment plus its padding; an item records the padding
    it still starts and ends with (none where the VOD's start or end or a labelled part cut it)."""
    segs = [{"start": 10.0, "end": 20.0, "score": 0.8}, {"start": 0.0, "end": 6.0, "score": 0.8},
            {"start": 40.0, "end": 50.0, "score": 0.8}, {"start": 94.0, "end": 100.0, "score": 0.8}]
    chosen = queue.choose_reel(segs, threshold=0.6, count=9, avoid=[(38.0, 42.0)], pad=(2.0, 1.5), duration=100.0)
    got = {(c.start, c.end): (c.pad_before, c.pad_after) for c in chosen}
    assert got == {(10.0, 20.0): (2.0, 1.5), (0.0, 6.0): (0.0, 1.5), (42.0, 50.0): (0.0, 1.5), (94.0, 100.0): (2.0, 0.0)}
    # choose_items: the VOD's end is known from the scores' times
    times = np.arange(0, 100, 0.25)
    items = queue.choose_items(times, np.zeros(len(times)), segs[3:], per_vod=1, uncertain=0, min_spacing=1,
                               length=6, threshold=0.6, pad=(2.0, 2.0))
    assert [(c.pad_before, c.pad_after) for c in items] == [(2.0, 0.0)]


def test_training_leaves_the_padding_out_of_a_highlight_answer(conn, cfg):
    """A "highlight" answer to a reel item trains on the segment without its padding (its
    lead-in and tail are mostly calm); a "normal" answer, an uncertain item and a nudged bound
    keep their whole range; the label and the split keep the answered range."""
    from autoclip.dataset import load_clips

    ids = _enqueue(conn, cfg)
    reel = [i for i in ids if queue.get_item(conn, i)["reason"] == "in-reel"]
    unsure = [i for i in ids if queue.get_item(conn, i)["reason"] == "uncertain"]
    first, second = (queue.get_item(conn, i) for i in reel)
    assert (first["pad_before"], first["pad_after"]) == (cfg.selection.pad_before, cfg.selection.pad_after)
    queue.mark(conn, first["id"], "highlight")
    queue.adjust(conn, second["id"], end=second["end"] - 1.0)  # the reviewer set the end
    queue.mark(conn, second["id"], "highlight")
    queue.mark(conn, unsure[0], "highlight")
    queue.mark(conn, unsure[1], "normal")
    by_start = {c.start: c for c in load_clips(conn)}
    a = by_start[first["start"]]
    assert (a.end, a.pad) == (first["end"], (2.0, 2.0))
    assert (a.sampled().start, a.sampled().end) == (first["start"] + 2.0, first["end"] - 2.0)
    b = by_start[second["start"]]
    assert b.pad == (2.0, 0.0) and (b.sampled().start, b.sampled().end) == (second["start"] + 2.0, second["end"] - 1.0)
    for i in unsure[:2]:
        c = by_start[queue.get_item(conn, i)["start"]]
        assert c.sampled() == c
    # a "normal" answer keeps every frame: the padding around a false positive is not a highlight either
    queue.undo(conn, 4)
    queue.mark(conn, first["id"], "normal")
    c = by_start[first["start"]] = next(c for c in load_clips(conn) if c.start == first["start"])
    assert c.sampled() == c


def test_a_schema_2_database_gains_the_padding_columns(tmp_path):
    import sqlite3

    path = tmp_path / "old.db"
    old = sqlite3.connect(path)
    lines = [ln for ln in store.SCHEMA.splitlines() if not ln.lstrip().startswith(("pad_before", "pad_after"))]
    schema_2 = "\n".join(ln.replace("replaced    TEXT,", "replaced    TEXT") for ln in lines)
    old.executescript(schema_2)
    old.execute("INSERT INTO review_items (vod, fingerprint, start, end, score, reason, created) "
                "VALUES ('v', 'f', 1, 5, 0.9, 'in-reel', 0)")
    old.execute("PRAGMA user_version=2")
    old.commit()
    assert "pad_before" not in {r[1] for r in old.execute("PRAGMA table_info(review_items)")}
    old.close()
    conn = store.connect(path)
    (row,) = conn.execute("SELECT pad_before, pad_after FROM review_items").fetchall()
    assert tuple(row) == (0.0, 0.0)  # old items: no padding known, so none is left out
    assert conn.execute("PRAGMA user_version").fetchone()[0] == store.SCHEMA_VERSION

def test_no_scores_still_queues_reel_segments():
    chosen = queue.choose_items(np.zeros(0), np.zeros(0), [{"start": 1.0, "end": 5.0, "score": 0.9}],
                                per_vod=5, uncertain=3, min_spacing=10, length=6, threshold=0.6)
    assert [(c.start, c.reason) for c in chosen] == [(1.0, "in-reel")]


# -- database ------------------------------------------------------------------------------------


def _enqueue(conn, cfg, seed: int = 0) -> list[int]:
    times, scores = _track(seed=seed)
    segments = [{"start": 100.0, "end": 108.0, "score": 0.9}, {"start": 400.0, "end": 410.0, "score": 0.7}]
    return queue.enqueue_after_process(conn, cfg, vod=VOD, fingerprint=FP, job="job1", model="m1",
                                       times=times, scores=scores, segments=segments)


def test_enqueue_skips_labels_and_never_asks_again(conn, cfg):
    labels.add_label(conn, VOD, 98.0, 110.0, "highlight", "cli", fingerprint=FP)
    ids = _enqueue(conn, cfg)
    items = queue.list_items(conn)
    assert len(ids) == len(items) == 5  # 4 uncertain + the one reel segment no label covers
    assert not any(queue.too_close((it["start"], it["end"]), (98.0, 110.0)) for it in items)
    assert {it["reason"] for it in items} == {"in-reel", "uncertain"}
    assert all(it["state"] == "pending" and it["job"] == "job1" for it in items)
    queue.mark(conn, ids[0], "normal")
    queue.mark(conn, ids[1], "skip")
    again = _enqueue(conn, cfg)  # the same VOD processed again: nothing overlapping is re-asked
    for new in (queue.get_item(conn, i) for i in again):
        for old in items:
            assert not queue.too_close((new["start"], new["end"]), (old["start"], old["end"]))


def test_training_knows_answered_items_from_ranges_a_person_drew(conn, cfg):
    """An answered item's range may hold padding around the moment (the audio gate asks for half
    of it); a range a person drew holds the moment throughout."""
    from autoclip.dataset import load_clips

    ids = _enqueue(conn, cfg)
    a = queue.mark(conn, ids[0], "highlight")
    b = queue.mark(conn, ids[1], "normal")
    labels.add_label(conn, VOD, 700.0, 705.0, "highlight", "cli", fingerprint=FP)
    assert sorted((c.start, c.reviewed) for c in load_clips(conn)) == sorted(
        [(a["start"], True), (b["start"], True), (700.0, False)])


def test_mark_creates_review_labels_and_skip_does_not(conn, cfg):
    ids = _enqueue(conn, cfg)
    a = queue.mark(conn, ids[0], "highlight")
    b = queue.mark(conn, ids[1], "normal")
    c = queue.mark(conn, ids[2], "skip")
    assert (a["state"], b["state"], c["state"]) == ("highlight", "normal", "skipped")
    assert c["label_id"] is None and c["decision_seq"] == 3
    rows = labels.list_labels(conn)
    assert {(r["label"], r["source"], r["review_id"]) for r in rows} == {
        ("highlight", "review", ids[0]), ("normal", "review", ids[1])}
    with pytest.raises(UsageError):
        queue.mark(conn, ids[0], "normal")
    with pytest.raises(UsageError):
        queue.mark(conn, ids[3], "maybe")
    p = queue.progress(conn)
    assert p == {"answered_today": 3, "pending": len(ids) - 3, "labels": {"highlight": 1, "normal": 1}}


def test_undo_several_steps_in_order(conn, cfg):
    ids = _enqueue(conn, cfg)
    for i, ans in zip(ids[:4], ["highlight", "normal", "skip", "normal"], strict=True):
        queue.mark(conn, i, ans)
    undone = queue.undo(conn, steps=2)
    assert [u["id"] for u in undone] == [ids[3], ids[2]]
    assert all(u["state"] == "pending" and u["decision_seq"] is None for u in undone)
    assert len(labels.list_labels(conn)) == 2
    assert [u["id"] for u in queue.undo(conn)] == [ids[1]]
    assert [r["review_id"] for r in labels.list_labels(conn)] == [ids[0]]
    queue.undo(conn, steps=10)
    assert labels.list_labels(conn) == [] and queue.undo(conn) == []
    assert all(it["state"] == "pending" for it in queue.list_items(conn))


def test_nudge_changes_the_label_range(conn, cfg):
    ids = _enqueue(conn, cfg)
    it = queue.get_item(conn, ids[0])
    queue.adjust(conn, ids[0], start=it["start"] - 1, end=it["end"] + 2)
    queue.mark(conn, ids[0], "highlight")
    (row,) = labels.list_labels(conn)
    assert (row["start"], row["end"]) == (it["start"] - 1, it["end"] + 2)
    with pytest.raises(UsageError):
        queue.adjust(conn, ids[1], end=queue.get_item(conn, ids[1])["start"] + 0.1)


def test_check_label_items_replace_wrong_labels_and_undo_restores(conn, cfg):
    wrong = labels.add_label(conn, VOD, 10.0, 15.0, "normal", "import", fingerprint=FP)
    right = labels.add_label(conn, VOD, 30.0, 35.0, "highlight", "import", fingerprint=FP)
    low = labels.add_label(conn, VOD, 50.0, 55.0, "normal", "import", fingerprint=FP)
    ids = queue.enqueue_check_labels(conn, cfg, [
        {"label_id": low, "loss": 0.1, "score": 0.1},
        {"label_id": wrong, "loss": 3.0, "score": 0.95, "model": "m2"},
        {"label_id": right, "loss": 1.0, "score": 0.3},
    ])
    assert len(ids) == 2  # check_labels cap, highest loss first
    first, second = (queue.get_item(conn, i) for i in ids)
    assert (first["reason"], first["start"], first["model"]) == ("check-label", 10.0, "m2")
    assert 3.0 > first["priority"] > second["priority"] > 2.0  # below in-reel, above uncertain
    assert queue.enqueue_check_labels(conn, cfg, [{"label_id": wrong, "loss": 5.0}]) == []  # not twice
    cfg.review.check_labels = 10  # a clip the model agrees with (loss 0.1) is never queued
    assert queue.enqueue_check_labels(conn, cfg, [{"label_id": low, "loss": 0.1, "score": 0.1}]) == []

    queue.mark(conn, ids[0], "highlight")  # the import label was wrong
    queue.mark(conn, ids[1], "highlight")  # this one was right: left as it is
    now = {(r["start"], r["label"], r["source"]) for r in labels.list_labels(conn)}
    assert now == {(10.0, "highlight", "review"), (30.0, "highlight", "import"), (50.0, "normal", "import")}
    queue.undo(conn, steps=2)
    now = {(r["start"], r["label"], r["source"]) for r in labels.list_labels(conn)}
    assert now == {(10.0, "normal", "import"), (30.0, "highlight", "import"), (50.0, "normal", "import")}
    queue.mark(conn, ids[0], "normal")  # answering again after undo works on the restored label
    assert len(labels.list_labels(conn)) == 3


def test_answers_survive_a_new_connection(conn, cfg):
    ids = _enqueue(conn, cfg)
    queue.mark(conn, ids[0], "highlight")
    other = store.connect(cfg.path("database"))
    try:
        assert queue.get_item(other, ids[0])["state"] == "highlight"
        assert other.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        other.close()


# -- CLI -----------------------------------------------------------------------------------------


def test_cli_list_mark_undo(tmp_path, conn, cfg, capsys):
    cfg_file = tmp_path / "config.toml"
    cfg_file.write_text('[paths]\ndatabase = "data/autoclip.db"\n')
    ids = _enqueue(conn, cfg)
    base = ["--config", str(cfg_file), "review"]
    assert cli.main([*base, "list", "--json"]) == 0
    items = json.loads(capsys.readouterr().out)
    assert len(items) == len(ids)
    assert {"id", "vod", "start", "end", "score", "reason", "state"} <= set(items[0])
    assert cli.main([*base, "mark", str(items[0]["id"]), "--label", "highlight"]) == 0
    assert cli.main([*base, "mark", str(items[1]["id"]), "--label", "skip"]) == 0
    capsys.readouterr()
    assert cli.main([*base, "list", "--json", "--state", "highlight"]) == 0
    assert [it["id"] for it in json.loads(capsys.readouterr().out)] == [items[0]["id"]]
    assert cli.main([*base, "undo", "--steps", "2", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 2
    assert cli.main([*base, "mark", "99999", "--label", "normal"]) == 2
    assert "no review item" in capsys.readouterr().err


WRITER = """
import sys
from autoclip import store
from autoclip.review import queue
conn = store.connect(sys.argv[1])
for item in queue.list_items(conn, "pending"):
    queue.mark(conn, item["id"], "normal" if item["id"] % 3 else "skip")
    print(item["id"], flush=True)  # acknowledged only after the commit
"""


def test_killed_writer_loses_no_acknowledged_answer(conn, cfg, tmp_path):
    import signal
    import subprocess
    import sys

    times, scores = _track(duration=3000.0)
    cfg.review.per_vod, cfg.review.uncertain, cfg.review.min_spacing = 200, 200, 1.0
    queue.enqueue_after_process(conn, cfg, vod=VOD, fingerprint=FP, job=None, model=None,
                                times=times, scores=scores, segments=[])
    acknowledged: list[int] = []
    rng = np.random.default_rng(1)
    for _ in range(4):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(cfg.path("database"))],
                                stdout=subprocess.PIPE, text=True)
        for _ in range(int(rng.integers(1, 15))):
            line = proc.stdout.readline()
            if not line:
                break
            acknowledged.append(int(line))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
    assert len(acknowledged) > 4
    check = store.connect(cfg.path("database"))
    try:
        assert check.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        for i in acknowledged:
            item = queue.get_item(check, i)
            assert item["state"] in ("normal", "skipped")
            has_label = check.execute("SELECT COUNT(*) FROM labels WHERE review_id = ?", (i,)).fetchone()[0]
            assert has_label == (item["state"] == "normal")
        answered = check.execute("SELECT COUNT(*) FROM review_items WHERE state != 'pending'").fetchone()[0]
        labelled = check.execute("SELECT COUNT(*) FROM labels").fetchone()[0]
        normals = check.execute("SELECT COUNT(*) FROM review_items WHERE state = 'normal'").fetchone()[0]
        assert labelled == normals and answered >= len(acknowledged)
    finally:
        check.close()
