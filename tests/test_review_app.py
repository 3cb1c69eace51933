"""The review UI driven by key presses (Textual's pilot) in an 80x24 terminal; checks the database."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from autoclip import fsutil, labels, store, synth
from autoclip.config import from_dict
from autoclip.review import preview, queue
from autoclip.review.app import HelpScreen, ReviewApp

SIZE = (80, 24)


@pytest.fixture(scope="module")
def vod(tmp_path_factory):
    folder = tmp_path_factory.mktemp("vod")
    events = [synth.Event(8.0, 12.0, "highlight"), synth.Event(24.0, 28.0, "audio")]
    return synth.make_vod(folder / "stream.mp4", 40.0, events, width=160, height=90, fps=10)


@pytest.fixture
def cfg(tmp_path):
    return from_dict({"review": {"per_vod": 5, "uncertain": 3, "min_spacing": 2.0, "uncertain_length": 4.0,
                                 "player": "no-such-player-here"}}, root=tmp_path)


@pytest.fixture
def queued(cfg, vod):
    """A processed VOD's queue plus its job's scores.npz, as the pipeline leaves them."""
    times = np.arange(0, 40, 0.25)
    scores = np.where((times > 7) & (times < 13), 0.9, np.where((times > 23) & (times < 29), 0.62, 0.05))
    scores = scores + 0.05 * np.sin(times)
    job_dir = cfg.path("jobs") / "job1"
    job_dir.mkdir(parents=True)
    lt = np.arange(0, 40, 0.05)
    np.savez(job_dir / "scores.npz", times=times, scores=scores, loudness_times=lt,
             loudness_db=np.where((lt > 8) & (lt < 12), -6.0, -40.0))
    conn = store.connect(cfg.path("database"))
    ids = queue.enqueue_after_process(
        conn, cfg, vod=str(vod.path), fingerprint=fsutil.fingerprint(vod.path), job="job1", model="m1",
        times=times, scores=scores, segments=[{"start": 6.0, "end": 14.0, "score": 0.9}])
    yield conn, ids
    conn.close()


def _text(app: ReviewApp, widget_id: str) -> str:
    return str(app.query_one(f"#{widget_id}").render())


def _states(conn) -> dict[int, str]:
    return {it["id"]: it["state"] for it in queue.list_items(conn)}


def test_answer_items_with_keys_and_undo(cfg, queued):
    asyncio.run(_answer_items_with_keys_and_undo(cfg, queued))


async def _answer_items_with_keys_and_undo(cfg, queued):
    conn, ids = queued
    assert len(ids) >= 4
    app = ReviewApp(cfg)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert app.current["id"] == ids[0]  # highest priority first: the reel segment
        assert "in-reel" in _text(app, "info") and f"left {len(ids)}" in _text(app, "progress")
        assert "▀" in _text(app, "strip")  # the filmstrip was decoded and drawn
        curve = _text(app, "curve")
        assert "├" in curve and "(no scores" not in curve and "peak -6 dBFS" in curve

        await pilot.press("h")
        assert app.current["id"] == ids[1]  # the list moved on
        await pilot.press("n", "s")
        assert "today 3" in _text(app, "progress") and f"left {len(ids) - 3}" in _text(app, "progress")
        assert _states(conn)[ids[0]] == "highlight"  # saved at once, visible to another reader
        assert [_states(conn)[i] for i in ids[:3]] == ["highlight", "normal", "skipped"]
        rows = labels.list_labels(conn)
        assert {(r["label"], r["source"], r["review_id"]) for r in rows} == {
            ("highlight", "review", ids[0]), ("normal", "review", ids[1])}

        await pilot.press("u", "u")  # two steps back: the skip, then the normal answer
        assert [_states(conn)[i] for i in ids[:3]] == ["highlight", "pending", "pending"]
        assert app.current["id"] == ids[1]
        assert [r["review_id"] for r in labels.list_labels(conn)] == [ids[0]]
        await pilot.press("u", "u")
        assert labels.list_labels(conn) == [] and "nothing to undo" in _text(app, "message")


def test_nudge_navigation_help_and_play(cfg, queued):
    asyncio.run(_nudge_navigation_help_and_play(cfg, queued))


async def _nudge_navigation_help_and_play(cfg, queued):
    conn, ids = queued
    app = ReviewApp(cfg, frames=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        first = queue.get_item(conn, ids[0])
        await pilot.press("left_square_bracket", "right_curly_bracket", "right_curly_bracket")
        moved = queue.get_item(conn, ids[0])
        assert (moved["start"], moved["end"]) == (first["start"] - 1, first["end"] + 2)
        await pilot.press("j")
        assert app.current["id"] == ids[1]
        await pilot.press("k")
        assert app.current["id"] == ids[0]
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("x")
        assert not isinstance(app.screen, HelpScreen)
        await pilot.press("p")
        assert "no player found" in _text(app, "message")
        await pilot.press("h")
    (row,) = labels.list_labels(conn)
    assert (row["start"], row["end"]) == (first["start"] - 1, first["end"] + 2)


def test_restart_in_the_middle_loses_nothing(cfg, queued):
    asyncio.run(_restart_in_the_middle_loses_nothing(cfg, queued))


async def _restart_in_the_middle_loses_nothing(cfg, queued):
    conn, ids = queued
    app = ReviewApp(cfg, frames=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("h", "n")
        await pilot.press("q")
    assert app.return_code in (0, None)

    again = ReviewApp(cfg, frames=False)  # a new process on the same database
    async with again.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert again.current["id"] == ids[2]  # continues where the first one stopped
        assert "today 2" in _text(again, "progress")
        await pilot.press("n", "u", "u")  # undo reaches back across the restart
        assert [_states(conn)[i] for i in ids[:3]] == ["highlight", "pending", "pending"]
        await pilot.press("n", "n")
    assert [_states(conn)[i] for i in ids[:3]] == ["highlight", "normal", "normal"]
    assert len(labels.list_labels(conn)) == 3


def test_empty_queue_and_missing_scores(cfg, vod):
    asyncio.run(_empty_queue_and_missing_scores(cfg, vod))


async def _empty_queue_and_missing_scores(cfg, vod):
    app = ReviewApp(cfg, frames=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("h", "u")
        assert "Nothing to review" in _text(app, "info")
        assert "nothing to undo" in _text(app, "message")
    assert preview.load_track(cfg.path("jobs"), "gone") is None
    lines = preview.curves(None, 5.0, 9.0, 40)
    assert lines["score"] is None and lines["loudness"] is None and lines["peak_db"] is None
    assert lines["t0"] <= 5.0 and lines["t1"] >= 9.0  # the view still frames the item
    # an item whose job folder holds no scores says so instead of drawing a curve
    times = np.arange(0, 40, 0.25)
    conn = store.connect(cfg.path("database"))
    try:
        queue.enqueue_after_process(conn, cfg, vod=str(vod.path), fingerprint=fsutil.fingerprint(vod.path),
                                    job="gone", model="m1", times=times, scores=np.full_like(times, 0.5),
                                    segments=[{"start": 6.0, "end": 14.0, "score": 0.9}])
    finally:
        conn.close()
    app = ReviewApp(cfg, frames=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert app.current is not None
        assert "(no scores for this job)" in _text(app, "curve")
