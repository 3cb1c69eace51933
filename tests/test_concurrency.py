"""Concurrent writers on one database (RELIABILITY item 27's live cousin): for 60 s, `review mark`
in a loop, `label import` in a loop, `process` in a loop and `autoclip train` in a loop, all real
CLI processes on one deployment. No "database is locked" (or any other error) may reach a user,
every acknowledged write must be in the database afterwards, and PRAGMA integrity_check says ok.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from autoclip import config, fsutil, labels, store, synth
from autoclip.registry import Registry
from autoclip.review import queue

RUN_FOR = 60.0
CONFIG = """
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
[selection]
threshold = 0.01
low_threshold = 0.01
max_length = 6.0
smooth = 1.0
[render]
height = 90
preset = "ultrafast"
[review]
per_vod = 400
uncertain = 400
min_spacing = 1.0
[retrain]
enabled = false
"""


def plain_vod(path: Path, seconds: int, freq: int) -> Path:
    """A cheap long VOD (testsrc + a tone); its content differs by ``freq``."""
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                    f"testsrc2=size=160x90:rate=5:duration={seconds}", "-f", "lavfi", "-i",
                    f"sine=frequency={freq}:duration={seconds}", "-c:v", "libx264", "-preset", "ultrafast",
                    "-c:a", "aac", "-shortest", str(path)], check=True)
    return path


class Loop:
    """One writer: runs ``step()`` until the deadline, recording what it did and every failure."""

    def __init__(self, name: str, step: Callable[[], bool]) -> None:
        self.name, self.step = name, step
        self.calls, self.failures = 0, []
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        while time.monotonic() < DEADLINE[0]:
            self.calls += 1
            try:
                if not self.step():
                    return
            except Exception as err:  # noqa: BLE001 - recorded and asserted on
                self.failures.append(f"{self.name}: {err!r}")
                return


DEADLINE = [0.0]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_concurrent_writers_for_60_s_lose_nothing_and_never_see_a_lock(tmp_path: Path, install_untrained_model) -> None:
    t_start = time.monotonic()
    root = tmp_path / "deploy"
    subprocess.run([sys.executable, "-m", "autoclip", "init", str(root)], check=True, capture_output=True)
    cfg_path = root / "config.toml"
    cfg_path.write_text(CONFIG)
    cfg = config.load(cfg_path)
    install_untrained_model(cfg_path)
    media = tmp_path / "media"
    media.mkdir()
    conn = store.connect(cfg.path("database"))
    for seed in range(3):  # the training set every `train` starts from
        v = synth.make_vod(media / f"train{seed}.mp4", 60, synth.plan_events(60, highlights=2, visual=1, audio=1, seed=seed),
                           seed=seed, width=160, height=90)
        for s, e, lab in synth.sample_clips(v, seed=seed):
            labels.add_label(conn, v.path, s, e, lab, "import")
    import_vod = plain_vod(media / "import.mp4", 400, 500)
    process_vod = synth.make_vod(media / "process.mp4", 20, [synth.Event(8.0, 12.0, "highlight")], width=160, height=90).path
    rng = np.random.default_rng(0)
    times = np.arange(0, 400, 0.25)
    for k in range(3):  # review items on three long VODs
        review_vod = plain_vod(media / f"review{k}.mp4", 400, 300 + 50 * k)
        queue.enqueue_after_process(conn, cfg, vod=str(review_vod), fingerprint=fsutil.fingerprint(review_vod),
                                    job=None, model=None, times=times, scores=rng.uniform(0, 1, len(times)), segments=[])
    pending = [it["id"] for it in queue.list_items(conn, "pending")]
    conn.close()
    assert len(pending) >= 120, len(pending)

    env = {**os.environ, "OMP_NUM_THREADS": "1", "AUTOCLIP_THREADS": "1"}
    outputs: list[tuple[str, int, str]] = []  # (command, rc, stderr) of every call
    lock = threading.Lock()

    def cli(*args: str) -> subprocess.CompletedProcess:
        res = subprocess.run([sys.executable, "-m", "autoclip", "--config", str(cfg_path), "-q", *args],
                             capture_output=True, text=True, env=env, timeout=600)
        with lock:
            outputs.append((args[0] + " " + args[1] if len(args) > 1 else args[0], res.returncode, res.stderr))
        return res

    marked: dict[int, str] = {}
    answers = iter(enumerate(pending))

    def mark() -> bool:
        i, item = next(answers, (None, None))
        if item is None:
            return False
        label = ("highlight", "normal", "skip")[i % 3]
        res = cli("review", "mark", str(item), "--label", label, "--json")
        if res.returncode == 0:
            marked[item] = json.loads(res.stdout)["state"]  # acknowledged
        return True

    imported: list[tuple[float, float, str]] = []
    batch = [0]

    def import_labels() -> bool:
        k = batch[0]
        batch[0] += 1
        rows = [(2.0 * i, 2.0 * i + 1.0, ("highlight", "normal")[i % 2]) for i in range(5 * k, 5 * k + 5)]
        if rows[-1][1] > 399:
            return False
        csv = tmp_path / f"import-{k}.csv"
        csv.write_text("vod,start,end,label\n" + "".join(f"{import_vod},{s},{e},{lab}\n" for s, e, lab in rows))
        if cli("label", "import", str(csv)).returncode == 0:
            imported.extend(rows)
        return True

    processed: list[dict] = []

    def process() -> bool:
        res = cli("process", str(process_vod), "--json")
        if res.returncode == 0:
            processed.append(json.loads(res.stdout))
        return True

    trained: list[dict] = []

    def retrain() -> bool:
        res = cli("train", "--force", "--json")
        if res.returncode == 0:
            trained.append(json.loads(res.stdout))
        return True

    loops = [Loop("review mark", mark), Loop("label import", import_labels), Loop("process", process),
             Loop("train", retrain)]
    t0 = time.monotonic()
    DEADLINE[0] = t0 + RUN_FOR
    for lp in loops:
        lp.thread.start()
    for lp in loops:
        lp.thread.join(900)
    ran = time.monotonic() - t0

    problems = [f"{cmd} exit {rc}: {err.strip()[-300:]}" for cmd, rc, err in outputs if rc != 0 or "Traceback" in err]
    locked = [err for _, _, err in outputs if "locked" in err.lower() or "busy" in err.lower()]
    assert not locked and not problems and not [f for lp in loops for f in lp.failures], (locked, problems)
    assert len(marked) >= 10 and len(imported) >= 20 and processed and trained, \
        (len(marked), len(imported), len(processed), len(trained))

    conn = store.connect(cfg.path("database"))
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        for item_id, state in marked.items():  # every acknowledged answer, with its label
            row = queue.get_item(conn, item_id)
            assert row["state"] == state
            n = conn.execute("SELECT COUNT(*) FROM labels WHERE review_id = ?", (item_id,)).fetchone()[0]
            assert n == (state in ("highlight", "normal")), (item_id, state)
        fp = fsutil.fingerprint(import_vod)
        stored = {(r["start"], r["end"], r["label"]) for r in labels.list_labels(conn, fingerprint=fp)}
        assert set(imported) <= stored and len(stored) == len(imported)  # no half import either
        assert conn.execute("SELECT COUNT(*) FROM review_items WHERE fingerprint = ?",
                            (fsutil.fingerprint(process_vod),)).fetchone()[0] >= 1
        runs = {r["model"]: dict(r) for r in conn.execute("SELECT * FROM retrain_runs WHERE model IS NOT NULL")}
    finally:
        conn.close()
    reg = Registry(cfg.path("models"))
    for out in trained:  # each acknowledged training: its run recorded, its model complete
        assert runs[out["model"]]["status"] == "done"
        reg.verify(out["model"])
    assert all(Path(p["reel"]).exists() for p in processed if p.get("reel"))
    calls = {lp.name: lp.calls for lp in loops}
    print(f"concurrent writers: {ran:.0f} s of writing; calls {calls}; acknowledged: {len(marked)} answers, "
          f"{len(imported)} imported labels, {len(processed)} process runs, {len(trained)} trainings; "
          f"no lock errors; integrity ok; wall {time.monotonic() - t_start:.0f} s")
