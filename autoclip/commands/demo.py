"""`autoclip demo`: the whole loop on a generated sample deployment, in a few minutes.

Generates sample VODs with planted highlights and their labels, trains a first model, starts
the real daemon, drops a new VOD into its inbox, waits for the reel, shows where everything is,
then stops the daemon cleanly.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from autoclip.commands import Context, add_command
from autoclip.errors import AutoclipError

#: settings that make the demo finish in a few minutes on 2 cores (a real deployment keeps the defaults)
N_SAMPLES, SAMPLE_SECONDS = 5, 120


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub, "demo", cmd_demo,
        help="run the whole loop on generated sample VODs: label, train, daemon, reel, review queue",
        summary="the whole loop on generated sample VODs",
        example="autoclip demo ./demo   # then: autoclip --config demo/config.toml review",
    )
    p.add_argument("dir", nargs="?", type=Path, default=Path("demo"), help="folder for the sample deployment (default ./demo)")
    p.add_argument("--vod", type=Path, help="also process this VOD of yours after the sample one")
    p.add_argument("--fresh", action="store_true", help="delete DIR first (otherwise an existing demo is reused)")
    p.add_argument("--timeout", type=float, default=600, help="seconds to wait for the reel (default 600)")


def _demo_config(folder: Path, facecam: tuple[int, int, int, int]) -> str:
    from autoclip import config as config_mod

    x, y, w, h = facecam
    text = config_mod.default_toml()
    # a demo deployment: face-cam crop set, small model input, quick training and a fast daemon
    replace = {
        "size = 128\n": "size = 64\n",
        "# crop = ...  (unset)\n": f"crop = [{x}, {y}, {w}, {h}]\n",
        "epochs = 8\n": "epochs = 6\n",
        "stable = 10.0\n": "stable = 2.0\n",
        "rescan = 60.0\n": "rescan = 5.0\n",
        'cron = "0 4 * * *"\n': 'cron = "0 4 * * *"\n',
        "smooth = 2.0\n": "smooth = 1.0\n",
        'size = "1080x1920"\n': 'size = "360x640"\n',  # shorts of a 320x180 sample VOD
    }
    for old, new in replace.items():
        if old not in text:
            raise AutoclipError(f"demo: default config changed shape near {old.strip()!r}; update autoclip/commands/demo.py")
        text = text.replace(old, new, 1)
    return text


class _Steps:
    """Numbered progress lines (rich when on a terminal)."""

    def __init__(self, total: int) -> None:
        from rich.console import Console

        self.console = Console(stderr=True, highlight=False, soft_wrap=True)
        self.total, self.n, self.t0 = total, 0, time.monotonic()

    def step(self, text: str) -> None:
        self.n += 1
        self.console.print(f"[bold cyan][{self.n}/{self.total}][/] {text}  [dim]({time.monotonic() - self.t0:.0f} s)[/]")

    def info(self, text: str) -> None:
        self.console.print(f"      {text}", markup=False)


def _make_samples(folder: Path, steps: _Steps) -> tuple[list, object]:
    from autoclip import synth

    samples = folder / "samples"
    samples.mkdir(parents=True, exist_ok=True)
    vods = [synth.planted_vod(samples / f"sample-stream-{i + 1}.mp4", SAMPLE_SECONDS, seed=10 + i,
                              highlights=3, visual=2, audio=2) for i in range(N_SAMPLES)]
    steps.info(f"{len(vods)} training VODs of {SAMPLE_SECONDS / 60:g} min in {samples}")
    held_out = synth.planted_vod(samples / "new-stream.mp4", 180, seed=99, highlights=4, visual=3, audio=3)
    return vods, held_out


def _write_labels(folder: Path, vods: list) -> Path:
    from autoclip import synth

    csv_path = folder / "samples" / "labels.csv"
    with open(csv_path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["vod", "start", "end", "label"])
        for i, v in enumerate(vods):
            for start, end, label in synth.sample_clips(v, normal_per_event=1.0, seed=i):
                w.writerow([Path(v.path).name, f"{start:.2f}", f"{end:.2f}", label])
    return csv_path


def _run_daemon(cfg_file: Path, log_file: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen(
        [sys.executable, "-m", "autoclip", "--config", str(cfg_file), "daemon"],
        stdin=subprocess.DEVNULL, stdout=log_file.open("ab"), stderr=subprocess.STDOUT, env=env,
        start_new_session=True,
    )


def _wait_for_reel(cfg, name: str, daemon: subprocess.Popen, timeout: float, steps: _Steps, since: float) -> dict:
    """The done job of the VOD dropped at ``since`` (for content processed before, the earlier job)."""
    from autoclip import store

    deadline = time.monotonic() + timeout
    conn = store.connect(cfg.path("database"))
    last = None
    while time.monotonic() < deadline:
        if daemon.poll() is not None:
            raise AutoclipError(f"the daemon stopped (exit {daemon.returncode}); see {cfg.path('jobs') / 'daemon.log'}")
        row = conn.execute("SELECT * FROM jobs WHERE source LIKE ? AND created >= ? ORDER BY created DESC LIMIT 1",
                           (f"%{name}", since - 1.0)).fetchone()
        if row is not None:
            if row["state"] != last:
                steps.info(f"job {row['id']}: {row['state']}")
                last = row["state"]
            if row["state"] == "done":
                return dict(row)
            if row["state"] == "duplicate":
                original = conn.execute("SELECT * FROM jobs WHERE id = ?", (row["duplicate_of"],)).fetchone()
                if original is not None and original["state"] == "done":
                    steps.info(f"already processed by job {original['id']}: showing its reel")
                    return dict(original)
                raise AutoclipError(f"{name}: {row['error']}; run `autoclip demo --fresh` to start over")
            if row["state"] == "failed":
                raise AutoclipError(f"the sample VOD failed: {row['error']}")
        time.sleep(1.0)
    raise AutoclipError(f"no reel after {timeout:.0f} s; see {cfg.path('jobs') / 'daemon.log'}")


def _stop(daemon: subprocess.Popen, timeout: float = 30) -> int:
    if daemon.poll() is None:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(daemon.pid, signal.SIGKILL)
            daemon.wait()
    return daemon.returncode


def _score_against_truth(segments: list[dict], truth) -> str:
    from autoclip.metrics import match_segments

    return match_segments([(s["start"], s["end"]) for s in segments],
                          [(e.start, e.end) for e in truth.highlights()]).describe()


def cmd_demo(args: argparse.Namespace, ctx: Context) -> int:
    from autoclip import config as config_mod
    from autoclip import labels, store, train
    from autoclip.fsutil import atomic_write_text

    folder: Path = args.dir.resolve()
    steps = _Steps(6 + bool(args.vod))
    if args.fresh and folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)

    steps.step(f"sample deployment in {folder}")
    from autoclip.synth import facecam_box

    cfg_file = folder / "config.toml"
    if not cfg_file.exists():
        atomic_write_text(cfg_file, _demo_config(folder, facecam_box(320, 180)))
    cfg = config_mod.load(cfg_file)
    cfg.ensure_dirs()

    steps.step("generating sample VODs with planted highlights (picture + loud sound) and distractors")
    vods, held_out = _make_samples(folder, steps)
    conn = store.connect(cfg.path("database"))
    csv_path = _write_labels(folder, vods)
    added = labels.import_csv(conn, csv_path)
    steps.info(f"labels: {csv_path} ({added if isinstance(added, int) else 'imported'})")

    steps.step("training the first model (ResNet-18 frames + log-mel audio, fused)")
    from autoclip.registry import Registry

    if Registry(cfg.path("models")).current_id():
        steps.info("a current model exists; reusing it")
    else:
        result = train.train(cfg, conn, trigger="manual", pseudo=False, progress=True)
        val = result["metrics"]["val"]
        steps.info(f"model {result['model']}: validation AP {val.get('ap', float('nan')):.3f}, promoted: {result['promoted']}")

    steps.step("starting the daemon and dropping a new VOD into the inbox")
    log_file = cfg.path("jobs") / "daemon.log"
    daemon = _run_daemon(cfg_file, log_file)
    try:
        inbox_vod = cfg.path("inbox") / held_out.path.name
        tmp = cfg.path("inbox").parent / (".incoming-" + held_out.path.name)
        shutil.copyfile(held_out.path, tmp)
        dropped = time.time()
        os.replace(tmp, inbox_vod)  # a move into the inbox: one event, complete file
        steps.info(f"dropped {inbox_vod}")
        job = _wait_for_reel(cfg, held_out.path.name, daemon, args.timeout, steps, dropped)
        if args.vod:
            steps.step(f"processing your VOD {args.vod}")
            dropped = time.time()
            shutil.copyfile(args.vod, cfg.path("inbox") / args.vod.name)
            _wait_for_reel(cfg, args.vod.name, daemon, args.timeout * 6, steps, dropped)
    finally:
        steps.step("stopping the daemon")
        rc = _stop(daemon)
        steps.info(f"daemon exited with {rc}")

    steps.step("results")
    reel = Path(job["reel"]) if job.get("reel") else None
    seg_file = reel.with_suffix(".segments.json") if reel else None
    segments = []
    if seg_file and seg_file.exists():
        segments = json.loads(seg_file.read_text()).get("segments", [])
    pending = conn.execute("SELECT COUNT(*) FROM review_items WHERE state = 'pending'").fetchone()[0]
    steps.info(f"reel:          {reel}")
    steps.info(f"segment list:  {seg_file}  ({_score_against_truth(segments, held_out)})")
    for extra in sorted(cfg.path("reels").glob(f"{reel.stem}*")) if reel else []:
        if extra not in (reel, seg_file):
            steps.info(f"               {extra}")
    steps.info(f"review queue:  {pending} items waiting: autoclip --config {cfg_file} review")
    steps.info(f"status:        autoclip --config {cfg_file} status")
    return 0
