"""The inbox watcher: junk/partial names, stability window, events + rescans, nothing opened."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest
from waiting import wait_for

from autoclip.fsutil import TMP_PREFIX
from autoclip.watcher import Candidate, InboxFilter, InboxWatcher, StabilityTracker, junk_reason

EXTS = [".mp4", ".mkv"]

JUNK_NAMES = [
    "stream.mp4.part", "stream.mkv.ytdl", "stream.mp4.part-Frag12", "stream.mp4.part-Frag3.part",
    "stream.f137.mp4", "stream.f251.mkv", "stream.fhls-1080p.mp4", "stream.temp.mp4", "stream.mp4.partial",
    "stream.mp4.partial~", "stream.mp4.crdownload", "stream.mp4.!qB", ".syncthing.stream.mp4.tmp",
    "~syncthing~stream.mp4.tmp", "stream.sync-conflict-20240101-120000-ABCDEFG.mp4", "._stream.mp4",
    ".nfs000000000123", ".hidden.mp4", f"{TMP_PREFIX}abc.mp4", "stream.mp4.tmp", "stream.mp4~",
]
GOOD_NAMES = ["stream.mp4", "Stream 2024-01-01 20-00-00.mkv", "-leading dash.mp4", "my.stream.final.mp4", "f137.mp4"]


@pytest.mark.parametrize("name", JUNK_NAMES)
def test_partial_and_junk_names_are_ignored(name: str, tmp_path: Path) -> None:
    assert junk_reason(name) is not None
    assert not InboxFilter(tmp_path, EXTS).wanted(tmp_path / name)


@pytest.mark.parametrize("name", GOOD_NAMES)
def test_final_names_are_candidates(name: str, tmp_path: Path) -> None:
    assert junk_reason(name) is None
    assert InboxFilter(tmp_path, EXTS).wanted(tmp_path / name)


def test_junk_folders_and_excluded_folders_are_not_entered(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    for folder in (".stversions", "_UNPACK_stream", ".hidden", "done", "sub"):
        (inbox / folder).mkdir(parents=True)
        (inbox / folder / "v.mp4").write_bytes(b"x")
    (inbox / "notes.txt").write_text("not a video extension")
    filt = InboxFilter(inbox, EXTS, exclude=[inbox / "done"])
    assert sorted(p.relative_to(inbox).as_posix() for p, _ in filt.scan()) == ["sub/v.mp4"]


def test_scan_lists_fifos_dirs_and_symlinks_without_opening_or_following(tmp_path: Path) -> None:
    inbox, outside = tmp_path / "inbox", tmp_path / "secret.mp4"
    inbox.mkdir()
    outside.write_bytes(b"outside the inbox")
    os.mkfifo(inbox / "fifo.mp4")  # opening it for reading would block this test forever
    (inbox / "folder.mp4").mkdir()
    (inbox / "folder.mp4" / "inner.mkv").write_bytes(b"x")
    (inbox / "link.mp4").symlink_to(outside)
    (inbox / "linkdir").symlink_to(tmp_path)  # a symlinked folder is not followed
    found = {p.name: st for p, st in InboxFilter(inbox, EXTS).scan()}
    assert set(found) == {"fifo.mp4", "folder.mp4", "link.mp4"}
    import stat

    assert stat.S_ISFIFO(found["fifo.mp4"].st_mode)
    assert stat.S_ISDIR(found["folder.mp4"].st_mode)
    assert stat.S_ISLNK(found["link.mp4"].st_mode)


def test_tracker_waits_for_the_window_and_restarts_it_on_change(tmp_path: Path) -> None:
    clock = [100.0]
    tracker = StabilityTracker(2.0, clock=lambda: clock[0])
    f = tmp_path / "a.mp4"
    f.write_bytes(b"a" * 10)
    tracker.observe(f, os.lstat(f))
    clock[0] += 1.5
    assert tracker.due() == []
    with open(f, "ab") as fh:  # the writer goes on: the window starts again
        fh.write(b"b" * 10)
    tracker.observe(f, os.lstat(f))
    clock[0] += 1.5
    assert tracker.due() == []
    tracker.observe(f, os.lstat(f))  # unchanged: the window keeps running
    clock[0] += 0.6
    due = tracker.due()
    assert [c.path for c in due] == [f] and due[0].st.st_size == 20
    assert len(tracker) == 0


def test_tracker_holds_a_preallocated_file_while_its_mtime_changes(tmp_path: Path) -> None:
    clock = [0.0]
    tracker = StabilityTracker(1.0, clock=lambda: clock[0])
    f = tmp_path / "pre.mp4"
    with open(f, "wb") as fh:
        fh.truncate(4096)  # full size at once, then written in place
    for i in range(4):
        with open(f, "r+b") as fh:
            fh.seek(i * 1024)
            fh.write(b"x" * 1024)
        os.utime(f, ns=(time.time_ns(), time.time_ns() + i * 1_000_000))
        tracker.observe(f, os.lstat(f))
        clock[0] += 0.9
        assert tracker.due() == []
    clock[0] += 0.2
    assert [c.path for c in tracker.due()] == [f]


def test_tracker_restarts_when_the_file_is_replaced(tmp_path: Path) -> None:
    clock = [0.0]
    tracker = StabilityTracker(1.0, clock=lambda: clock[0])
    f = tmp_path / "r.mp4"
    f.write_bytes(b"first")
    tracker.observe(f, os.lstat(f))
    clock[0] += 0.8
    tmp = tmp_path / "r.tmp"
    tmp.write_bytes(b"final")  # same size, new inode
    os.replace(tmp, f)
    tracker.observe(f, os.lstat(f))
    clock[0] += 0.8
    assert tracker.due() == []
    clock[0] += 0.3
    [c] = tracker.due()
    assert c.st.st_ino == os.lstat(f).st_ino


class Collector:
    def __init__(self) -> None:
        self.got: list[Candidate] = []
        self.lock = threading.Lock()

    def __call__(self, cand: Candidate) -> bool:
        with self.lock:
            self.got.append(cand)
        return True

    def names(self) -> list[str]:
        with self.lock:
            return sorted(c.path.name for c in self.got)


@pytest.fixture
def live(tmp_path: Path):
    """A real watcher thread (inotify observer + rescans) on tmp_path/inbox."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    stop = threading.Event()
    got = Collector()
    watcher = InboxWatcher(InboxFilter(inbox, EXTS), stable=0.6, rescan=30.0, polling=False, on_ready=got, stop=stop)
    watcher.step()
    t = threading.Thread(target=watcher.run, daemon=True)
    t.start()
    yield inbox, got, watcher
    stop.set()
    t.join(5)
    assert not t.is_alive()


