"""The real daemon in a subprocess on a temporary deployment made by `autoclip init`.

Intake tests run a daemon with no model yet (jobs wait in the queue, nothing is decoded), so
they are quick; the reel, failure and SIGTERM tests add an untrained registry model and tiny
generated VODs (320x180, a few seconds).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import waiting

from autoclip import synth
from autoclip.daemon import health_problems

DAEMON_CONFIG = """
[frames]
size = 32
fps = 2
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
[daemon]
stable = 1.0
rescan = 2.0
backoff = 0.5
max_attempts = 2
stop_timeout = 5.0
timeout_base = 120.0
[retrain]
enabled = false
"""


def make_deployment(root: Path, extra: str = "") -> Path:
    subprocess.run([sys.executable, "-m", "autoclip", "init", str(root)], check=True, capture_output=True)
    cfg = root / "config.toml"
    cfg.write_text(DAEMON_CONFIG + extra)
    return cfg


class Daemon:
    """`autoclip daemon` as a child process, plus what the tests read from its deployment."""

    def __init__(self, cfg: Path, env: dict[str, str] | None = None) -> None:
        self.cfg = cfg
        self.root = cfg.parent
        self.inbox = self.root / "data" / "inbox"
        self.log = self.root / "daemon.log"
        self.proc = subprocess.Popen([sys.executable, "-m", "autoclip", "--config", str(cfg), "daemon"],
                                     stdout=subprocess.DEVNULL, stderr=open(self.log, "ab"),
                                     env={**os.environ, **(env or {})})
        assert wait_for(lambda: "watching" in self.text() or self.proc.poll() is not None, 30), self.text()
        assert self.proc.poll() is None, self.text()

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def jobs(self) -> list[dict]:
        conn = sqlite3.connect(self.root / "data" / "autoclip.db")
        conn.row_factory = sqlite3.Row
        try:
            return [dict(r) for r in conn.execute("SELECT * FROM jobs ORDER BY created")]
        finally:
            conn.close()

    def by_name(self) -> dict[str, dict]:
        return {Path(j["source"]).name: j for j in self.jobs()}

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def wait_for(pred, timeout: float = 30.0, every: float = 0.2) -> bool:
    """Polls less often than the shared helper by default: a poll here often reads the job list."""
    return waiting.wait_for(pred, timeout, every)


@pytest.fixture(scope="module")
def vod_bytes(tmp_path_factory) -> bytes:
    folder = tmp_path_factory.mktemp("src")
    return synth.make_vod(folder / "src.mp4", 4, [synth.Event(1.0, 3.0, "highlight")]).path.read_bytes()


def unique(data: bytes, tag: str) -> bytes:
    """The same playable VOD with a different fingerprint (trailing bytes after the last atom)."""
    return data + tag.encode().ljust(64, b"\0")


@pytest.fixture(scope="module")
def intake_daemon(tmp_path_factory):
    """One daemon, no model: jobs are only queued (their files stay in the inbox)."""
    cfg = make_deployment(tmp_path_factory.mktemp("intake"))
    d = Daemon(cfg)
    yield d
    assert d.stop() == 0, d.text()


def test_slow_writer_gives_one_job_after_writing_stops(intake_daemon, vod_bytes) -> None:
    d, data = intake_daemon, unique(vod_bytes, "slow")
    step = len(data) // 10 + 1
    with open(d.inbox / "slow.mp4", "wb") as f:
        for i in range(0, len(data), step):  # about 3 s of writing, well over the 1 s window
            f.write(data[i:i + step])
            f.flush()
            time.sleep(0.3)
            assert "slow.mp4" not in d.by_name()
    assert wait_for(lambda: "slow.mp4" in d.by_name(), 15)
    time.sleep(3)  # events, closes and two rescans later: still one job
    jobs = [j for j in d.jobs() if j["source"].endswith("slow.mp4")]
    assert len(jobs) == 1 and jobs[0]["state"] == "queued" and jobs[0]["size"] == len(data)


def test_rename_in_and_move_in_each_give_one_job(intake_daemon, vod_bytes, tmp_path) -> None:
    d = intake_daemon
    part = d.inbox / "renamed.mp4.part"
    part.write_bytes(unique(vod_bytes, "renamed"))
    outside = tmp_path / "moved.mp4"
    outside.write_bytes(unique(vod_bytes, "moved"))
    time.sleep(1.5)
    part.rename(d.inbox / "renamed.mp4")
    shutil.move(str(outside), d.inbox / "moved.mp4")
    assert wait_for(lambda: {"renamed.mp4", "moved.mp4"} <= set(d.by_name()), 15)
    time.sleep(3)
    names = [Path(j["source"]).name for j in d.jobs()]
    assert names.count("renamed.mp4") == 1 and names.count("moved.mp4") == 1
    assert "renamed.mp4.part" not in names


def test_partial_names_give_no_job(intake_daemon, vod_bytes) -> None:
    d = intake_daemon
    junk = ["p.mp4.part", "p.mp4.ytdl", "p.mp4.part-Frag3", "p.f137.mp4", "p.temp.mp4", "p.mp4.partial",
            "p.mp4.partial~", "p.mp4.crdownload", "p.mp4.!qB", ".syncthing.p.mp4.tmp", "~syncthing~p.mp4.tmp",
            "p.sync-conflict-20240101-000000-ABC.mp4", "._p.mp4", ".nfs0001", ".p.mp4", ".autoclip-tmp-p.mp4"]
    for i, name in enumerate(junk):
        (d.inbox / name).write_bytes(unique(vod_bytes, f"junk{i}"))
    for folder in (".stversions", "_UNPACK_p"):
        (d.inbox / folder).mkdir()
        (d.inbox / folder / "p.mp4").write_bytes(unique(vod_bytes, folder))
    before = len(d.jobs())
    time.sleep(4.5)  # two rescans and the stability window
    assert len(d.jobs()) == before
    for name in junk:  # not ignored in silence: each said once, however many rescans saw it
        assert d.text().count(f": {name} in the inbox: ") == (0 if name.startswith(".autoclip-tmp-") else 1), name
    for folder in (".stversions", "_UNPACK_p"):
        assert d.text().count(f": {folder} in the inbox: ") == 1
    (d.inbox / "p.mp4.part").rename(d.inbox / "p.mp4")  # the download finishes: one job
    assert wait_for(lambda: "p.mp4" in d.by_name(), 15)


def test_duplicate_gives_no_job(intake_daemon, vod_bytes) -> None:
    d = intake_daemon
    data = unique(vod_bytes, "dup")
    (d.inbox / "original.mp4").write_bytes(data)
    assert wait_for(lambda: "original.mp4" in d.by_name(), 15)
    (d.inbox / "copy of original.mp4").write_bytes(data)
    assert wait_for(lambda: "copy of original.mp4" in d.by_name(), 15)
    dup = d.by_name()["copy of original.mp4"]
    assert dup["state"] == "duplicate" and dup["duplicate_of"] == d.by_name()["original.mp4"]["id"]
    assert "duplicate" in d.text()


def test_fifo_folder_and_symlink_out_of_the_inbox_fail_cleanly(intake_daemon, tmp_path) -> None:
    d = intake_daemon
    secret = tmp_path / "secret.mp4"
    secret.write_bytes(b"outside the inbox")
    os.mkfifo(d.inbox / "fifo.mp4")
    (d.inbox / "folder.mp4").mkdir()
    (d.inbox / "link.mp4").symlink_to(secret)
    failed = d.root / "data" / "failed"
    names = ("fifo.mp4", "folder.mp4", "link.mp4")
    assert wait_for(lambda: all((failed / f"{n}.reason.json").exists() for n in names), 15), d.text()
    codes = {n: json.loads((failed / f"{n}.reason.json").read_text())["code"] for n in names}
    assert codes == {"fifo.mp4": "not_file", "folder.mp4": "not_file", "link.mp4": "symlink"}
    assert secret.read_bytes() == b"outside the inbox"
    assert d.proc.poll() is None


def cli_run(d: Daemon, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "autoclip", "--config", str(d.cfg), *args],
                          capture_output=True, text=True)


def test_status_json_reports_the_queue(intake_daemon) -> None:
    d = intake_daemon
    st = json.loads(cli_run(d, "status", "--json").stdout)
    assert st["daemon"]["running"] and st["daemon"]["pid"] == d.proc.pid
    assert st["queue"]["queued"] >= 3 and st["running"] is None and st["model"] is None
    assert st["review_backlog"] == 0 and st["retrain"]["enabled"] is False
    failures = {f["name"]: f for f in st["failures"]}
    assert {f["code"] for f in failures.values()} >= {"not_file", "symlink"}
    assert "autoclip retry link.mp4" not in failures["fifo.mp4"]["hint"] and "remove" in failures["fifo.mp4"]["hint"]
    assert "copy or move the file itself" in failures["link.mp4"]["hint"]
    text = cli_run(d, "status").stdout
    assert "failed    link.mp4 (symlink): link.mp4: symbolic links are not followed" in text
    assert "-> copy or move the file itself into the inbox" in text


def test_a_file_the_daemon_will_not_take_is_said_once_and_counted(intake_daemon, run_ffmpeg, tmp_path) -> None:
    d = intake_daemon
    audio = tmp_path / "podcast.m4a"  # audio only, an extension outside daemon.extensions
    run_ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:duration=2", "-c:a", "aac", str(audio))
    shutil.move(str(audio), d.inbox / audio.name)
    (d.inbox / "notes.txt").write_text("shopping list")
    assert wait_for(lambda: ": podcast.m4a in the inbox: extension .m4a is not in [daemon] extensions" in d.text(), 15), d.text()
    time.sleep(4.5)  # two more rescans: still said once
    assert d.text().count(": podcast.m4a in the inbox: ") == 1 and d.text().count(": notes.txt in the inbox: ") == 1
    assert "WARNING autoclip.watcher: podcast.m4a in the inbox" in d.text()
    assert "podcast.m4a" not in d.by_name()
    assert wait_for(lambda: "podcast.m4a" in json.dumps(json.loads(cli_run(d, "status", "--json").stdout)["ignored"]), 10)
    ign = json.loads(cli_run(d, "status", "--json").stdout)["ignored"]
    files = {f["file"]: f["reason"] for f in ign["files"]}
    assert "add it there if it is a video, or move the file out of the inbox" in files["podcast.m4a"]
    assert ign["count"] >= 2 + 15 and "p.mp4.ytdl" in files  # with the partial names of the test above
    assert "file(s) in the inbox are not taken" in cli_run(d, "status").stdout
    (d.inbox / "podcast.m4a").unlink()  # the user acts on it: gone from status at the next rescan
    assert wait_for(lambda: "podcast.m4a" not in cli_run(d, "status", "--json").stdout, 15)


def test_retry_moves_a_failed_file_back_and_the_daemon_takes_it_again(intake_daemon) -> None:
    d = intake_daemon
    failed = d.root / "data" / "failed"
    link_job = d.by_name()["link.mp4"]
    res = cli_run(d, "retry", "link.mp4")
    assert res.returncode == 0 and "moved link.mp4 back" in res.stdout, res.stderr
    assert (d.inbox / "link.mp4").is_symlink() and not (failed / "link.mp4.reason.json").exists()
    # still a symlink, so refused again: same job, back in failed/ with its reason, said in the log
    assert wait_for(lambda: (failed / "link.mp4.reason.json").exists(), 15), d.text()
    assert d.by_name()["link.mp4"]["id"] == link_job["id"] and not os.path.lexists(d.inbox / "link.mp4")
    # the reason file is written just before the log line: wait for the line too
    assert wait_for(lambda: d.text().count("failed (symlink): link.mp4") == 2, 10), d.text()
    res = cli_run(d, "retry", "never-seen.mp4")
    assert res.returncode == 1 and res.stderr.strip().splitlines() == [
        "autoclip: error: no failed file named 'never-seen.mp4' (`autoclip status` lists the failed files)"]


# -- with a model: reels, failures, SIGTERM -----------------------------------------------------
@pytest.fixture
def deployment(tmp_path, install_untrained_model) -> Path:
    cfg = make_deployment(tmp_path / "deploy")
    install_untrained_model(cfg)
    return cfg


HOSTILE = "-good 'quoted' \"name\" $(x).mp4"  # leading dash, quotes, shell syntax


def truncated_mkv(folder: Path) -> bytes:
    """A half-written MKV: ffprobe accepts it and its header claims the full duration."""
    full = synth.make_vod(folder / "full.mkv", 8, [], words=False).path.read_bytes()
    return full[: len(full) // 2]


def test_bad_files_fail_with_reasons_while_a_good_one_becomes_a_reel(deployment, vod_bytes, tmp_path) -> None:
    half = truncated_mkv(tmp_path)
    d = Daemon(deployment)
    try:
        stage = tmp_path / "stage"
        stage.mkdir()
        (stage / "empty.mp4").write_bytes(b"")
        (stage / "notes.mp4").write_text("this is not a video\n" * 50)
        (stage / "half.mkv").write_bytes(half)
        (stage / HOSTILE).write_bytes(vod_bytes)
        for p in stage.iterdir():  # dropped at the same time
            os.rename(p, d.inbox / p.name)
        failed, reels, done = (d.root / "data" / n for n in ("failed", "reels", "done"))
        bad = ("empty.mp4", "notes.mp4", "half.mkv")
        assert wait_for(lambda: all((failed / f"{n}.reason.json").exists() for n in bad)
                        and (done / HOSTILE).exists(), 150), d.text()
        codes = {n: json.loads((failed / f"{n}.reason.json").read_text())["code"] for n in bad}
        assert codes == {"empty.mp4": "empty", "notes.mp4": "not_media", "half.mkv": "truncated"}
        assert all((failed / n).exists() for n in bad) and not any(d.inbox.iterdir())
        reel_files = [p for p in reels.iterdir() if p.suffix == ".mp4"]
        job = d.by_name()[HOSTILE]
        assert len(reel_files) == 1 and job["id"] in reel_files[0].name
        assert not [p for p in reels.iterdir() if p.name.startswith(".autoclip-tmp-")]
        assert job["state"] == "done" and job["reel"] == str(reel_files[0]) and job["attempts"] == 1
        assert d.proc.poll() is None  # the daemon goes on
    finally:
        rc = d.stop()
    assert rc == 0, d.text()


def test_sigterm_mid_job_requeues_it_and_exits_0(deployment, vod_bytes) -> None:
    d = Daemon(deployment)
    try:
        (d.inbox / "long.mp4").write_bytes(vod_bytes)
        state = lambda: json.loads(next((d.root / "jobs").glob("*/state.json")).read_text())  # noqa: E731
        assert wait_for(lambda: any((d.root / "jobs").glob("*/state.json")) and state().get("phase") == "scoring"
                        and (state().get("child") or {}).get("pid"), 60), d.text()
        child = state()["child"]["pid"]
        t0 = time.monotonic()
        rc = d.stop(signal.SIGTERM, timeout=30)
        took = time.monotonic() - t0
    finally:
        d.kill()
    assert rc == 0, d.text()
    assert took < 5.0 + 5.0  # stop_timeout plus a margin
    assert not Path(f"/proc/{child}").exists()  # the child's group is gone, no zombie left
    job = state()
    assert job["state"] == "queued" and job["attempts"] == 0  # an interrupted stop does not use up attempts
    assert not [p for p in (d.root / "data" / "reels").iterdir()]


def test_sd_notify_ready_watchdog_and_stopping(tmp_path) -> None:
    cfg = make_deployment(tmp_path / "deploy")
    sock_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.settimeout(20)
    got: list[str] = []

    def receive() -> None:
        while True:
            try:
                got.append(sock.recv(4096).decode())
            except OSError:
                return

    t = threading.Thread(target=receive, daemon=True)
    t.start()
    d = Daemon(cfg, env={"NOTIFY_SOCKET": str(sock_path), "WATCHDOG_USEC": "600000"})
    try:
        assert wait_for(lambda: sum(m == "WATCHDOG=1" for m in got) >= 2, 20), got
        assert got[0].startswith("READY=1")
        assert got.index("WATCHDOG=1") > 0
    finally:
        assert d.stop() == 0
        sock.close()
    assert any(m.startswith("STOPPING=1") for m in got)


def test_watchdog_health_reports_a_dead_thread() -> None:
    stop = threading.Event()
    alive = threading.Thread(target=stop.wait, daemon=True)
    dead = threading.Thread(target=lambda: None)
    alive.start()
    dead.start()
    dead.join()
    try:
        assert health_problems({"watcher": alive, "worker": alive}, None, None) == []
        assert health_problems({"watcher": dead, "worker": alive}, None, None) == ["watcher thread dead"]
    finally:
        stop.set()


# -- slow: crash recovery --------------------------------------------------------------------
@pytest.mark.slow
def test_kill_9_during_a_job_and_a_restart_give_exactly_one_reel(deployment, vod_bytes) -> None:
    d = Daemon(deployment)
    (d.inbox / "crash.mp4").write_bytes(vod_bytes)
    jobs_dir = d.root / "jobs"
    state = lambda: json.loads(next(jobs_dir.glob("*/state.json")).read_text())  # noqa: E731
    assert wait_for(lambda: any(jobs_dir.glob("*/state.json")) and state().get("phase") == "scoring"
                    and (state().get("child") or {}).get("pid"), 60), d.text()
    orphan = state()["child"]["pid"]
    time.sleep(2.0)
    d.proc.send_signal(signal.SIGKILL)
    d.proc.wait(10)
    assert state()["state"] in ("scoring", "rendering")
    d2 = Daemon(deployment)
    try:
        assert wait_for(lambda: d2.by_name().get("crash.mp4", {}).get("state") == "done", 120), d2.text()
        job = d2.by_name()["crash.mp4"]
        assert job["attempts"] == 2
        reels = [p for p in (d.root / "data" / "reels").iterdir() if p.suffix == ".mp4"]
        assert len(reels) == 1 and not [p for p in reels if p.name.startswith(".autoclip-tmp-")]
        assert "requeued" in d2.text()
    finally:
        assert d2.stop() == 0
    assert "killed the leftover process group" in d2.text()  # the orphaned child did not race the retry
    assert not Path(f"/proc/{orphan}").exists() or " Z " in Path(f"/proc/{orphan}/stat").read_text()


# -- retraining scheduler (real APScheduler, real `autoclip train` children) ---------------------
def retrain_deployment(tmp_path: Path, **retrain) -> tuple[Path, object]:
    from autoclip import config

    opts = {"enabled": "true", "label_check": 1.0, "min_new_labels": 2, **retrain}
    extra = "\n".join(f"{k} = {json.dumps(v) if isinstance(v, str) and v not in ('true', 'false') else v}"
                      for k, v in opts.items())
    cfg_path = make_deployment(tmp_path / "deploy", "")
    cfg_path.write_text(cfg_path.read_text().replace("[retrain]\nenabled = false", "[retrain]\n" + extra))
    return cfg_path, config.load(cfg_path)


def runs(cfg) -> list[dict]:
    from autoclip import store

    conn = store.connect(cfg.path("database"))
    try:
        return [dict(r) for r in conn.execute("SELECT * FROM retrain_runs ORDER BY id")]
    finally:
        conn.close()


def test_missed_cron_bookkeeping_and_skip_while_running(tmp_path, caplog) -> None:
    """Quick in-process checks of the scheduler's own rules (the slow tests run real trainings)."""
    from autoclip import store
    from autoclip.scheduler import CRON_MARK, RetrainScheduler, next_cron

    cfg_path, cfg = retrain_deployment(tmp_path, cron="0 4 * * *")
    sched = RetrainScheduler(cfg, cfg_path, threading.Event())
    conn = store.connect(cfg.path("database"))
    try:
        assert not sched._missed(conn)  # first start ever: nothing was scheduled before
        store.set_meta(conn, CRON_MARK, str(time.time() - 2 * 86400))
        assert sched._missed(conn)  # down across two 04:00 runs: one (coalesced) run now
        assert not sched._missed(conn)  # and only once
        assert 0 < next_cron("0 4 * * *") - time.time() <= 86400
        with sched._lock:  # a retraining is running...
            sched.running_trigger = "cron"
            assert sched.run("labels") == "skipped"  # ...so this trigger is skipped and logged
        rows = [dict(r) for r in conn.execute("SELECT trigger, status FROM retrain_runs")]
        assert rows == [{"trigger": "labels", "status": "skipped"}]
        assert "retraining (labels) skipped" in caplog.text
    finally:
        conn.close()


