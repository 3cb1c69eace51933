"""RELIABILITY.md items that no other test module covered (see the README's "Reliability" table).

Each test names its item number. Real files, real ffmpeg/ffprobe, real SQLite and real child
processes throughout; where something stands in for the real world it says so (a datagram socket
for systemd, a script that never returns for a hung ffprobe).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from test_media import first_per_bin, packet_times
from waiting import wait_for

from autoclip import cli, config, media, render, store
from autoclip.child import run_child
from autoclip.daemon import HEARTBEAT_LIMIT, Daemon, Worker, intake
from autoclip.errors import MediaError
from autoclip.fsutil import NAME_MAX, TMP_PREFIX
from autoclip.jobs import JobStore, new_job_id
from autoclip.selection import Segment
from autoclip.watcher import Candidate, InboxFilter, InboxWatcher

# --------------------------------------------------------------------------------------------
# helpers and media
# --------------------------------------------------------------------------------------------


def deployment(root: Path, text: str = "") -> tuple[Path, config.Config]:
    """``root/config.toml`` holding ``text``, loaded, with its folders made."""
    root.mkdir(parents=True, exist_ok=True)
    path = root / "config.toml"
    path.write_text(text)
    cfg = config.load(path)
    cfg.ensure_dirs()
    return path, cfg


def drop(cfg: config.Config, name: str, data: bytes) -> Candidate:
    p = cfg.path("inbox") / name
    p.write_bytes(data)
    return Candidate(p, os.lstat(p))


def gone(pid: int) -> bool:
    """The process has exited (a zombie waiting for a reaper counts as gone)."""
    stat_file = Path(f"/proc/{pid}/stat")
    try:
        return stat_file.read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("gaps")


@pytest.fixture(scope="module")
def mkv(folder: Path, run_ffmpeg) -> Path:
    """6 s of 320x180 H.264 + AAC in Matroska (the first half of it still passes ffprobe)."""
    path = folder / "whole.mkv"
    run_ffmpeg("-f", "lavfi", "-i", "testsrc2=size=320x180:rate=30:duration=6", "-f", "lavfi",
               "-i", "sine=frequency=440:duration=6", "-c:v", "libx264", "-preset", "ultrafast",
               "-c:a", "aac", str(path))
    return path


# --------------------------------------------------------------------------------------------
# 2. stalled writer: deferred, not failed
# --------------------------------------------------------------------------------------------


def test_item2_a_stalled_copy_is_deferred_not_failed_and_taken_once_complete(tmp_path: Path, mkv: Path) -> None:
    cfg_path, cfg = deployment(tmp_path / "deploy", "[daemon]\nmax_attempts = 3\nbackoff = 30.0\n")
    conn = store.connect(cfg.path("database"))
    try:
        jobs = JobStore(cfg, conn)
        worker = Worker(cfg, cfg_path, threading.Event(), threading.Event())
        worker.jobs = jobs
        data = mkv.read_bytes()
        path = cfg.path("inbox") / "stream.mkv"
        with open(path, "wb") as writer:
            writer.write(data[: len(data) // 2])  # the copy stalls half way, quiet long enough to be handed on
            writer.flush()
            job, outcome = intake(jobs, Candidate(path, os.lstat(path)))
            assert outcome == "new"
            jobs.begin(job)
            t = store.now()
            assert worker._check(job) is False  # the real `autoclip check` child sees a truncated file
            held = jobs.get(job.id)
            assert held.state == "queued" and held.reason_code == "truncated" and held.next_try >= t + 29
            assert path.exists() and not any(cfg.path("failed").iterdir())  # deferred, not failed
            writer.write(data[len(data) // 2:])  # the writer resumes and finishes
        again, outcome = intake(jobs, Candidate(path, os.lstat(path)))  # the watcher hands on the new version
        assert outcome == "updated" and again.id == job.id and again.attempts == 0 and again.next_try == 0
        jobs.begin(again)
        assert worker._check(again) is True
        assert again.duration == pytest.approx(6.0, abs=0.1) and jobs.get(job.id).state == "scoring"
        assert sum(jobs.counts().values()) == 1
    finally:
        conn.close()


# --------------------------------------------------------------------------------------------
# 7. one file, many sightings: the startup scan after a restart
# --------------------------------------------------------------------------------------------


def test_item7_a_restarts_startup_scan_of_a_queued_file_gives_no_second_job(tmp_path: Path) -> None:
    _, cfg = deployment(tmp_path / "deploy")
    inbox = cfg.path("inbox")
    vod = inbox / "vod.mp4"
    vod.write_bytes(os.urandom(50_000))

    def one_life(poke: bool) -> list[str]:
        """One daemon lifetime: its own database connection and watcher (startup scan, inotify
        events, rescans), intake as the daemon does it."""
        holder: dict[str, JobStore] = {}
        outcomes: list[str] = []

        def on_ready(cand: Candidate) -> bool:
            if "jobs" not in holder:
                holder["jobs"] = JobStore(cfg, store.connect(cfg.path("database")))
            outcomes.append(intake(holder["jobs"], cand)[1])
            return True

        stop = threading.Event()
        watcher = InboxWatcher(InboxFilter(inbox, [".mp4"]), stable=0.3, rescan=0.5, polling=False,
                               on_ready=on_ready, stop=stop)
        watcher.step()  # the startup scan, as Daemon.start_watcher runs it
        thread = threading.Thread(target=watcher.run, daemon=True)
        thread.start()
        if poke:
            time.sleep(0.5)
            with open(vod, "ab"):  # a `closed` event (IN_CLOSE_WRITE), no change to the file
                pass
        time.sleep(2.0)  # the stability window and several rescans
        stop.set()
        thread.join(5)
        assert not thread.is_alive()
        if "jobs" in holder:
            holder["jobs"].conn.close()
        return outcomes

    assert one_life(poke=False) == ["new"]
    assert one_life(poke=True) == ["known"]  # the restart sees the same file version: no new job
    conn = store.connect(cfg.path("database"))
    try:
        assert conn.execute("SELECT COUNT(*) FROM jobs").fetchone()[0] == 1
    finally:
        conn.close()


# --------------------------------------------------------------------------------------------
# 11. temp files of a killed run are cleaned at start
# --------------------------------------------------------------------------------------------


def test_item11_startup_removes_leftover_temporary_files_and_nothing_else(tmp_path: Path) -> None:
    _, cfg = deployment(tmp_path / "deploy")
    reels, jobs_dir, models = cfg.path("reels"), cfg.path("jobs"), cfg.path("models")
    leftovers = [
        reels / f"{TMP_PREFIX}k2j3.json",                       # a segments file half written
        reels / f"{TMP_PREFIX}work1" / "clip-001.mp4",          # a render's work folder
        jobs_dir / "j1" / f"{TMP_PREFIX}state.json",            # a job record being replaced
        models / f"{TMP_PREFIX}m-0002" / "weights.safetensors",  # a model being saved
        cfg.path("failed") / f"{TMP_PREFIX}x.reason.json",
    ]
    kept = [reels / "stream-job1.mp4", jobs_dir / "j1" / "state.json", models / "m-0001" / "model.json",
            cfg.path("inbox") / "stream.mp4"]
    for p in leftovers + kept:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")
    Daemon(cfg, None).init_clean()  # the daemon's start-up step (before recovery requeues jobs)
    for root in (reels, jobs_dir, models, cfg.path("failed")):
        assert not list(root.rglob(f"{TMP_PREFIX}*")), root
    assert all(p.exists() for p in kept)


# --------------------------------------------------------------------------------------------
# 12. poison file: a child that crashes every time
# --------------------------------------------------------------------------------------------

SEGFAULT = ("import os, resource, signal; resource.setrlimit(resource.RLIMIT_CORE, (0, 0)); "
            "os.kill(os.getpid(), signal.SIGSEGV)")


@pytest.mark.expect_errors(r"^failed \(crashed\): poison\.mp4")  # failing it for good is the point
def test_item12_a_file_whose_child_crashes_every_time_fails_after_max_attempts_and_others_go_first(
        tmp_path: Path) -> None:
    cfg_path, cfg = deployment(tmp_path / "deploy", "[daemon]\nmax_attempts = 3\nbackoff = 10.0\n")
    conn = store.connect(cfg.path("database"))
    try:
        jobs = JobStore(cfg, conn)
        worker = Worker(cfg, cfg_path, threading.Event(), threading.Event())
        worker.jobs = jobs
        poison, _ = jobs.submit(drop(cfg, "poison.mp4", b"p" * 1000))
        other, _ = jobs.submit(drop(cfg, "other.mp4", b"o" * 1000))
        delays = []
        for attempt in (1, 2, 3):
            assert jobs.next_ready().id == poison.id
            jobs.begin(poison)
            res = run_child([sys.executable, "-c", SEGFAULT], env=dict(os.environ),
                            log_path=jobs.job_dir(poison.id) / "log.txt", timeout=30, stop=threading.Event(),
                            stop_timeout=1.0)
            assert res.rc == -signal.SIGSEGV and res.outcome is None
            t = store.now()
            worker._finish(poison, res)  # how the daemon judges the process child's end
            if attempt < 3:
                assert poison.state == "queued" and poison.reason_code == "crashed"
                delays.append(poison.next_try - t)
                assert jobs.next_ready().id == other.id  # the other file is not held up meanwhile
                poison.next_try = 0.0  # pretend the backoff has passed
                jobs.save(poison)
        assert delays == pytest.approx([10.0, 20.0], abs=0.5)
        assert jobs.get(poison.id).state == "failed"
        failed = cfg.path("failed")
        reason = json.loads((failed / "poison.mp4.reason.json").read_text())
        assert reason["code"] == "crashed" and reason["attempts"] == 3 and "SIGSEGV" in reason["reason"]
        assert (failed / "poison.mp4").exists() and not (cfg.path("inbox") / "poison.mp4").exists()
        assert jobs.next_ready().id == other.id and jobs.get(other.id).state == "queued"
    finally:
        conn.close()


# --------------------------------------------------------------------------------------------
# 14. liveness: watchdog pings stop when a thread is dead or hung
# --------------------------------------------------------------------------------------------


@pytest.mark.expect_errors(r"^unhealthy: ")  # said every tick while unhealthy
def test_item14_watchdog_pings_stop_when_the_worker_hangs_and_the_daemon_exits_when_a_thread_dies(
        cfg: config.Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """systemd stands in as a datagram socket at $NOTIFY_SOCKET; the real supervise loop runs."""
    sock_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.settimeout(0.1)
    got: list[str] = []
    done = threading.Event()

    def receive() -> None:
        while not done.is_set():
            try:
                got.append(sock.recv(4096).decode())
            except TimeoutError:
                continue
            except OSError:
                return

    monkeypatch.setenv("NOTIFY_SOCKET", str(sock_path))
    monkeypatch.setenv("WATCHDOG_USEC", "300000")  # WatchdogSec=0.3: a health check every 0.1 s
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    d = Daemon(cfg, None)
    park = threading.Event()
    alive = threading.Thread(target=park.wait, daemon=True)
    alive.start()
    d.threads = {"watcher": alive, "worker": alive}
    d.worker = Worker(cfg, None, d.stop, d.wake)
    receiver = threading.Thread(target=receive, daemon=True)
    supervisor = threading.Thread(target=d.supervise, daemon=True)
    receiver.start()
    supervisor.start()

    def pings() -> int:
        return sum(m == "WATCHDOG=1" for m in list(got))

    try:
        assert wait_for(lambda: pings() >= 3, 5), got  # healthy: pinging
        d.worker.heartbeat = time.monotonic() - HEARTBEAT_LIMIT - 1  # the worker stops making progress
        time.sleep(0.3)
        before = pings()
        time.sleep(1.0)
        assert pings() == before, "pings went on while the worker was hung"
        assert supervisor.is_alive()  # a hung worker: systemd's watchdog does the restart
        dead = threading.Thread(target=lambda: None)
        dead.start()
        dead.join()
        d.threads["watcher"] = dead  # the watcher thread dies
        supervisor.join(5)
        assert not supervisor.is_alive() and d.exit_code == 1 and d.stop.is_set()  # exit 1: Restart=on-failure
        assert pings() == before
    finally:
        d.stop.set()
        park.set()
        done.set()
        supervisor.join(5)
        receiver.join(5)
        sock.close()


# --------------------------------------------------------------------------------------------
# 16. inbox disappears: paused, and it says so
# --------------------------------------------------------------------------------------------


def test_item16_a_missing_inbox_is_said_once_shown_in_status_and_fails_nothing(tmp_path: Path, caplog) -> None:
    _, cfg = deployment(tmp_path / "deploy")
    inbox = cfg.path("inbox")
    conn = store.connect(cfg.path("database"))
    d = Daemon(cfg, None)
    d.watcher = InboxWatcher(InboxFilter(inbox, [".mp4"]), stable=0.2, rescan=60.0, polling=True,
                             on_ready=lambda cand: True, stop=d.stop)
    d.worker = Worker(cfg, None, d.stop, d.wake)
    try:
        jobs = JobStore(cfg, conn)
        job, _ = jobs.submit(drop(cfg, "waiting.mp4", b"w" * 1000))  # a job still in the queue
        d.watcher.step()
        away = inbox.with_name("unmounted")
        inbox.rename(away)  # the share goes away
        with caplog.at_level("INFO", logger="autoclip.watcher"):
            for _ in range(3):
                d.watcher.step()
            assert d.watcher.paused and d.status_text() == "paused: inbox missing"
            assert d.worker._next() is None  # the worker takes nothing while the inbox is gone
            away.rename(inbox)  # and comes back
            for _ in range(2):
                d.watcher.step()
        said = [r.getMessage() for r in caplog.records if r.name == "autoclip.watcher"]
        assert sum("is missing" in m and "paused; nothing is deleted" in m for m in said) == 1, said
        assert sum("is back: resuming" in m for m in said) == 1, said
        assert not d.watcher.paused and d.status_text() == "idle"
        assert jobs.get(job.id).state == "queued" and (inbox / "waiting.mp4").exists()
    finally:
        d.watcher._stop_observer()
        conn.close()


# --------------------------------------------------------------------------------------------
# 17. hung ffmpeg: the per-job timeout is factor x duration + base, and kills the group
# --------------------------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_item17_a_hung_ffprobe_is_killed_with_its_group_at_factor_x_duration_plus_base(tmp_path: Path) -> None:
    pidfile = tmp_path / "hung.pid"
    hung = tmp_path / "hung-ffprobe"  # stands in for an ffprobe/ffmpeg that never returns
    hung.write_text(f"#!/bin/sh\necho $$ > '{pidfile}'\nexec sleep 600\n")
    hung.chmod(0o755)
    cfg_path, cfg = deployment(tmp_path / "deploy", f'[media]\nffprobe = "{hung}"\n'
                               "[daemon]\ntimeout_factor = 0.5\ntimeout_base = 2.0\nbackoff = 5.0\n")
    conn = store.connect(cfg.path("database"))
    try:
        jobs = JobStore(cfg, conn)
        worker = Worker(cfg, cfg_path, threading.Event(), threading.Event())
        worker.jobs = jobs
        job, _ = jobs.submit(drop(cfg, "v.mp4", b"v" * 1000))
        jobs.begin(job)
        job.duration = 4.0  # what the completeness check measured: timeout 0.5 x 4 s + 2 s = 4 s
        t0 = time.monotonic()
        worker._process(job)  # the real `autoclip process` child, whose ffprobe never returns
        took = time.monotonic() - t0
        assert 4.0 <= took < 4.0 + 5.0, took
        saved = jobs.get(job.id)
        assert saved.state == "queued" and saved.reason_code == "timeout"  # retried later
        assert "longer than its 4 s timeout" in saved.error
        pid = int(pidfile.read_text())
        assert wait_for(lambda: gone(pid), 5), "the hung tool outlived its job"
    finally:
        conn.close()


# --------------------------------------------------------------------------------------------
# 22. odd streams: a 0.5 s file and a many-hour file
# --------------------------------------------------------------------------------------------

PROCESS_CONFIG = """
[frames]
size = 32
fps = {fps}
[model]
threads = 1
kind = "audio"
[render]
height = 180
preset = "ultrafast"
[shorts]
count = 0
[selection]
threshold = 0.01
low_threshold = 0.01
max_length = 6.0
smooth = 1.0
"""


def process(capsys: pytest.CaptureFixture[str], cfg_path: Path, vod: Path) -> dict:
    rc = cli.main(["--config", str(cfg_path), "process", "--json", "--", str(vod)])
    out = capsys.readouterr()
    assert rc == 0, out.err[-2000:]
    return json.loads(out.out)


@pytest.fixture(scope="module")
def three_hours(folder: Path, run_ffmpeg) -> Path:
    """3 hours of video at one frame a second (64x36, no audio): a many-hour VOD made in seconds."""
    path = folder / "marathon.mkv"
    run_ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x36:rate=1:duration=10800", "-c:v", "libx264",
               "-preset", "ultrafast", "-g", "300", str(path))
    return path


def test_item22_a_half_second_vod_ends_with_an_explicit_no_reel(tmp_path: Path, run_ffmpeg, install_untrained_model,
                                                                 capsys, caplog) -> None:
    vod = tmp_path / "blip.mp4"
    run_ffmpeg("-f", "lavfi", "-i", "testsrc2=size=320x180:rate=30:duration=0.5", "-f", "lavfi",
               "-i", "sine=frequency=440:duration=0.5", "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", str(vod))
    assert media.probe(vod).duration == pytest.approx(0.5, abs=0.1)
    cfg_path, _ = deployment(tmp_path / "deploy", PROCESS_CONFIG.format(fps=4))
    install_untrained_model(cfg_path)
    with caplog.at_level("INFO"):
        res = process(capsys, cfg_path, vod)
    assert res["reel"] is None and res["segments"] == []
    assert json.loads(Path(res["segments_file"]).read_text())["segments"] == []
    assert "no highlights found in blip.mp4" in caplog.text


def test_item22_a_three_hour_vod_keeps_presentation_times_to_its_end(three_hours: Path) -> None:
    info = media.probe(three_hours)
    assert info.duration == pytest.approx(10800.0, abs=0.5)
    media.check_complete(three_hours, info)
    times = np.concatenate([b.times for b in media.iter_frames(three_hours, fps=4, size=16, info=info, batch=512)])
    assert len(times) == 10800 and times[-1] > 10798
    np.testing.assert_allclose(times, first_per_bin(packet_times(three_hours), 4.0), atol=1e-6)
    late = np.concatenate([b.times for b in media.iter_frames(three_hours, fps=4, size=16, info=info,
                                                               start=10750.0, end=10760.0)])
    np.testing.assert_array_equal(late, times[(times >= 10750.0) & (times < 10760.0)])  # a seek 3 h in


def test_item22_a_three_hour_vod_gives_a_reel(three_hours: Path, tmp_path: Path, install_untrained_model,
                                              capsys) -> None:
    cfg_path, _ = deployment(tmp_path / "deploy", PROCESS_CONFIG.format(fps=0.25))
    install_untrained_model(cfg_path)
    res = process(capsys, cfg_path, three_hours)
    assert res["reel"] and Path(res["reel"]).exists() and res["segments"]
    assert all(0.0 <= s["start"] < s["end"] <= 10800.0 for s in res["segments"])
    total = sum(s["end"] - s["start"] for s in res["segments"])
    assert media.probe(res["reel"]).duration == pytest.approx(total, abs=1.0 * len(res["segments"]))


# --------------------------------------------------------------------------------------------
# 23. corruption mid-file: never a crash
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def whole(folder: Path, run_ffmpeg) -> dict[str, Path]:
    out = {}
    for ext in (".mp4", ".mkv"):
        out[ext] = folder / f"ten{ext}"
        run_ffmpeg("-f", "lavfi", "-i", "testsrc2=size=320x180:rate=30:duration=10", "-f", "lavfi",
                   "-i", "sine=frequency=440:duration=10", "-c:v", "libx264", "-preset", "ultrafast", "-g", "30",
                   "-c:a", "aac", str(out[ext]))
    return out


def damage(data: bytes, how: str) -> bytes:
    rng = np.random.default_rng(1)
    out, n = bytearray(data), len(data)
    if how == "hole":  # the middle 30 % of the file overwritten with random bytes
        a, b = n * 35 // 100, n * 65 // 100
        out[a:b] = rng.bytes(b - a)
    else:  # "scattered": 500 random bytes every 20 kB after the first 10 %
        for a in range(n // 10, n - 1000, 20_000):
            out[a:a + 500] = rng.bytes(500)
    return bytes(out)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("how", ["hole", "scattered"])
@pytest.mark.parametrize("ext", [".mp4", ".mkv"])
def test_item23_damage_mid_file_is_decoded_around_or_refused_as_corrupt_never_a_crash(
        whole: dict[str, Path], ext: str, how: str, tmp_path: Path, capsys, monkeypatch) -> None:
    path = tmp_path / f"damaged{ext}"
    path.write_bytes(damage(whole[ext].read_bytes(), how))
    try:
        info = media.probe(path)
        media.check_complete(path, info)
        times = np.concatenate([b.times for b in media.iter_frames(path, fps=4, size=16, info=info)])
        audio = media.read_audio(path, sample_rate=16000)
    except MediaError as err:  # refused: with a reason code, on one line
        assert err.code in ("corrupt", "truncated") and "\n" not in str(err)
    else:  # decoded around the damage: what came out is on the file's own timeline
        assert len(times) > 0 and np.all(np.diff(times) > 0) and 0.0 <= times[0] and times[-1] <= info.duration
        assert len(audio) <= (info.duration + 0.1) * 16000
    monkeypatch.chdir(tmp_path)  # no ./config.toml: built-in defaults
    rc = cli.main(["check", "--json", str(path)])  # what the daemon's check child runs
    data = json.loads(capsys.readouterr().out)
    assert rc in (0, 1) and data["ok"] == (rc == 0)
    assert data["ok"] or data["code"] in ("corrupt", "truncated")


# --------------------------------------------------------------------------------------------
# 24. hostile names: 255 bytes
# --------------------------------------------------------------------------------------------

LONG_NAMES = {
    "ascii": "a" * 251 + ".mp4",                                # 255 bytes
    "multibyte": "ス" * 83 + ".mp4",                            # 83 three-byte characters: 253 bytes
}


@pytest.mark.parametrize("kind", ["ascii", "multibyte"])
def test_item24_a_255_byte_name_gives_a_reel_named_from_the_job_id(kind: str, mkv: Path, tmp_path: Path) -> None:
    name = LONG_NAMES[kind]
    assert 250 <= len(name.encode()) <= 255
    vod = tmp_path / name
    shutil.copyfile(mkv, vod)
    cfg = config.from_dict({"render": {"height": 180, "preset": "ultrafast"}, "shorts": {"count": 0}},
                           root=tmp_path / "deploy")
    cfg.ensure_dirs()
    info = media.probe(vod)
    job_id = new_job_id()
    res = render.render_reel(vod, [Segment(1.0, 3.0, 0.9, 2.0)], cfg, name=render.reel_name(vod, job_id),
                             src_fps=info.fps, src_height=info.height, has_audio=info.has_audio)
    assert res.reel.exists() and res.reel.name.endswith(f"-{job_id}.mp4")
    assert media.probe(res.reel).duration == pytest.approx(2.0, abs=0.2)
    assert all(len(p.name.encode()) <= 255 for p in cfg.path("reels").iterdir())


def test_item24_every_name_made_from_a_reel_name_fits_255_bytes(tmp_path: Path) -> None:
    worst = render.reel_name("ス" * 200 + "a" * 200 + ".mkv", "x" * 100)
    assert worst.endswith("-" + "x" * 24)
    names = [p.name for p in render._outputs(tmp_path, worst).values()]
    names += [f"{TMP_PREFIX}old-{n}" for n in names]  # _publish_dir, replacing an earlier folder
    assert max(len(n.encode()) for n in names) <= NAME_MAX
    assert render.safe_name("スa" * 60, 80) == "スa" * 20  # 80 bytes: a character is never split


@pytest.mark.parametrize("kind", ["ascii", "multibyte"])
@pytest.mark.expect_errors(r"\(not_media\)")
def test_item24_a_failed_255_byte_name_still_gets_its_reason_file(kind: str, tmp_path: Path, capsys) -> None:
    path, cfg = deployment(tmp_path / "deploy")
    conn = store.connect(cfg.path("database"))
    failed, name = cfg.path("failed"), LONG_NAMES[kind]
    try:
        jobs = JobStore(cfg, conn)
        for _ in range(2):  # the second time its shortened name is taken: another one, still unique
            job, _ = jobs.submit(drop(cfg, name, os.urandom(200)))
            jobs.begin(job)
            assert jobs.fail(job, "not_media", "not a video", retry=False) == "failed"
    finally:
        conn.close()
    moved = sorted(p for p in failed.iterdir() if not p.name.endswith(".reason.json"))
    assert len(moved) == 2 and all(p.suffix == ".mp4" and len(p.name.encode()) <= 243 for p in moved)
    for p in moved:  # each beside its reason file, which keeps the original name
        reason = json.loads((failed / f"{p.name}.reason.json").read_text())
        assert reason["file"] == name and reason["moved_to"] == str(p)
    assert cli.main(["--config", str(path), "status", "--json"]) == 0  # lists the names in the failed folder
    listed = [f["name"] for f in json.loads(capsys.readouterr().out)["failures"]]
    assert sorted(listed) == [p.name for p in moved]
    assert cli.main(["--config", str(path), "retry", moved[0].name]) == 0  # back under its original name
    assert (cfg.path("inbox") / name).exists() and not moved[0].exists()
    assert not (failed / f"{moved[0].name}.reason.json").exists() and (failed / f"{moved[1].name}.reason.json").exists()