def test_slow_writer_is_taken_once_after_writing_stops(live) -> None:
    inbox, got, _ = live
    f = inbox / "slow.mp4"
    with open(f, "wb") as fh:
        for _ in range(8):  # 8 chunks, 0.25 s apart: longer than the 0.6 s window in total
            fh.write(os.urandom(64 * 1024))
            fh.flush()
            time.sleep(0.25)
            assert got.names() == []
        done_at = time.monotonic()
    assert wait_for(lambda: got.names() == ["slow.mp4"])
    assert time.monotonic() - done_at >= 0.5
    assert got.got[0].st.st_size == 8 * 64 * 1024
    time.sleep(1.5)
    assert got.names() == ["slow.mp4"]


def test_stalled_writer_is_deferred_until_complete(live) -> None:
    inbox, got, _ = live
    f = inbox / "stall.mp4"
    with open(f, "wb") as fh:
        fh.write(b"a" * 1000)
        fh.flush()
        assert wait_for(lambda: got.names() == ["stall.mp4"])  # the watcher only sees a quiet file...
        fh.write(b"b" * 1000)  # ...and when the writer resumes, the new version is taken again
    assert wait_for(lambda: len(got.got) == 2)
    assert [c.st.st_size for c in got.got] == [1000, 2000]


def test_rename_in_and_move_in_each_give_one(live, tmp_path: Path) -> None:
    inbox, got, _ = live
    part = inbox / "x.mp4.part"
    part.write_bytes(os.urandom(10_000))
    time.sleep(1.2)
    assert got.names() == []  # the partial name is never a candidate
    part.rename(inbox / "x.mp4")
    outside = tmp_path / "y.mp4"
    outside.write_bytes(os.urandom(10_000))
    outside.rename(inbox / "y.mp4")
    assert wait_for(lambda: got.names() == ["x.mp4", "y.mp4"])
    time.sleep(1.2)
    assert got.names() == ["x.mp4", "y.mp4"]