@pytest.mark.slow
@pytest.mark.expect_errors(r"retraining \((missed|labels)\) failed: training needs highlight and normal labels")  # the failed run is the point
def test_a_cron_run_missed_while_down_runs_once_on_restart(tmp_path) -> None:
    from autoclip import store
    from autoclip.scheduler import CRON_MARK, RetrainScheduler

    cfg_path, cfg = retrain_deployment(tmp_path, cron="0 4 * * *", min_new_labels=1000)
    conn = store.connect(cfg.path("database"))
    store.set_meta(conn, CRON_MARK, str(time.time() - 2 * 86400))  # last up two days ago
    conn.close()
    for _ in range(2):  # the second start finds nothing missed
        stop = threading.Event()
        sched = RetrainScheduler(cfg, cfg_path, stop)
        sched.start()
        assert wait_for(lambda s=sched: any(r["status"] != "running" for r in runs(cfg)) and not s._lock.locked(), 60)
        time.sleep(1.5)
        stop.set()
        sched.shutdown()
    missed = [r for r in runs(cfg) if r["trigger"] == "missed"]
    assert len(missed) == 1 and len(runs(cfg)) == 1
    assert missed[0]["status"] == "failed" and "label" in missed[0]["detail"]  # no labels yet: a clean failure


@pytest.mark.slow
@pytest.mark.expect_errors(r"retraining \((missed|labels)\) failed: training needs highlight and normal labels")  # the failed run is the point
def test_new_labels_trigger_a_run_and_a_second_trigger_is_skipped(tmp_path, caplog) -> None:
    from autoclip import store
    from autoclip.scheduler import RetrainScheduler

    cfg_path, cfg = retrain_deployment(tmp_path, cron="0 4 1 1 *", min_new_labels=2)
    conn = store.connect(cfg.path("database"))
    with store.transaction(conn):
        for i in range(2):
            conn.execute("INSERT INTO labels (vod, fingerprint, start, end, label, source, created) "
                         "VALUES ('/nowhere.mp4', 'fp', ?, ?, 'highlight', 'review', ?)", (i * 10, i * 10 + 5, time.time()))
    conn.close()
    stop = threading.Event()
    sched = RetrainScheduler(cfg, cfg_path, stop)
    sched.start()
    try:
        assert wait_for(lambda: sched.running_trigger == "labels", 20)
        assert sched.run("cron") == "skipped"  # never two at once
        assert wait_for(lambda: not sched._lock.locked(), 60)
    finally:
        stop.set()
        sched.shutdown()
    triggers = [(r["trigger"], r["status"]) for r in runs(cfg)]
    assert ("cron", "skipped") in triggers
    assert [t for t in triggers if t[0] == "labels"] == [("labels", "failed")]  # two highlights, no normal: refused
    assert "skipped: a retraining (labels) is already running" in caplog.text


