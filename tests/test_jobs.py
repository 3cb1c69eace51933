"""Durable jobs on real files and a real SQLite database: one job per file version, duplicates,
retries with backoff, failed/done moves with reasons, crash recovery and child process groups."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from autoclip import config, store
from autoclip.child import kill_orphan, run_child
from autoclip.daemon import intake
from autoclip.jobs import STATE_FILE, JobStore
from autoclip.watcher import Candidate


@pytest.fixture
def js(tmp_path: Path) -> JobStore:
    cfg = config.from_dict({"daemon": {"backoff": 10.0, "max_attempts": 3}}, root=tmp_path)
    cfg.ensure_dirs()
    conn = store.connect(cfg.path("database"))
    yield JobStore(cfg, conn)
    conn.close()


def drop(js: JobStore, name: str, data: bytes) -> Candidate:
    p = js.cfg.path("inbox") / name
    p.write_bytes(data)
    return Candidate(p, os.lstat(p))


def test_one_file_version_gives_one_job(js: JobStore) -> None:
    cand = drop(js, "a.mp4", b"A" * 5000)
    job, outcome = js.submit(cand)
    assert outcome == "new" and job.state == "queued"
    for _ in range(3):  # created event, closed event, periodic scan...
        again, outcome = js.submit(Candidate(cand.path, os.lstat(cand.path)))
        assert outcome == "known" and again.id == job.id
    assert js.counts()["queued"] == 1
    saved = json.loads((js.job_dir(job.id) / STATE_FILE).read_text())
    assert saved["source"] == str(cand.path) and saved["state"] == "queued"


def test_same_content_under_another_name_is_a_duplicate(js: JobStore) -> None:
    first, _ = js.submit(drop(js, "a.mp4", b"same bytes" * 100))
    dup, outcome = js.submit(drop(js, "copy of a.mp4", b"same bytes" * 100))
    assert outcome == "duplicate" and dup.state == "duplicate" and dup.duplicate_of == first.id
    assert js.counts() == {**js.counts(), "queued": 1, "duplicate": 1}
    assert (js.cfg.path("done") / "copy of a.mp4").exists()  # out of the inbox, not processed


def test_same_name_new_content_after_done_is_a_new_job(js: JobStore) -> None:
    job, _ = js.submit(drop(js, "a.mp4", b"version one" * 100))
    js.begin(job)
    js.finish(job, {"reel": "/reels/a.mp4"})
    assert (js.cfg.path("done") / "a.mp4").exists() and not (js.cfg.path("inbox") / "a.mp4").exists()
    job2, outcome = js.submit(drop(js, "a.mp4", b"version two" * 100))
    assert outcome == "new" and job2.id != job.id
    js.begin(job2)
    js.finish(job2, {"reel": "/reels/a2.mp4"})
    assert (js.cfg.path("done") / f"a.{job2.id}.mp4").exists()  # no clobbering in the done folder


def test_replacing_a_queued_file_updates_its_job(js: JobStore) -> None:
    job, _ = js.submit(drop(js, "a.mp4", b"old" * 100))
    path = js.cfg.path("inbox") / "a.mp4"
    tmp = path.with_name("a.tmp")
    tmp.write_bytes(b"new content" * 100)
    os.replace(tmp, path)
    again, outcome = js.submit(Candidate(path, os.lstat(path)))
    assert outcome == "updated" and again.id == job.id and again.size == 1100
    assert js.counts()["queued"] == 1


@pytest.mark.expect_errors(r"^failed \(")  # a job failed for good is logged as an ERROR
def test_retries_back_off_then_fail_moves_the_file_with_a_reason(js: JobStore) -> None:
    job, _ = js.submit(drop(js, "bad.mp4", b"x" * 100))
    delays = []
    for attempt in range(1, 4):
        js.begin(job)
        t = store.now()
        outcome = js.fail(job, "process_failed", "ffmpeg crashed", retry=True, detail="stderr tail")
        if attempt < 3:
            assert outcome == "retry" and job.state == "queued" and js.next_ready() is None
            delays.append(job.next_try - t)
            job.next_try = 0  # pretend the backoff has passed
        else:
            assert outcome == "failed"
    assert delays == pytest.approx([10.0, 20.0], abs=0.5)
    failed = js.cfg.path("failed")
    assert (failed / "bad.mp4").exists() and not (js.cfg.path("inbox") / "bad.mp4").exists()
    reason = json.loads((failed / "bad.mp4.reason.json").read_text())
    assert reason["code"] == "process_failed" and reason["attempts"] == 3 and reason["job"] == job.id
    assert js.get(job.id).state == "failed"


def test_disk_full_does_not_use_up_attempts(js: JobStore) -> None:
    job, _ = js.submit(drop(js, "v.mp4", b"v" * 100))
    for _ in range(5):
        js.begin(job)
        assert js.fail(job, "disk_full", "disk full while writing the reel", retry=False) == "retry"
        job.next_try = 0
    assert job.attempts == 0 and job.state == "queued" and job.disk_full_retries == 5


@pytest.mark.expect_errors(r"^failed \(")  # a job failed for good is logged as an ERROR
def test_a_failed_file_moved_back_is_tried_again(js: JobStore) -> None:
    job, _ = js.submit(drop(js, "v.mp4", b"v" * 100))
    js.begin(job)
    js.fail(job, "not_media", "not a video", retry=False)
    back = js.cfg.path("inbox") / "v.mp4"
    os.rename(js.cfg.path("failed") / "v.mp4", back)  # same inode, size, mtime
    again, outcome = js.submit(Candidate(back, os.lstat(back)))
    assert outcome == "retry" and again.id == job.id and again.state == "queued" and again.attempts == 0


def test_same_content_dropped_again_after_done_is_a_duplicate_moved_out(js: JobStore) -> None:
    job, _ = js.submit(drop(js, "a.mp4", b"same bytes" * 100))
    js.begin(job)
    js.finish(job, {"reel": "/reels/a.mp4"})
    again, outcome = js.submit(drop(js, "a.mp4", b"same bytes" * 100))  # a copy under the same name
    assert outcome == "duplicate" and again.duplicate_of == job.id
    assert not (js.cfg.path("inbox") / "a.mp4").exists()  # not left sitting in the inbox
    assert (js.cfg.path("done") / f"a.{again.id}.mp4").exists()
    assert js.counts() == {**js.counts(), "done": 1, "duplicate": 1}


def test_paths_done_empty_leaves_the_vod_and_a_touch_is_not_new_work(tmp_path: Path) -> None:
    cfg = config.from_dict({"paths": {"done": ""}}, root=tmp_path)
    cfg.ensure_dirs()
    js = JobStore(cfg, store.connect(cfg.path("database")))
    job, _ = js.submit(drop(js, "v.mp4", b"v" * 100))
    js.begin(job)
    js.finish(job, {"reel": None})
    path = cfg.path("inbox") / "v.mp4"
    assert path.exists()
    os.utime(path, (time.time() + 5, time.time() + 5))  # touched (or share remounted): new key, same content
    again, outcome = js.submit(Candidate(path, os.lstat(path)))
    assert outcome == "known" and again.id == job.id and js.counts()["done"] == 1


@pytest.mark.expect_errors(r"^failed \(")  # a job failed for good is logged as an ERROR
def test_fifo_folder_and_symlink_are_refused_without_opening(js: JobStore, tmp_path: Path) -> None:
    inbox, failed = js.cfg.path("inbox"), js.cfg.path("failed")
    secret = tmp_path / "secret.mp4"
    secret.write_bytes(b"outside")
    os.mkfifo(inbox / "fifo.mp4")
    (inbox / "dir.mp4").mkdir()
    (inbox / "link.mp4").symlink_to(secret)
    codes = {}
    for name in ("fifo.mp4", "dir.mp4", "link.mp4"):
        p = inbox / name
        job, outcome = intake(js, Candidate(p, os.lstat(p)))
        assert outcome == "rejected" and job.state == "failed"
        codes[name] = job.reason_code
        assert os.path.lexists(failed / name) and (failed / f"{name}.reason.json").exists()
    assert codes == {"fifo.mp4": "not_file", "dir.mp4": "not_file", "link.mp4": "symlink"}
    assert secret.read_bytes() == b"outside" and (failed / "link.mp4").is_symlink()


@pytest.mark.expect_errors(r"^failed \(")  # a job failed for good is logged as an ERROR
def test_recover_requeues_unfinished_jobs_and_fails_after_max_attempts(js: JobStore) -> None:
    a, _ = js.submit(drop(js, "a.mp4", b"a" * 100))
    b, _ = js.submit(drop(js, "b.mp4", b"b" * 100))
    js.begin(a)
    js.set_phase(a, "rendering", "rendering")
    b.attempts = 2
    js.begin(b)  # third attempt interrupted too
    # the index lost the last write (crash between state.json and the database)
    js.conn.execute("UPDATE jobs SET state = 'queued' WHERE id = ?", (a.id,))
    requeued = js.recover()
    assert [j.id for j in requeued] == [a.id]
    a2, b2 = js.get(a.id), js.get(b.id)
    assert a2.state == "queued" and a2.attempts == 1  # the next run is attempt 2
    assert b2.state == "failed" and b2.reason_code == "interrupted"
    assert js.next_ready().id == a.id


def test_recover_kills_the_orphaned_child_group(js: JobStore) -> None:
    job, _ = js.submit(drop(js, "a.mp4", b"a" * 100))
    js.begin(job)
    # a "child" that outlived a kill -9 of the daemon, with a grandchild in its group
    proc = subprocess.Popen(["sh", "-c", "sleep 60 & exec sleep 60"], start_new_session=True,
                            env={**os.environ, "AUTOCLIP_JOB": job.id})
    other = subprocess.Popen(["sleep", "60"], start_new_session=True)  # not ours: must survive
    try:
        job.child = {"pid": proc.pid, "pgid": proc.pid}
        js.save(job)
        time.sleep(0.2)
        assert not kill_orphan(other.pid, job.id)  # the marker does not match: never kill a stranger
        js.recover()
        assert proc.wait(5) == -signal.SIGKILL
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()


def test_run_child_timeout_kills_the_whole_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "grandchild.pid"
    code = f"import subprocess,time; p=subprocess.Popen(['sleep','60']); open({str(pidfile)!r},'w').write(str(p.pid)); time.sleep(60)"
    res = run_child([sys.executable, "-c", code], env=dict(os.environ), log_path=tmp_path / "log.txt", timeout=1.5,
                    stop=threading.Event(), stop_timeout=1.0)
    assert res.timed_out and res.rc is not None and res.rc < 0
    grandchild = int(pidfile.read_text())
    time.sleep(0.2)
    assert not Path(f"/proc/{grandchild}").exists() or "Z" in Path(f"/proc/{grandchild}/stat").read_text().split()[2]


def test_run_child_collects_json_and_stderr(tmp_path: Path) -> None:
    code = "import sys,json; print('progress 50%', file=sys.stderr); print(json.dumps({'reel': 'r.mp4'}))"
    lines = []
    res = run_child([sys.executable, "-c", code], env=dict(os.environ), log_path=tmp_path / "log.txt", timeout=30,
                    stop=threading.Event(), stop_timeout=1.0, on_line=lines.append)
    assert res.rc == 0 and res.json() == {"reel": "r.mp4"} and lines == ["progress 50%"]
    assert "progress 50%" in (tmp_path / "log.txt").read_text()


def test_a_name_that_is_not_utf8_is_renamed_not_stored(js: JobStore) -> None:
    inbox = js.cfg.path("inbox")
    raw = os.path.join(os.fsencode(inbox), b"caf\xe9 stream.mp4")  # Latin-1 bytes from an old tool
    with open(raw, "wb") as f:
        f.write(b"v" * 100)
    [path] = list(inbox.iterdir())
    job, outcome = intake(js, Candidate(path, os.lstat(path)))
    assert job is None and outcome == "renamed"
    assert [p.name for p in inbox.iterdir()] == ["caf_ stream.mp4"]
    assert js.counts()["queued"] == 0


@pytest.mark.expect_errors(r"^failed \(")  # a job failed for good is logged as an ERROR
def test_retry_moves_a_failed_file_back_with_fresh_attempts(js: JobStore, capsys) -> None:
    from autoclip import cli

    sub = js.cfg.path("inbox") / "sub"
    sub.mkdir()
    job, _ = js.submit(drop(js, "sub/v.mp4", b"v" * 100))
    for _ in range(3):
        js.begin(job)
        js.fail(job, "timeout", "processing took longer than its 300 s timeout", retry=True)
        job.next_try = 0
    assert job.state == "failed" and (js.cfg.path("failed") / "v.mp4.reason.json").exists()
    cfg_file = js.cfg.root / "config.toml"
    cfg_file.write_text("[daemon]\nbackoff = 10.0\nmax_attempts = 3\n")
    assert cli.main(["--config", str(cfg_file), "retry", "v.mp4"]) == 0
    assert "moved v.mp4 back to" in capsys.readouterr().out
    back = sub / "v.mp4"  # where it was found
    assert back.exists() and not (js.cfg.path("failed") / "v.mp4").exists()
    assert not (js.cfg.path("failed") / "v.mp4.reason.json").exists()
    again, outcome = js.submit(Candidate(back, os.lstat(back)))
    assert outcome == "retry" and again.id == job.id and again.attempts == 0 and js.next_ready().id == job.id
    assert cli.main(["--config", str(cfg_file), "retry", "v.mp4"]) == 1  # not failed any more
    assert "no failed file named 'v.mp4'" in capsys.readouterr().err