def test_a_folder_moved_in_is_found(live, tmp_path: Path) -> None:
    inbox, got, _ = live
    folder = tmp_path / "batch"
    folder.mkdir()
    (folder / "one.mkv").write_bytes(b"1" * 100)
    (folder / "two.mp4.part").write_bytes(b"2" * 100)
    folder.rename(inbox / "batch")
    assert wait_for(lambda: got.names() == ["one.mkv"])


def test_missing_inbox_pauses_and_resumes(live) -> None:
    inbox, got, watcher = live
    (inbox / "keep.mp4").write_bytes(b"k" * 100)
    assert wait_for(lambda: got.names() == ["keep.mp4"])
    away = inbox.with_name("unmounted")
    inbox.rename(away)
    assert wait_for(lambda: watcher.paused)
    assert watcher.observer_alive()  # paused is healthy, not a dead observer
    away.rename(inbox)  # the share comes back with the same file: not taken again
    assert wait_for(lambda: not watcher.paused)
    (inbox / "new.mp4").write_bytes(b"n" * 100)
    assert wait_for(lambda: "new.mp4" in got.names())
    time.sleep(1.0)
    assert got.names() == ["keep.mp4", "new.mp4"]
    assert (inbox / "keep.mp4").exists()


def test_event_storm_of_junk_keeps_the_tracker_small(live) -> None:
    inbox, got, watcher = live
    for i in range(3000):
        (inbox / f"chunk{i}.mp4.part").write_bytes(b"x")
    (inbox / "real1.mp4").write_bytes(b"1" * 100)
    (inbox / "real2.mkv").write_bytes(b"2" * 100)
    assert wait_for(lambda: got.names() == ["real1.mp4", "real2.mkv"], 20)
    assert len(watcher.tracker) == 0 and len(watcher._taken) == 2


def test_polling_mode_for_network_shares(tmp_path: Path) -> None:
    inbox = tmp_path / "share"
    inbox.mkdir()
    stop = threading.Event()
    got = Collector()
    watcher = InboxWatcher(InboxFilter(inbox, EXTS), stable=0.5, rescan=1.0, polling=True, on_ready=got, stop=stop)
    t = threading.Thread(target=watcher.run, daemon=True)
    t.start()
    try:
        (inbox / "a.mp4.part").write_bytes(b"a" * 100)
        (inbox / "a.mp4.part").rename(inbox / "a.mp4")
        assert wait_for(lambda: got.names() == ["a.mp4"])
        from watchdog.observers.polling import PollingObserver

        assert isinstance(watcher._observer, PollingObserver) and watcher.observer_alive()
    finally:
        stop.set()
        t.join(5)


def test_entries_not_taken_are_said_once_and_forgotten_when_gone(tmp_path: Path, caplog) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    watcher = InboxWatcher(InboxFilter(inbox, EXTS), stable=0.5, rescan=30.0, polling=True,
                           on_ready=Collector(), stop=threading.Event())
    for name in ("song.m4a", "x.mp4.part", ".hidden.mp4", f"{TMP_PREFIX}x.mp4", "README"):
        (inbox / name).write_bytes(b"x")
    (inbox / ".stversions").mkdir()
    (inbox / ".stversions" / "old.mp4").write_bytes(b"x")
    with caplog.at_level("INFO", logger="autoclip.watcher"):
        for _ in range(3):
            watcher.scan()
    refused = {p.name: why for p, why in watcher.refused().items()}
    assert set(refused) == {"song.m4a", "x.mp4.part", ".hidden.mp4", "README", ".stversions"}  # not ours, not inside
    assert refused["song.m4a"].startswith("extension .m4a is not in [daemon] extensions")
    assert refused["README"].startswith("extension (none)")
    assert "partial download" in refused["x.mp4.part"] and "hidden file" in refused[".hidden.mp4"]
    lines = [r for r in caplog.records if " in the inbox: " in r.getMessage()]
    assert len(lines) == 5  # once each, not once per scan
    assert {r.levelname for r in lines if "song.m4a" in r.getMessage()} == {"WARNING"}
    (inbox / "x.mp4.part").rename(inbox / "x.mp4")  # the download finished
    watcher.scan()
    assert "x.mp4.part" not in {p.name for p in watcher.refused()}