def _nice_of(cmd_part: str) -> int | None:
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            if b"train" in cmdline and cmd_part.encode() in cmdline and any(b"python" in c for c in cmdline[:1]):
                return int((proc / "stat").read_text().rsplit(")", 1)[1].split()[16])
        except (OSError, ValueError, IndexError):
            continue
    return None


@pytest.mark.slow
def test_retrain_triggered_by_new_labels_runs_while_a_vod_is_processed(tmp_path, install_untrained_model) -> None:
    from autoclip import labels, store
    from autoclip.registry import Registry

    lib = tmp_path / "lib"
    vods = []
    for seed in range(3):
        events = synth.plan_events(60, highlights=2, visual=1, audio=1, seed=seed)
        vods.append(synth.make_vod(lib / f"train{seed}.mp4", 60, events, seed=seed))
    clips = [(v, c) for v in vods for c in synth.sample_clips(v, seed=1)]
    cfg_path, cfg = retrain_deployment(tmp_path, cron="0 4 1 1 *", min_new_labels=len(clips), nice=12, threads=1)
    cfg_path.write_text(cfg_path.read_text() + "[train]\nepochs = 2\npseudo_max = 200\n")
    teacher = install_untrained_model(cfg_path)
    long_vod = synth.make_vod(lib / "long.mp4", 90, synth.plan_events(90, highlights=3, seed=5), seed=5)
    d = Daemon(cfg_path)
    try:
        shutil.copy(long_vod.path, d.inbox / "long.mp4")
        assert wait_for(lambda: d.by_name().get("long.mp4", {}).get("state") == "scoring"
                        and "scoring" in json.dumps(d.by_name()), 60), d.text()
        conn = store.connect(cfg.path("database"))
        for v, (s, e, lab) in clips:
            labels.add_label(conn, v.path, s, e, lab, "review")
        conn.close()
        assert wait_for(lambda: _nice_of("--trigger") is not None, 30), d.text()
        # low priority child, not the daemon: 12 above the niceness this test runs at
        assert _nice_of("--trigger") == min(19, os.nice(0) + 12)
        assert d.by_name()["long.mp4"]["state"] in ("scoring", "rendering")  # ingest goes on meanwhile
        assert wait_for(lambda: any(r["status"] in ("done", "failed") for r in runs(cfg))
                        and d.by_name()["long.mp4"]["state"] == "done", 400), d.text()
    finally:
        assert d.stop() == 0
    [run] = [r for r in runs(cfg) if r["trigger"] == "labels"]
    assert run["status"] == "done", run
    job = d.by_name()["long.mp4"]
    state = json.loads((d.root / "jobs" / job["id"] / "state.json").read_text())
    assert run["started"] < state["timings"]["finished"] and state["timings"]["started"] < run["finished"]
    reg = Registry(cfg.path("models"))
    meta = reg.meta(run["model"])
    val_ap, cur_ap = meta["summary"]["val_frame_ap"], meta["summary"]["current_val_frame_ap"]
    expected = meta["decision"]["promote"]
    assert bool(run["promoted"]) == expected
    assert reg.current_id() == (run["model"] if expected else teacher)
    print(f"retrain: val frame AP {val_ap}, teacher {cur_ap}, promoted {bool(run['promoted'])}: {meta['decision']['reason']}")


