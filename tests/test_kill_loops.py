"""RELIABILITY items 26 and 27 at scale: at least 200 random SIGKILLs each of the label/review
writer and of train -> evaluate -> promote, checking after every kill (tests/killloop.py forks
the workers from a zygote so a round costs milliseconds, not an interpreter start).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from killloop import KillLoop

from autoclip import config, store, synth
from autoclip.registry import Registry
from autoclip.review import queue

KILLS = 200
ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "AUTOCLIP_THREADS": "1"}


def integrity(db: Path) -> str:
    conn = store.connect(db)
    try:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        conn.close()


LABEL_SETUP = """
from pathlib import Path
from autoclip import labels, store
from autoclip.review import queue
DB, CSVS = {db!r}, Path({csvs!r})
"""
LABEL_WORK = """
conn = store.connect(DB)
if i % 2 == 0:  # one CSV of 20 rows: all of it or none of it
    labels.import_csv(conn, CSVS / f"{i}.csv")
    ack(f"import {i}")
else:  # answers one by one, each acknowledged after its commit
    for n, item in enumerate(queue.list_items(conn, "pending", limit=20)):
        state = queue.mark(conn, item["id"], ("highlight", "normal", "skip")[(item["id"] + n) % 3])["state"]
        ack(f"mark {item['id']} {state}")
