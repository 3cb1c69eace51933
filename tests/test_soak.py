"""Soak: the real daemon for up to 15 minutes under a realistic mess.

A driver drops 30 short generated VODs in bursts (plain copies, `x.part -> x` renames, slow
writers, moves from outside), copies of them under other names, new content under a name already
processed, 2,000 junk and partial files and 5 bad files, and imports labels twice so retraining
runs twice meanwhile. Asserts: every good VOD gave exactly one job and one reel, every copy is a
duplicate with no reel, every bad file is in failed/ with its reason code, the log has no ERROR
line but those 5 and says each junk file once, the daemon's own RSS (children excluded) grows
less than 10 % from the first to the last quarter of the run, and the inbox ends empty. The
figures are printed and written to soak.json (and to $AUTOCLIP_SOAK_REPORT when set).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from test_daemon import Daemon, truncated_mkv, wait_for

from autoclip import fsutil, synth

LIMIT = 14 * 60.0  # the whole test, set-up included, stays under 15 minutes
GOOD, JUNK = 30, 2000
SOAK_CONFIG = """
[frames]
size = 32
fps = 2
[audio]
n_mels = 16
window = 0.5
[model]
kind = "audio"
threads = 1
[train]
epochs = 1
batch_size = 8
frames_per_clip = 2
patience = 1
pseudo_max = 0
[render]
height = 180
preset = "ultrafast"
[selection]
threshold = 0.01
low_threshold = 0.01
max_length = 6.0
smooth = 1.0
[daemon]
stable = 1.0
rescan = 3.0
backoff = 0.5
max_attempts = 2
stop_timeout = 5.0
timeout_base = 300.0
[retrain]
enabled = true
cron = "0 4 1 1 *"
label_check = 2.0
min_new_labels = 8
nice = 10
threads = 1
"""
BAD = {"notes.mp4": "not_media", "random.mkv": "not_media", "playlist.mp4": "demuxer", "voice.mp4": "no_video",
       "half.mkv": "truncated"}
JUNK_NAMES = ("junk{n}.mp4.part", "junk{n}.mkv.crdownload", ".junk{n}.mp4", "junk{n}.txt", "junk{n}.f137.mp4",
              "junk{n}.jpg", "~syncthing~junk{n}.mp4.tmp", "junk{n}.mp4.ytdl")


class RssSampler(threading.Thread):
    """The daemon process's own resident memory (children excluded), twice a second."""

    def __init__(self, pid: int) -> None:
        import psutil

        super().__init__(daemon=True)
        self.proc = psutil.Process(pid)
        self.samples: list[tuple[float, int]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.5):
            try:
                self.samples.append((time.monotonic(), self.proc.memory_info().rss))
            except Exception:  # noqa: BLE001 - the process is gone
                return

    def quarters(self) -> tuple[float, float]:
        """Median RSS (MiB) of the first and of the last quarter of the run, by time."""
        t = np.array([s[0] for s in self.samples])
        rss = np.array([s[1] for s in self.samples]) / 2**20
        span = t[-1] - t[0]
        first, last = rss[t <= t[0] + span / 4], rss[t >= t[-1] - span / 4]
        return float(np.median(first)), float(np.median(last))


def make_media(folder: Path) -> tuple[list[Path], dict[str, Path], list[synth.SynthVod]]:
    folder.mkdir()

    def good(k: int) -> Path:
        return synth.make_vod(folder / f"good{k:02d}.mp4", 4, [synth.Event(1.0, 3.0, "highlight")], seed=k).path

    def train_vod(seed: int) -> synth.SynthVod:
        events = synth.plan_events(60, highlights=2, visual=1, audio=1, seed=seed)
        return synth.make_vod(folder / f"train{seed}.mp4", 60, events, seed=seed, width=160, height=90)

    with ThreadPoolExecutor(2) as pool:
        goods = list(pool.map(good, range(GOOD)))
        trains = list(pool.map(train_vod, range(3)))
    bad_dir = folder / "bad"
    bad_dir.mkdir()
    (bad_dir / "notes.mp4").write_text("these are my stream notes\n" * 40)
    (bad_dir / "random.mkv").write_bytes(np.random.default_rng(0).bytes(60_000))
    (bad_dir / "playlist.mp4").write_bytes(b"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\n/etc/passwd\n#EXT-X-ENDLIST\n")
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "sine=duration=3",
                    "-c:a", "aac", str(bad_dir / "voice.mp4")], check=True)
    (bad_dir / "half.mkv").write_bytes(truncated_mkv(folder))
    return goods, {p.name: p for p in bad_dir.iterdir()}, trains


