"""`score`, `process`, `render`, `crop` through the real CLI, with a real (untrained) registry model,
plus the slow end-to-end check with a model trained on generated VODs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from autoclip import cli, config, synth
from autoclip.metrics import match_segments

HOSTILE = "-a 'quoted' \"name\" ストリーム"


@pytest.fixture(scope="module")
def vod(tmp_path_factory) -> synth.SynthVod:
    folder = tmp_path_factory.mktemp("inbox")
    return synth.make_vod(folder / f"{HOSTILE}.mp4", 24, [synth.Event(8.0, 12.0, "highlight")])


def write_config(root: Path, **selection) -> Path:
    sel = {"threshold": 0.01, "low_threshold": 0.01, "max_length": 6.0, "smooth": 1.0, **selection}
    lines = ["[frames]", "size = 32", "fps = 2", "[model]", "threads = 1", "kind = \"audio\"",
             "[render]", "height = 180", "preset = \"ultrafast\"", "[shorts]", "count = 1", "size = \"90x160\"",
             "[selection]"]
    lines += [f"{k} = {v}" for k, v in sel.items()]
    path = root / "config.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def deployment(tmp_path) -> Path:
    root = tmp_path / "deploy"
    root.mkdir()
    return write_config(root)


def run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = cli.main(list(argv))
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_no_model_says_train_first(deployment, vod, capsys):
    rc, out, err = run(capsys, "--config", str(deployment), "process", "--json", "--", str(vod.path))
    assert rc == 1 and out == ""
    last = err.strip().splitlines()[-1]
    assert "autoclip train" in last and "label import" in last


def test_score_process_render(deployment, vod, capsys, tmp_path, install_untrained_model):
    mid = install_untrained_model(deployment)
    csv_file = tmp_path / "s.csv"
    rc, out, _ = run(capsys, "--config", str(deployment), "score", "--json", "--csv", str(csv_file), "--", str(vod.path))
    assert rc == 0
    scored = json.loads(out)
    assert len(scored["times"]) == len(scored["scores"]) == 48  # 24 s at 2 fps
    assert np.allclose(np.diff(scored["times"]), 0.5, atol=0.05)
    assert len(csv_file.read_text().splitlines()) == 49

    rc, out, _ = run(capsys, "--config", str(deployment), "process", "--json", "--", str(vod.path))
    assert rc == 0
    res = json.loads(out)
    assert res["vod"] == str(vod.path) and res["model"] == mid and res["job"] == scored["job"]
    assert len(res["segments"]) == 1 and set(res["segments"][0]) == {"start", "end", "score"}
    seg = res["segments"][0]
    assert seg["end"] - seg["start"] <= 6.0 + 1e-6
    reel = Path(res["reel"])
    assert reel.exists() and reel.parent == config.load(deployment).path("reels")
    doc = json.loads(Path(res["segments_file"]).read_text())
    assert doc["model"] == mid and doc["segments"][0]["start"] == seg["start"]
    assert sorted(res["exports"]) == ["edl", "fcpxml", "otio"] and all(Path(p).exists() for p in res["exports"].values())
    assert len(res["shorts"]) == 1 and Path(res["shorts_file"]).exists()  # no crop set: the game layout
    job_dir = Path(res["job_dir"])
    assert (job_dir / "scores.npz").exists() and (job_dir / "process.json").exists()

    # a config change, then re-render from the stored scores (by job id, then by folder)
    write_config(deployment.parent, max_length=4.0, snap=0.0)
    rc, out, _ = run(capsys, "--config", str(deployment), "render", "--json", res["job"])
    assert rc == 0
    again = json.loads(out)
    assert again["reel"] == res["reel"]
    assert again["segments"][0]["end"] - again["segments"][0]["start"] <= 4.0 + 1e-6
    rc, out, _ = run(capsys, "--config", str(deployment), "render", str(job_dir))
    assert rc == 0 and "reel:" in out

    rc, _, err = run(capsys, "--config", str(deployment), "render", "no-such-job")
    assert rc == 2 and "autoclip process" in err


def test_process_queues_review_items(deployment, vod, capsys, install_untrained_model):
    install_untrained_model(deployment)
    rc, out, _ = run(capsys, "--config", str(deployment), "process", "--json", "--", str(vod.path))
    assert rc == 0
    res = json.loads(out)
    from autoclip import store
    from autoclip.review import queue

    conn = store.connect(config.load(deployment).path("database"))
    items = queue.list_items(conn)
    assert items and all(i["job"] == res["job"] for i in items)
    assert any(i["reason"] == "in-reel" for i in items)


def test_crop_helper(deployment, vod, capsys, tmp_path):
    out_png = tmp_path / "frame.png"
    rc, out, _ = run(capsys, "--config", str(deployment), "crop", "--at", "00:05", "--out", str(out_png),
                     "--", str(vod.path))
    assert rc == 0 and out_png.stat().st_size > 0
    assert "crop = [224, 108, 96, 72]" in out and "[frames.profiles.a]" in out
    rc, _, err = run(capsys, "--config", str(deployment), "crop", "--at", "5 min", "--", str(vod.path))
    assert rc == 2 and "--at" in err
    rc, _, err = run(capsys, "--config", str(deployment), "crop", "--at", "99:00", "--", str(vod.path))
    assert rc == 2 and "only 00:00:24 long" in err


# ---------------------------------------------------------------------------------------------
# The "done means": a model trained by the training flow on generated VODs
# ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_trained_model_finds_planted_highlights(tmp_path):
    """Train with the training issue's flow (two generated VODs, highlights + one-sense distractors
    + quiet clips labelled), then process a held-out VOD with a hostile name."""
    from autoclip import labels, store
    from autoclip import train as train_mod
    from autoclip.pipeline import process_vod

    root = tmp_path / "deploy"
    root.mkdir()
    (root / "config.toml").write_text("[model]\nthreads = 2\n[render]\nheight = 180\npreset = \"ultrafast\"\n")
    cfg = config.load(root / "config.toml")
    cfg.ensure_dirs()
    conn = store.connect(cfg.path("database"))
    for i in range(2):
        events = synth.plan_events(240, highlights=6, visual=4, audio=4, seed=100 + i)
        v = synth.make_vod(tmp_path / f"train{i}.mp4", 240, events, seed=100 + i)
        for s, e, lab in synth.sample_clips(v, normal_per_event=4 / 6, seed=i):
            labels.add_label(conn, v.path, s, e, lab, "cli")
    out = train_mod.train(cfg, conn, trigger="manual", pseudo=False, progress=False, force=True)
    if not out["promoted"]:
        from autoclip.registry import Registry

        Registry(cfg.path("models")).promote(out["model"])

    held = synth.make_vod(tmp_path / f"{HOSTILE} held out.mkv", 300,
                          synth.plan_events(300, highlights=8, visual=4, audio=4, seed=99), seed=99)
    res = process_vod(held.path, cfg, progress=False, conn=conn)
    found = [(s["start"], s["end"]) for s in res["segments"]]
    truth = [(e.start, e.end) for e in held.highlights()]
    m = match_segments(found, truth)
    print(f"found {found}\ntruth {truth}\n{m.describe()}")
    assert m.recall >= 0.9 and m.precision >= 0.9, (found, truth)
    for s, e in found:
        for w0, w1 in held.words:
            assert not (w0 < s < w1) and not (w0 < e < w1), (s, e, w0, w1)
    assert Path(res["reel"]).exists()


def test_prefetch_keeps_order_and_raises_errors():
    from autoclip.scoring import prefetch

    assert list(prefetch(iter(range(50)), 2)) == list(range(50))

    closed = []

    def failing():
        try:
            yield 1
            raise ValueError("decode broke")
        finally:
            closed.append(True)

    got = []
    with pytest.raises(ValueError, match="decode broke"):
        for x in prefetch(failing(), 2):
            got.append(x)
    assert got == [1] and closed == [True]