@pytest.mark.slow
def test_disk_full_on_the_reels_folder_fails_the_attempt_and_retries_later(tmp_path, vod_bytes, install_untrained_model) -> None:
    small = tmp_path / "small-disk"
    small.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(small)], capture_output=True).returncode:
        pytest.skip("needs permission to mount a small tmpfs")
    try:
        cfg_path = make_deployment(tmp_path / "deploy", f'[paths]\nreels = "{small}"\n')
        install_untrained_model(cfg_path)
        filler = small / "filler"
        subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=4k", "count=1000"], capture_output=True)
        d = Daemon(cfg_path)
        try:
            (d.inbox / "v.mp4").write_bytes(vod_bytes)
            assert wait_for(lambda: "disk full" in d.text(), 90), d.text()
            job = d.by_name()["v.mp4"]
            assert job["state"] in ("queued", "scoring") and job["reason_code"] in ("disk_full", None)
            assert not (d.root / "data" / "failed" / "v.mp4").exists()
            filler.unlink()  # space again: the retry goes through
            assert wait_for(lambda: d.by_name()["v.mp4"]["state"] == "done", 120), d.text()
            assert [p.suffix for p in small.iterdir()].count(".mp4") == 1
            conn = sqlite3.connect(d.root / "data" / "autoclip.db")
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            conn.close()
        finally:
            assert d.stop() == 0
    finally:
        subprocess.run(["umount", str(small)], capture_output=True)