def label_batches(trains: list[synth.SynthVod], folder: Path) -> list[Path]:
    """Two CSVs, each with both classes from every training VOD (so each triggers one retraining)."""
    rows: list[list[str]] = [[], []]
    for v in trains:
        for cls in ("highlight", "normal"):
            clips = [c for c in synth.sample_clips(v, seed=1) if c[2] == cls]
            for j, (s, e, lab) in enumerate(clips):
                rows[j % 2].append(f"{v.path},{s},{e},{lab}")
    out = []
    for k, r in enumerate(rows):
        out.append(folder / f"labels{k}.csv")
        out[-1].write_text("vod,start,end,label\n" + "\n".join(r) + "\n")
    return out


class Driver:
    """Drops files into the inbox the ways users and tools do."""

    def __init__(self, inbox: Path, stage: Path) -> None:
        self.inbox, self.stage = inbox, stage
        stage.mkdir(exist_ok=True)
        self.junk: list[Path] = []
        self.writers: list[threading.Thread] = []

    def copy(self, src: Path, name: str) -> None:  # a plain `cp`: the file grows in place
        shutil.copyfile(src, self.inbox / name)

    def rename_in(self, src: Path, name: str) -> None:  # a downloader: x.part, then rename
        part = self.inbox / f"{name}.part"
        shutil.copyfile(src, part)
        time.sleep(0.3)
        os.rename(part, self.inbox / name)

    def move_in(self, src: Path, name: str) -> None:  # `mv` from the same file system
        tmp = self.stage / name
        shutil.copyfile(src, tmp)
        os.rename(tmp, self.inbox / name)

    def slow(self, src: Path, name: str, seconds: float = 4.0) -> None:  # a slow network copy
        data = src.read_bytes()

        def write() -> None:
            step = len(data) // 12 + 1
            with open(self.inbox / name, "wb") as f:
                for i in range(0, len(data), step):
                    f.write(data[i:i + step])
                    f.flush()
                    time.sleep(seconds / 12)

        t = threading.Thread(target=write, daemon=True)
        t.start()
        self.writers.append(t)

    def junk_burst(self, n: int) -> None:
        start = len(self.junk)
        for k in range(start, start + n):
            p = self.inbox / JUNK_NAMES[k % len(JUNK_NAMES)].format(n=k)
            p.write_bytes(b"x" * (k % 7) * 100)
            self.junk.append(p)

    def clear_junk(self, upto: int | None = None) -> None:
        for p in self.junk[:upto]:
            p.unlink(missing_ok=True)


def cli(cfg: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "autoclip", "--config", str(cfg), *args], capture_output=True, text=True)