conn.close()
"""
ROWS = 20


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_200_sigkills_of_the_label_and_review_writer_lose_no_acknowledged_write(tmp_path: Path) -> None:
    t_start = time.monotonic()
    cfg = config.from_dict({"review": {"per_vod": 200, "uncertain": 200, "min_spacing": 1.0}}, root=tmp_path)
    cfg.ensure_dirs()
    db = cfg.path("database")
    vod = synth.make_vod(tmp_path / "v.mp4", 4, [], words=False).path
    csvs = tmp_path / "csv"
    csvs.mkdir()
    rounds = 2 * KILLS + 100
    for i in range(0, rounds, 2):  # non-overlapping rows per round, so every import is valid
        rows = [f"{vod},{i * 50 + 2 * j},{i * 50 + 2 * j + 1},{('highlight', 'normal')[j % 2]}" for j in range(ROWS)]
        (csvs / f"{i}.csv").write_text("vod,start,end,label\n" + "\n".join(rows) + "\n")
    conn = store.connect(db)
    rng = np.random.default_rng(7)
    times = np.arange(0, 3000, 0.25)
    for k in range(12):  # plenty of pending answers
        queue.enqueue_after_process(conn, cfg, vod=f"/videos/{k}.mkv", fingerprint=f"fp-{k}", job=None, model=None,
                                    times=times, scores=rng.uniform(0, 1, len(times)), segments=[])
    conn.close()

    imports: set[int] = set()
    marks: dict[int, str] = {}
    kills, done = 0, []
    with KillLoop(LABEL_SETUP.format(db=str(db), csvs=str(csvs)), LABEL_WORK, env=ENV, log=tmp_path / "zygote.log") as z:
        calibration = [z.round(0, None), z.round(1, None)]  # how long a round takes unkilled
        assert all(r.exit == 0 and not r.errors for r in calibration)
        typical = {r.i: r.seconds for r in calibration}
        marks.update({int(a.split()[1]): a.split()[2] for a in calibration[1].acks})
        i = 2
        while kills < KILLS:
            assert i < rounds, f"only {kills} of {i} rounds were killed before they finished"
            r = z.round(i, kill_after=float(rng.uniform(0.0, 1.1 * typical[i % 2])))
            assert not r.errors, r.errors
            kills += r.killed
            done.append(r.exit == 0)
            for a in r.acks:
                kind, *rest = a.split()
                if kind == "import":
                    imports.add(int(rest[0]))
                else:
                    marks[int(rest[0])] = rest[1]
            if i % 50 == 0:
                assert integrity(db) == "ok"
            i += 1
    conn = store.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        for k in range(2, i, 2):  # every import is whole or absent; every acknowledged one is whole
            n = conn.execute("SELECT COUNT(*) FROM labels WHERE source = 'import' AND start >= ? AND start < ?",
                             (k * 50, k * 50 + 2 * ROWS)).fetchone()[0]
            assert n == (ROWS if k in imports else n) and n in (0, ROWS), (k, n)
        for item_id, state in marks.items():
            assert queue.get_item(conn, item_id)["state"] == state
        for row in conn.execute("SELECT id, state, label_id FROM review_items WHERE state != 'pending'"):
            has = conn.execute("SELECT COUNT(*) FROM labels WHERE review_id = ?", (row["id"],)).fetchone()[0]
            assert has == (row["state"] in ("highlight", "normal")), dict(row)  # an answer never without its label
    finally:
        conn.close()
    assert kills >= KILLS and len(imports) >= 5 and len(marks) >= 50
    print(f"label/review writer: {kills} SIGKILLs in {i - 2} rounds ({sum(done)} finished first); "
          f"{len(imports)} acknowledged imports and {len(marks)} acknowledged answers all present; "
          f"integrity ok; wall {time.monotonic() - t_start:.0f} s")


TRAIN_CONFIG = """
[paths]
cache = "cache"
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
epochs = 2
batch_size = 8
frames_per_clip = 2
patience = 1
pseudo_max = 0
"""
TRAIN_SETUP = """
import json
import torch
torch.set_num_threads(1)
# what a training imports on first use (seconds each here): once, in the zygote
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot
import sklearn.metrics
import torch._dynamo
from autoclip import config, dataset, metrics, model, store
from autoclip.train import train
cfg = config.load({cfg!r})
"""
TRAIN_WORK = """
conn = store.connect(cfg.path("database"))
res = train(cfg, conn, progress=False, force=True)
ack(json.dumps({"model": res["model"], "promoted": res["promoted"]}))
conn.close()
"""


def check_registry(reg: Registry) -> str | None:
    """`current` names a complete model whose checksum matches; every visible model is complete."""
    current = reg.current_id()
    if current is not None:
        reg.verify(current)
    for mid in reg.ids():
        reg.verify(mid)
    return current


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_200_sigkills_in_train_evaluate_promote_always_leave_a_complete_current(tmp_path: Path) -> None:
    from autoclip import labels

    t_start = time.monotonic()
    (tmp_path / "config.toml").write_text(TRAIN_CONFIG)
    cfg = config.load(tmp_path / "config.toml")
    cfg.ensure_dirs()
    conn = store.connect(cfg.path("database"))
    for seed in range(3):
        v = synth.make_vod(tmp_path / f"v{seed}.mp4", 60, synth.plan_events(60, highlights=2, visual=1, audio=1, seed=seed),
                           seed=seed, width=160, height=90)
        for s, e, lab in synth.sample_clips(v, seed=seed):
            labels.add_label(conn, v.path, s, e, lab, "import")
    conn.close()
    reg = Registry(cfg.path("models"))
    rng = np.random.default_rng(11)
    kills, finished, promoted_ids, phases = 0, 0, [], []
    with KillLoop(TRAIN_SETUP.format(cfg=str(tmp_path / "config.toml")), TRAIN_WORK, env=ENV,
                  log=tmp_path / "zygote.log") as z:
        first = z.round(0, None)  # fills the feature cache, makes the first current model
        assert first.exit == 0 and not first.errors, first.errors
        typical = z.round(1, None).seconds
        assert check_registry(reg) is not None
        i = 2
        while kills < KILLS:
            assert i < 2 * KILLS, f"only {kills} of {i} rounds were killed before they finished"
            kill_after = float(rng.uniform(0.0, 1.15 * typical))
            r = z.round(i, kill_after=kill_after)
            assert not r.errors, (i, r.errors)
            kills += r.killed
            phases.append(kill_after / typical)
            if r.exit == 0:
                finished += 1
                out = json.loads(r.acks[-1])
                reg.verify(out["model"])
                if out["promoted"]:
                    promoted_ids.append(out["model"])
            assert check_registry(reg) is not None, f"round {i}: no current model"
            i += 1
        last = z.round(i, None)  # one clean run after all that
        assert last.exit == 0 and not last.errors
    current = check_registry(reg)
    reg.load(current)  # and it loads
    conn = store.connect(cfg.path("database"))
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        statuses = [r[0] for r in conn.execute("SELECT status FROM retrain_runs ORDER BY id")]
    finally:
        conn.close()
    assert "running" not in statuses  # the killed runs were closed as interrupted by the next one
    assert statuses.count("done") >= finished + 3
    assert kills >= KILLS
    print(f"train -> evaluate -> promote: {kills} SIGKILLs in {i - 2} rounds ({finished} finished first, "
          f"{len(promoted_ids)} of those promoted); a round takes {typical:.2f} s unkilled; current always "
          f"complete and checksum-verified; {len(reg.ids())} models visible; wall {time.monotonic() - t_start:.0f} s")
