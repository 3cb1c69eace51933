"""The Ray backend on a real Ray cluster on loopback: a head and a second node (one CPU each)
started with `ray start` in temp folders, always stopped at the end.

The daemon runs with ``[cluster] backend = "ray"`` and chunks of 8 s, so every VOD here is
scored as several chunks on both nodes; a local run of the same VODs with the same weights is
the reference. Then a worker node is killed while it runs a chunk, and a node that cannot see
the VOD's folder (a private mount namespace with an empty folder over it) makes a job fail
with one line while the daemon goes on, and retraining runs as one task. Slow: about 8-9
minutes on 2 busy cores, mostly Ray starting fresh worker processes for each job (wall time is
printed).
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from test_daemon import Daemon, wait_for

from autoclip import synth
from autoclip.cluster.chunks import plan_chunks
from autoclip.cluster.loopback import LoopbackCluster

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]

CONFIG = """
[frames]
size = 32
fps = 2
[model]
threads = 1
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
rescan = 2.0
backoff = 0.5
max_attempts = {attempts}
stop_timeout = 5.0
timeout_base = 300.0
[retrain]
enabled = false
[cluster]
backend = "{backend}"
address = "{address}"
chunk = 8.0
connect_timeout = 60.0
"""


def deployment(root: Path, backend: str, address: str, attempts: int = 2) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "autoclip", "init", str(root)], check=True, capture_output=True)
    cfg = root / "config.toml"
    cfg.write_text(CONFIG.format(backend=backend, address=address, attempts=attempts))
    return cfg


@pytest.fixture(scope="module")
def places():
    """Deployments live in ``shared`` (every node sees it) or ``private`` (hidden from the blind node)."""
    base = Path(tempfile.mkdtemp(prefix="acdeploy-", dir="/tmp"))
    (base / "shared").mkdir()
    (base / "private").mkdir()
    yield base
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster():
    t0 = time.monotonic()
    c = LoopbackCluster()
    try:
        c.start_head(num_cpus=1)
        c.add_node(num_cpus=1)
        c.wait_nodes(2)
        print(f"\ncluster of 2 one-CPU nodes up in {time.monotonic() - t0:.1f} s at {c.address}")
        yield c
    finally:
        c.stop()
        print(f"cluster tests: {time.monotonic() - t0:.1f} s wall time in all")


@pytest.fixture(scope="module")
def vods(places):
    folder = places / "media"
    folder.mkdir()
    out = []
    for i, duration in enumerate((20.0, 20.0, 26.0, 40.0)):
        events = synth.plan_events(duration, highlights=2 if duration >= 30 else 1, seed=10 + i)
        out.append(synth.make_vod(folder / f"vod{i}.mp4", duration, events, seed=10 + i).path)
    return out


@pytest.fixture(scope="module")
def local_runs(places, vods, install_untrained_model):
    """The reference: each VOD processed by the local backend, in this process."""
    import torch

    from autoclip import config, store
    from autoclip.pipeline import process_vod

    torch.set_num_threads(1)
    cfg_path = deployment(places / "local", "local", "auto")
    install_untrained_model(cfg_path)
    cfg = config.load(cfg_path)
    runs = {}
    for vod in vods:
        result = process_vod(vod, cfg, progress=False)
        runs[vod.name] = _run(result, cfg.path("jobs") / result["job"])
    conn = store.connect(cfg.path("database"))
    try:
        for name, items in _review_items(conn).items():
            runs[name]["review"] = items
    finally:
        conn.close()
    return runs


@pytest.fixture(scope="module")
def ray_daemon(places, cluster, install_untrained_model):
    cfg = deployment(places / "shared" / "ray", "ray", cluster.address)
    install_untrained_model(cfg)
    d = Daemon(cfg)
    yield d
    d.stop(timeout=60)


def _run(result: dict, job_dir: Path) -> dict:
    with np.load(job_dir / "scores.npz") as z:
        scores = {k: z[k] for k in ("times", "scores", "loudness_times", "loudness_db")}
    return {"segments": result["segments"], "reel": result["reel"], "scores": scores}


def _review_items(conn: sqlite3.Connection) -> dict[str, list]:
    out: dict[str, list] = {}
    conn.row_factory = sqlite3.Row
    for r in conn.execute("SELECT vod, start, end, score, reason FROM review_items ORDER BY vod, start, reason"):
        out.setdefault(Path(r["vod"]).name, []).append((round(r["start"], 3), round(r["end"], 3), r["reason"],
                                                       r["score"]))
    return out


def _duration(path: str | Path) -> float:
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", str(path)],
                         capture_output=True, text=True, check=True)
    return float(out.stdout.strip())


def _done(d: Daemon, names: list[str], timeout: float) -> dict[str, dict]:
    def finished() -> bool:
        jobs = d.by_name()
        return all(n in jobs and jobs[n]["state"] in ("done", "failed") for n in names)

    assert wait_for(finished, timeout, every=1.0), d.text()[-4000:]
    return d.by_name()


def _job_state(d: Daemon, job: dict) -> dict:
    return json.loads((d.root / "jobs" / job["id"] / "state.json").read_text())


def _compare(d: Daemon, job: dict, ref: dict) -> None:
    state = _job_state(d, job)
    got = _run(state["result"], d.root / "jobs" / job["id"])
    np.testing.assert_array_equal(got["scores"]["times"], ref["scores"]["times"])
    diff = float(np.abs(got["scores"]["scores"] - ref["scores"]["scores"]).max())
    assert diff < 1e-4, f"stitched scores differ from the local run by {diff:.2e}"
    np.testing.assert_allclose(got["scores"]["loudness_db"], ref["scores"]["loudness_db"], atol=1e-4)
    assert got["segments"] == ref["segments"]
    assert (got["reel"] is None) == (ref["reel"] is None)
    if got["reel"]:
        assert abs(_duration(got["reel"]) - _duration(ref["reel"])) < 0.05
    print(f"  {Path(job['source']).name}: {len(got['scores']['times'])} frames, max score difference {diff:.1e}, "
          f"{len(got['segments'])} segments")


def test_three_vods_through_the_daemon_match_a_local_run(ray_daemon, vods, local_runs) -> None:
    d = ray_daemon
    t0 = time.monotonic()
    for vod in vods[:3]:
        shutil.copy(vod, d.inbox / vod.name)
    jobs = _done(d, [v.name for v in vods[:3]], 600)
    print(f"\n3 VODs through the daemon on the cluster in {time.monotonic() - t0:.1f} s")
    assert all(jobs[v.name]["state"] == "done" for v in vods[:3]), d.text()[-4000:]
    for vod in vods[:3]:
        _compare(d, jobs[vod.name], local_runs[vod.name])
        n = len(plan_chunks(_job_state(d, jobs[vod.name])["duration"], 8.0))
        assert n >= 3 and f"as {n} chunks on the cluster" in (d.root / "jobs" / jobs[vod.name]["id"] / "log.txt").read_text()
    conn = sqlite3.connect(d.root / "data" / "autoclip.db")
    conn.row_factory = sqlite3.Row
    try:
        review = _review_items(conn)
    finally:
        conn.close()
    res = subprocess.run([sys.executable, "-m", "autoclip", "--config", str(d.cfg), "status", "--json"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    cl = json.loads(res.stdout)["cluster"]
    assert cl["backend"] == "ray" and cl["cpus_total"] == 2 and 0 <= cl["cpus_free"] <= 2
    assert sum(n["alive"] for n in cl["nodes"]) == 2 and all(n["cpus"] == 1 for n in cl["nodes"] if n["alive"])
    text = subprocess.run([sys.executable, "-m", "autoclip", "--config", str(d.cfg), "status"],
                          capture_output=True, text=True, timeout=120).stdout
    assert "cluster   ray at" in text and "2 nodes" in text and "CPUs free" in text, text
    for vod in vods[:3]:
        got, ref = review.get(vod.name, []), local_runs[vod.name]["review"]
        assert ref and [g[:3] for g in got] == [r[:3] for r in ref]
        assert np.allclose([g[3] for g in got], [r[3] for r in ref], atol=1e-4)


def test_a_worker_node_killed_mid_chunk_gives_one_whole_reel(ray_daemon, cluster, vods, local_runs) -> None:
    d, vod = ray_daemon, vods[3]
    victim = cluster.nodes[-1]
    shutil.copy(vod, d.inbox / vod.name)
    assert wait_for(lambda: cluster.worker_running(victim, "_score_chunk"), 300, every=0.05), d.text()[-3000:]
    killed = cluster.kill(victim)
    print(f"\nkilled {killed} processes of the worker node while it ran a chunk")
    jobs = _done(d, [vod.name], 600)
    job = jobs[vod.name]
    assert job["state"] == "done", d.text()[-4000:]
    state = _job_state(d, job)
    assert state["attempts"] == 1 and [h.get("outcome") for h in state["history"]] == ["done"]
    reels = sorted((d.root / "data" / "reels").glob(f"{vod.stem}-*.mp4"))
    assert [str(r) for r in reels] == [state["result"]["reel"]]
    ref = local_runs[vod.name]
    expected = sum(s["end"] - s["start"] for s in ref["segments"])
    assert abs(_duration(reels[0]) - expected) < 0.2 * len(ref["segments"])  # whole: every clip is in it
    _compare(d, job, ref)
    cluster.add_node(num_cpus=1)  # the next test wants two nodes again


def test_a_node_that_cannot_see_the_vod_fails_the_job_and_the_daemon_goes_on(places, cluster, vods,
                                                                             install_untrained_model) -> None:
    for node in cluster.nodes[1:]:
        cluster.kill(node)
    cluster.wait_nodes(1)
    private = places / "private"
    blind = cluster.add_node(num_cpus=1, hide=[private])
    cluster.wait_nodes(2)
    cfg = deployment(private / "ray", "ray", cluster.address, attempts=1)
    install_untrained_model(cfg)
    d = Daemon(cfg)
    try:
        shutil.copy(vods[0], d.inbox / "unseen.mp4")
        job = _done(d, ["unseen.mp4"], 300)["unseen.mp4"]
        assert job["state"] == "failed", job
        error = job["error"]
        assert "\n" not in error and "cannot read" in error and str(d.inbox / "unseen.mp4") in error, error
        assert "storage every node mounts at the same path" in error
        reason = json.loads((d.root / "data" / "failed" / "unseen.mp4.reason.json").read_text())
        assert reason["reason"] == error
        print(f"\nfailed with: {job['error']}")
        assert d.proc.poll() is None
        # the storage is fixed (the node comes back seeing it): the same daemon takes the next VOD
        cluster.kill(blind)
        cluster.wait_nodes(1)
        cluster.add_node(num_cpus=1)
        cluster.wait_nodes(2)
        shutil.copy(vods[1], d.inbox / "seen.mp4")
        job = _done(d, ["seen.mp4"], 300)["seen.mp4"]
        assert job["state"] == "done", d.text()[-4000:]
        assert d.proc.poll() is None
    finally:
        d.stop(timeout=60)


TRAIN = """
[paths]
cache = "{cache}"
[frames]
size = 32
fps = 2
[audio]
n_mels = 16
window = 0.5
[model]
threads = 1
[train]
epochs = 2
batch_size = 8
frames_per_clip = 4
patience = 2
pseudo_max = 0
[cluster]
backend = "{backend}"
address = "{address}"
train_on_cluster = true
"""


def test_train_on_cluster_runs_the_fit_as_one_task_with_the_local_result(places, cluster) -> None:
    from autoclip import config, labels, store

    events = synth.plan_events(60, highlights=2, visual=1, audio=1, seed=5)
    vod = synth.make_vod(places / "media" / "train.mp4", 60, events, width=160, height=90, seed=5)
    clips = synth.sample_clips(vod, normal_per_event=1.0, seed=1)
    out = {}
    for backend in ("local", "ray"):
        root = places / "shared" / f"train-{backend}"
        root.mkdir()
        (root / "config.toml").write_text(TRAIN.format(cache=places / "cache", backend=backend, address=cluster.address))
        conn = store.connect(config.load(root / "config.toml").path("database"))
        for start, end, label in clips:
            labels.add_label(conn, vod.path, start, end, label, "import")
        conn.close()
        t0 = time.monotonic()
        res = subprocess.run([sys.executable, "-m", "autoclip", "--config", str(root / "config.toml"), "train", "--json",
                              "--threads", "1"], capture_output=True, text=True, timeout=900)
        assert res.returncode == 0, res.stderr[-3000:]
        print(f"\ntraining with backend {backend}: {time.monotonic() - t0:.1f} s")
        result = json.loads(res.stdout)
        metrics = json.loads((root / "data" / "models" / result["model"] / "metrics.json").read_text())
        out[backend] = (result, metrics, res.stderr)
    assert "training on the cluster (one task" in out["ray"][2] and "training on the cluster" not in out["local"][2]
    local, ray_ = out["local"][1], out["ray"][1]
    assert [h["epoch"] for h in ray_["history"]] == [h["epoch"] for h in local["history"]]
    assert np.allclose([h["loss"] for h in ray_["history"]], [h["loss"] for h in local["history"]], atol=1e-4)
    assert ray_["val"]["ap"] == pytest.approx(local["val"]["ap"], abs=1e-6)
    assert out["ray"][0]["promoted"]