@pytest.mark.slow
@pytest.mark.timeout(int(LIMIT) + 60)
def test_soak_30_vods_2000_junk_5_bad_2_retrains(tmp_path: Path, install_untrained_model) -> None:
    t_start = time.monotonic()
    deadline = t_start + LIMIT
    root = tmp_path / "deploy"
    subprocess.run([sys.executable, "-m", "autoclip", "init", str(root)], check=True, capture_output=True)
    cfg = root / "config.toml"
    cfg.write_text(SOAK_CONFIG)
    install_untrained_model(cfg)
    goods, bad, trains = make_media(tmp_path / "media")
    fps = [fsutil.fingerprint(p) for p in goods]
    assert len(set(fps)) == GOOD
    csvs = label_batches(trains, tmp_path)
    t_media = time.monotonic() - t_start

    d = Daemon(cfg)
    rss = RssSampler(d.proc.pid)
    rss.start()
    drv = Driver(d.inbox, tmp_path / "stage")
    names = [f"vod{k:02d}.mp4" for k in range(GOOD)]
    failed_dir, reels_dir = root / "data" / "failed", root / "data" / "reels"

    def drop(how, k: int, name: str | None = None) -> None:
        how(goods[k], name or names[k])

    def ignored() -> int:
        return json.loads(cli(cfg, "status", "--json").stdout)["ignored"]["count"]

    try:
        # burst 1: plain copies, junk, and the first labels (retraining 1)
        for k in range(0, 6):
            drop(drv.copy, k)
        drv.junk_burst(500)
        assert cli(cfg, "label", "import", str(csvs[0])).returncode == 0
        assert wait_for(lambda: ignored() >= 500, 60, every=2.0), d.text()
        # burst 2: downloads renamed in, more junk
        for k in range(6, 12):
            drop(drv.rename_in, k)
        drv.junk_burst(500)
        # burst 3: slow writers and the bad files, all at once
        for k in range(12, 16):
            drv.slow(goods[k], names[k])
        for name, src in bad.items():
            drv.move_in(src, name)
        # burst 4: copies under other names (duplicates) and moves from outside; junk from burst 1 cancelled
        originals = (0, 3, 7, 9)
        assert wait_for(lambda: all(names[k] in d.by_name() for k in originals), 120), d.text()
        dups = {f"copy of vod{k:02d}.mp4": fps[k] for k in originals}
        for k in originals:
            drv.copy(goods[k], f"copy of vod{k:02d}.mp4")
        for k in range(16, 22):
            drop(drv.move_in, k)
        drv.junk_burst(500)
        drv.clear_junk(500)
        # burst 5: same names, new content, once the first ones are done and out of the inbox
        assert wait_for(lambda: all(not (d.inbox / names[k]).exists() for k in range(4)), deadline - time.monotonic()), d.text()
        for k, new in zip(range(4), range(22, 26), strict=True):
            drop(drv.copy, new, names[k])
        drv.junk_burst(500)
        # retraining 2 once the first is over
        assert wait_for(lambda: len(runs(root, "done")) >= 1, deadline - time.monotonic()), d.text()
        assert cli(cfg, "label", "import", str(csvs[1])).returncode == 0
        for k in range(26, 30):
            drop(drv.copy, k)
        for t in drv.writers:
            t.join(30)

        def settled() -> bool:
            jobs = d.jobs()
            done = [j for j in jobs if j["state"] == "done"]
            return (len(done) >= GOOD and all((failed_dir / f"{n}.reason.json").exists() for n in bad)
                    and sum(j["state"] == "duplicate" for j in jobs) >= len(dups) and len(runs(root, "done")) >= 2)

        assert wait_for(settled, deadline - time.monotonic() - 30, every=1.0), summary(d, root)
        peak_ignored = json.loads(cli(cfg, "status", "--json").stdout)["ignored"]["count"]
        left = sorted(p.name for p in d.inbox.iterdir() if p not in set(drv.junk))
        drv.clear_junk()
        assert wait_for(lambda: ignored() == 0, 30, every=2.0)
        inbox_left = sorted(os.listdir(d.inbox))
    finally:
        rss.stop.set()
        rc = d.stop(signal.SIGTERM, timeout=60)
    wall = time.monotonic() - t_start
    log = d.text()
    jobs = d.jobs()

    # every good content: exactly one job, done, with one reel named after it
    done = [j for j in jobs if j["state"] == "done"]
    assert sorted(j["fingerprint"] for j in done) == sorted(fps)  # 30 contents, one job each
    reels = [p for p in reels_dir.iterdir() if p.suffix == ".mp4"]
    assert len(reels) == GOOD and sorted(p.name for p in reels) == sorted(Path(j["reel"]).name for j in done)
    assert all(j["id"] in Path(j["reel"]).name for j in done)
    assert not [p for p in reels_dir.iterdir() if p.name.startswith(fsutil.TMP_PREFIX)]
    dup_jobs = {Path(j["source"]).name: j for j in jobs if j["state"] == "duplicate"}
    assert set(dup_jobs) == set(dups) and all(dup_jobs[n]["fingerprint"] == fp for n, fp in dups.items())
    # the bad ones: failed with their reason codes
    codes = {n: json.loads((failed_dir / f"{n}.reason.json").read_text())["code"] for n in bad}
    assert codes == BAD and all((failed_dir / n).exists() for n in bad)
    assert {j["state"] for j in jobs} <= {"done", "failed", "duplicate"} and len(jobs) == GOOD + len(dups) + len(bad)
    # the log: no ERROR but the 5 expected failures, no traceback, each junk file said once
    errors = [line for line in log.splitlines() if " ERROR " in line]
    assert len(errors) == len(bad) and all(any(f"failed ({c}): {n}" in e for n, c in BAD.items()) for e in errors), errors
    assert "Traceback" not in log
    said = [line.split(": ", 2)[1].split(" in the inbox")[0] for line in log.splitlines() if " in the inbox: " in line]
    junk_names = {p.name for p in drv.junk}
    assert len(said) == len(set(said)) and junk_names <= set(said), "each junk file said once, none twice"
    assert set(said) - junk_names <= {f"{n}.part" for n in names}  # and the downloads before their rename
    # retraining twice, each a finished run
    retrains = runs(root)
    assert [r["status"] for r in retrains if r["trigger"] == "labels"] == ["done", "done"], retrains
    # memory, inbox, exit
    first_q, last_q = rss.quarters()
    growth = (last_q - first_q) / first_q
    assert left == [] and inbox_left == [], (left, inbox_left)
    assert rc == 0
    job_seconds = [json.loads((root / "jobs" / j["id"] / "state.json").read_text())["timings"]["seconds"] for j in done]
    figures = {
        "vods_in": GOOD, "copies_under_other_names": len(dups), "same_name_new_content": 4, "junk_files": len(drv.junk),
        "bad_files": len(bad), "jobs": len(jobs), "reels_out": len(reels), "duplicates": len(dup_jobs),
        "failed": codes, "error_lines": len(errors), "retrains": [(r["trigger"], r["status"], r["promoted"]) for r in retrains],
        "peak_ignored_in_status": peak_ignored, "rss_first_quarter_mib": round(first_q, 1),
        "rss_last_quarter_mib": round(last_q, 1), "rss_growth_pct": round(100 * growth, 2), "rss_samples": len(rss.samples),
        "job_seconds_median": round(float(np.median(job_seconds)), 1), "media_setup_s": round(t_media, 1),
        "wall_s": round(wall, 1),
    }
    print("soak figures: " + json.dumps(figures))
    for out in (tmp_path / "soak.json", os.environ.get("AUTOCLIP_SOAK_REPORT")):
        if out:
            Path(out).write_text(json.dumps(figures, indent=2) + "\n")
    assert growth < 0.10, figures


def runs(root: Path, status: str | None = None) -> list[dict]:
    import sqlite3

    conn = sqlite3.connect(root / "data" / "autoclip.db")
    conn.row_factory = sqlite3.Row
    try:
        rows = [dict(r) for r in conn.execute("SELECT * FROM retrain_runs ORDER BY id")]
    finally:
        conn.close()
    return [r for r in rows if status is None or r["status"] == status]


def summary(d: Daemon, root: Path) -> str:
    states: dict[str, int] = {}
    for j in d.jobs():
        states[j["state"]] = states.get(j["state"], 0) + 1
    return f"jobs {states}; retrains {[(r['trigger'], r['status']) for r in runs(root)]}; log tail:\n{d.text()[-3000:]}"
