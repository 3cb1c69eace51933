"""Training end to end on a small generated VOD: registry, metrics, plots, the skip and margin
rules, pseudo-labels, the run history, the CLI, a SIGKILLed training, and (slow) the issue's
"done means" experiment."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from autoclip import cli, config, labels, store, synth
from autoclip.registry import Registry
from autoclip.train import train
from autoclip.trainrun import TrainLock

ROOT = Path(__file__).resolve().parents[1]

TINY = """
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
epochs = {epochs}
batch_size = 8
frames_per_clip = 4
patience = 2
promote_margin = {margin}
promote_loss_margin = {margin}
pseudo_labels = true
pseudo_max = 40
"""


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def vod(tmp_path_factory: pytest.TempPathFactory) -> synth.SynthVod:
    folder = tmp_path_factory.mktemp("train-media")
    events = synth.plan_events(120, highlights=3, visual=2, audio=2, seed=5)
    return synth.make_vod(folder / "tiny.mp4", 120, events, width=160, height=90, seed=5)


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("feature-cache")


class Deployment:
    def __init__(self, root: Path, cache: Path, vod: synth.SynthVod, epochs: int = 2, margin: float = 0.0) -> None:
        self.root = root
        self.vod = vod
        self.cfg_path = root / "config.toml"
        self.write(epochs=epochs, margin=margin, cache=cache)
        self.cfg = config.load(self.cfg_path)
        self.conn = store.connect(self.cfg.path("database"))
        self.clips = synth.sample_clips(vod, normal_per_event=1.0, seed=1)
        for start, end, label in self.clips:
            labels.add_label(self.conn, vod.path, start, end, label, "import")

    def write(self, **kw: Any) -> None:
        self.cfg_path.write_text(TINY.format(**kw))

    def reload(self, **kw: Any) -> None:
        self.write(**kw)
        self.cfg = config.load(self.cfg_path)

    @property
    def registry(self) -> Registry:
        return Registry(self.cfg.path("models"))

    def runs(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self.conn.execute("SELECT * FROM retrain_runs ORDER BY id")]


@pytest.fixture
def dep(tmp_path: Path, shared_cache: Path, vod: synth.SynthVod) -> Deployment:
    return Deployment(tmp_path, shared_cache, vod)


def test_metrics_numbers() -> None:
    from autoclip import metrics

    labels_ = np.array([1, 1, 0, 0, 0])
    scores = np.array([0.9, 0.4, 0.6, 0.2, 0.1])
    m = metrics.classification(labels_, scores, 0.5)
    assert m["confusion"] == [[2, 1], [1, 1]]
    assert m["precision"] == pytest.approx(0.5) and m["recall"] == pytest.approx(0.5)
    assert m["ap"] == pytest.approx((1.0 + 2 / 3) / 2)
    assert metrics.classification(np.zeros(3), np.ones(3) * 0.2, 0.5)["ap"] is None
    np.testing.assert_allclose(metrics.clip_scores(np.array([0.2, 0.4, 1.0]), np.array([0, 0, 2]), 3), [0.3, 0.0, 1.0])


def _random_split(n: int, size: int = 32) -> Any:
    from autoclip.dataset import Clip
    from autoclip.fitting import SplitData

    rng = np.random.default_rng(0)
    clips = [Clip("v.mp4", "fp", i, i + 1, i % 2, i) for i in range(4)]
    idx = np.arange(n) % 4
    return SplitData(clips, rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8),
                     rng.standard_normal((n, 16, 21)).astype(np.float32), idx,
                     np.array([clips[i].label for i in idx], np.float32), np.ones(n, np.float32))


def test_frozen_backbone_then_unfrozen(make_cfg) -> None:
    from autoclip.fitting import fit, train_one_epoch
    from autoclip.model import ModelDims, build_model

    torch.manual_seed(0)
    net = build_model(ModelDims(kind="fused", size=32, n_mels=16, mel_frames=21, context=2, motion=True), "none")
    data = _random_split(16)
    cfg = make_cfg({"train": {"epochs": 2, "freeze_epochs": 1, "batch_size": 8, "patience": 5}})
    before = {k: v.clone() for k, v in net.state_dict().items()}
    net.set_backbone_trainable(False)
    opt = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=1e-2)
    train_one_epoch(net, data, opt, batch_size=8, pos_weight=1.0, seed=0, cfg=cfg, frozen_backbone=True)
    after = net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in after if k.startswith("frames."))  # weights and BN stats
    assert not torch.equal(before["head.1.weight"], after["head.1.weight"])

    result = fit(net, data, _random_split(8), cfg, pretrained=True, progress=False)
    assert [(h["phase"], h["frozen"]) for h in result.history] == [("frames", True), ("frames", False), ("segments", False)]
    assert all(p.requires_grad for p in net.parameters())
    # fit keeps its best epoch (on random data, maybe the frozen one); an unfrozen epoch moves the backbone
    kept = net.state_dict()["frames.conv1.weight"].clone()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-2)
    train_one_epoch(net, data, opt, batch_size=8, pos_weight=1.0, seed=0, cfg=cfg, frozen_backbone=False)
    assert not torch.equal(kept, net.state_dict()["frames.conv1.weight"])


def test_neighbour_rows_stay_inside_their_segment() -> None:
    from autoclip.fitting import neighbour_rows

    seg = np.array([0, 0, 0, 1, 2, 2])
    assert neighbour_rows(seg, np.array([0, 1, 2, 3, 4, 5])).tolist() == [
        [0, 0, 1], [0, 1, 2], [1, 2, 2], [3, 3, 3], [4, 4, 5], [4, 5, 5]]


def test_temporal_fit_learns_frames_first_then_segments_with_batchnorm_and_per_frame_parts_frozen(make_cfg) -> None:
    from autoclip.fitting import phases, train_one_epoch
    from autoclip.model import ModelDims, build_model

    torch.manual_seed(0)
    net = build_model(ModelDims(kind="fused", size=32, n_mels=16, mel_frames=21, context=2, motion=True), "none")
    assert [p.name for p in phases(net, 8)] == ["frames", "segments"] and phases(net, 8)[1].epochs == 4
    assert phases(net, 8)[0].per_frame and not phases(net, 8)[1].per_frame
    single = build_model(ModelDims(kind="fused", size=32, n_mels=16, mel_frames=21), "none")
    assert [p.name for p in phases(single, 8)] == ["frames"]
    data = _random_split(16)
    data.seg = np.repeat(np.arange(4), 4)
    cfg = make_cfg({"train": {"batch_size": 8}})
    opt = torch.optim.AdamW(net.parameters(), lr=1e-2)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    train_one_epoch(net, data, opt, batch_size=8, pos_weight=1.0, seed=0, cfg=cfg)  # independent frames
    after = net.state_dict()
    assert not torch.equal(before["frames.bn1.running_mean"], after["frames.bn1.running_mean"])
    assert not torch.equal(before["motion.body.1.running_mean"], after["motion.body.1.running_mean"])
    assert not torch.equal(before["tv.0.weight"], after["tv.0.weight"])

    before = {k: v.clone() for k, v in net.state_dict().items()}
    for p in net.per_frame_parameters():  # as fit does in the segments phase
        p.requires_grad_(False)
    train_one_epoch(net, data, opt, batch_size=8, pos_weight=1.0, seed=1, cfg=cfg, segments=True)
    after = net.state_dict()
    stats = [k for k in after if k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    assert stats and all(torch.equal(before[k], after[k]) for k in stats)  # batch-norm statistics frozen
    assert not torch.equal(before["tv.0.weight"], after["tv.0.weight"])
    assert torch.equal(before["frames.conv1.weight"], after["frames.conv1.weight"])


def test_first_training_saves_promotes_and_records(dep: Deployment) -> None:
    out = train(dep.cfg, dep.conn, trigger="manual", progress=False)
    assert out["promoted"] and not out["skipped"] and "first" in out["reason"]
    assert set(out["metrics"]) == {"val", "test"}
    val = out["metrics"]["val"]
    for key in ("ap", "precision", "recall", "f1", "confusion", "clips", "frame_ap"):
        assert key in val
    reg = dep.registry
    assert reg.current_id() == out["model"]
    folder = reg.root / out["model"]
    for name in ("weights.safetensors", "model.json", "metrics.json", "pr_curve.png", "training.png", "confusion.png"):
        assert (folder / name).stat().st_size > 0, name
    saved = json.loads((folder / "metrics.json").read_text())
    # the default temporal model: 2 passes of independent frames, then 1 of whole segments
    assert [h["phase"] for h in saved["history"]] == ["frames", "frames", "segments"]
    assert saved["history"][0]["images_per_s"] > 0
    runs = dep.runs()
    assert [(r["status"], r["model"], r["promoted"], r["trigger"]) for r in runs] == [("done", out["model"], 1, "manual")]
    checks = dep.conn.execute("SELECT COUNT(*) FROM review_items WHERE reason = 'check-label'").fetchone()[0]
    assert 0 < checks <= dep.cfg.review.check_labels

    again = train(dep.cfg, dep.conn, trigger="cron", progress=False)
    assert again["skipped"] and not again["promoted"] and "unchanged" in again["reason"]
    assert again["model"] == out["model"] and again["metrics"]["val"] == saved["val"]
    assert len(reg.ids()) == 1 and dep.runs()[-1]["status"] == "skipped"


def test_a_student_not_worse_is_promoted_compared_on_clips_the_teacher_never_trained_on(dep: Deployment) -> None:
    from autoclip import compare, splits

    first = train(dep.cfg, dep.conn, progress=False)
    reg = dep.registry
    record = json.loads((reg.root / first["model"] / "clips.json").read_text())
    assert record["train"] and sum(len(record[k]) for k in ("train", "val", "test")) == len(dep.clips)
    # a warm-started student within the (here very wide) margin of the teacher is promoted
    dep.reload(epochs=1, margin=1.0, cache=dep.cfg.path("cache"))
    labels.add_label(dep.conn, dep.vod.path, 1.0, 2.0, "normal", "cli")  # a changed label set
    second = train(dep.cfg, dep.conn, trigger="labels", progress=False)
    assert not second["skipped"] and second["promoted"], second["reason"]
    assert "not worse" in second["reason"] and reg.current_id() == second["model"]
    saved = reg.metrics(second["model"])
    assert saved["start"] == f"warm:{first['model']}"
    cmp = saved["comparison"]
    assert cmp["teacher"]["frame_ap"] is not None and [c["metric"] for c in cmp["checks"]][0] == "frame_ap"
    # the comparison holds exactly the validation clips the teacher did not train on
    from autoclip.dataset import load_clips

    val = splits.split_clips(load_clips(dep.conn), dep.cfg.train.split, dep.cfg.train.seed,
                             gap=dep.cfg.audio.window)["val"]
    trained = compare.trained_ranges(reg, first["model"])
    assert trained is not None and len(trained) == len(record["train"])
    assert cmp["student"]["clips"] == len(compare.unseen_by(val, trained, dep.cfg.audio.window)) > 0
    assert reg.meta(second["model"])["decision"] == {"promote": True, "reason": second["reason"]}
    assert reg.rollback() == first["model"]  # one command undoes it


def test_another_running_training_is_skipped(dep: Deployment) -> None:
    with TrainLock(dep.cfg.path("models")) as held:
        assert held.acquired
        out = train(dep.cfg, dep.conn, progress=False)
    assert out["skipped"] and "another training" in out["reason"]
    assert dep.runs()[-1]["status"] == "skipped"


def _scored_job(dep: Deployment, vod: synth.SynthVod, times: np.ndarray, scores: np.ndarray, model: str) -> None:
    from autoclip.fsutil import fingerprint

    job = dep.cfg.path("jobs") / f"vod-{vod.path.stem}"
    job.mkdir(parents=True)
    np.savez(job / "scores.npz", times=times, scores=scores.astype(np.float32))
    (job / "process.json").write_text(json.dumps({"vod": str(vod.path), "fingerprint": fingerprint(vod.path),
                                                  "model": model}))


def test_pseudo_labels_from_the_teacher(dep: Deployment, tmp_path: Path, vod: synth.SynthVod) -> None:
    first = train(dep.cfg, dep.conn, progress=False)
    # a processed VOD nobody labelled, scored by the current model (the teacher)
    other = synth.make_vod(tmp_path / "unlabelled.mp4", 40, synth.plan_events(40, highlights=1, seed=2),
                           width=160, height=90, seed=2)
    times = np.arange(0.25, 40, 0.5)
    hl = other.highlights()[0]
    _scored_job(dep, other, times, np.where((times >= hl.start) & (times <= hl.end), 0.99, 0.02), first["model"])
    student = train(dep.cfg, dep.conn, progress=False, force=True)
    meta = dep.registry.metrics(student["model"])
    human = meta["train"]["samples"] - meta["train"]["pseudo"]
    assert meta["train"]["pseudo"] * dep.cfg.train.pseudo_weight <= 0.5 * human
    assert meta["train"]["pseudo_plan"].startswith("thresholds")
    without = train(dep.cfg, dep.conn, progress=False, force=True, pseudo=False)
    assert dep.registry.metrics(without["model"])["train"]["pseudo"] == 0


def test_a_human_normal_range_never_becomes_a_pseudo_positive(dep: Deployment) -> None:
    from autoclip.dataset import load_clips
    from autoclip.featcache import FeatureCache
    from autoclip.trainrun import PseudoPlan, gather_pseudo

    first = train(dep.cfg, dep.conn, progress=False)
    teacher = dep.registry.load(first["model"])
    times = np.arange(0.25, dep.vod.duration, 0.5)
    _scored_job(dep, dep.vod, times, np.full(len(times), 0.99), first["model"])  # "all highlight"
    clips = load_clips(dep.conn)
    got = gather_pseudo(dep.cfg, FeatureCache(dep.cfg.path("cache")), teacher, clips, PseudoPlan(0.9, 0.1, 40, ""))
    assert len(got) > 0 and np.all(got.targets >= 0.9)
    for c in clips:  # no pseudo-label at all inside (or next to) any human range, normal ones included
        assert not np.any((got.times >= c.start - 0.5) & (got.times <= c.end + 0.5)), c


def _cli(capsys: pytest.CaptureFixture[str], cfg_path: Path, *args: str) -> tuple[int, str, str]:
    rc = cli.main(["--config", str(cfg_path), *args])
    got = capsys.readouterr()
    return rc, got.out, got.err


def test_cli_train_json_and_models_commands(dep: Deployment, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = _cli(capsys, dep.cfg_path, "train", "--json", "--no-pseudo", "--kind", "audio")
    assert rc == 0
    first = json.loads(out)
    assert first["promoted"] and isinstance(first["metrics"]["val"], dict) and "ap" in first["metrics"]["val"]
    rc, out, _ = _cli(capsys, dep.cfg_path, "train", "--json", "--kind", "audio")
    assert json.loads(out)["skipped"]
    rc, out, _ = _cli(capsys, dep.cfg_path, "train", "--json", "--kind", "audio", "--force", "--trigger", "missed")
    second = json.loads(out)["model"]

    rc, out, _ = _cli(capsys, dep.cfg_path, "models", "list", "--json")
    listed = {m["id"]: m for m in json.loads(out)}
    assert set(listed) == {first["model"], second}
    rc, out, _ = _cli(capsys, dep.cfg_path, "models", "show", first["model"])
    assert rc == 0 and "checksum ok" in out
    crops = dep.registry.metrics(first["model"])["crops"]  # no [frames] crop: every clip uses the whole frame
    assert crops["whole"] == sum(crops.values()) > 0 and f"face cam   {crops['whole']} whole frame" in out
    current_before = dep.registry.current_id()
    other = first["model"] if current_before == second else second
    assert _cli(capsys, dep.cfg_path, "models", "promote", other)[0] == 0
    assert dep.registry.current_id() == other
    assert _cli(capsys, dep.cfg_path, "models", "rollback")[0] == 0
    assert dep.registry.current_id() == current_before
    rc, _, err = _cli(capsys, dep.cfg_path, "models", "promote", "no-such-model")
    assert rc == 1 and "autoclip models list" in err
    assert [r["trigger"] for r in dep.runs()] == ["manual", "manual", "missed"]


def test_sigkilled_training_leaves_current_complete(dep: Deployment) -> None:
    first = train(dep.cfg, dep.conn, progress=False)
    dep.reload(epochs=200, margin=0.0, cache=dep.cfg.path("cache"))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "autoclip", "--config", str(dep.cfg_path), "train", "--force"],
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, env=env, text=True)
    assert proc.stderr is not None
    deadline = time.monotonic() + 120
    for line in proc.stderr:  # wait until it is training
        if "epoch 1/" in line or time.monotonic() > deadline:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    reg = dep.registry
    assert reg.current_id() == first["model"]
    reg.load(first["model"])  # complete, checksum verified
    assert reg.ids() == [first["model"]], "no partial model is visible"
    assert dep.runs()[-1]["status"] == "running"
    dep.reload(epochs=1, margin=0.0, cache=dep.cfg.path("cache"))
    train(dep.cfg, dep.conn, progress=False, force=True)
    killed = dep.runs()[-2]
    assert killed["status"] == "failed" and "interrupted" in killed["detail"]


@pytest.mark.slow
def test_done_means_fused_beats_single_branches(tmp_path: Path) -> None:
    """36 labelled clips of generated VODs: fused frame AP >= 0.9 on a whole VOD nobody labelled,
    in < 5 min, better than either branch (mean over 3 seeds)."""
    sys.path.insert(0, str(ROOT / "experiments"))
    import train_synth

    numbers = train_synth.run(tmp_path, seeds=[0, 1, 2], threads=2)
    print(train_synth.report(numbers))
    assert numbers["labels"] == {"highlight": 12, "normal": 24}
    checks = train_synth.summary(numbers)["checks"]
    assert len(checks) == 4 and all(checks.values()), checks


def test_a_teacher_that_scored_its_fused_head_warm_starts_an_agreeing_student(make_cfg) -> None:
    """model.combine adds no weights: the first retrain after the default changed starts warm."""
    from dataclasses import replace

    from autoclip.model import ModelDims, build_model
    from autoclip.registry import LoadedModel
    from autoclip.train import _initial_model

    dims = ModelDims(kind="fused", size=32, n_mels=16, mel_frames=21, context=2, motion=True, combine="agree")
    old = replace(dims, combine="fused")
    teacher = LoadedModel(build_model(old, "none"), old, {}, "m-old")
    net, start = _initial_model(make_cfg({}), dims, teacher)
    assert start == "warm:m-old" and net.dims.combine == "agree"
    torch.testing.assert_close(net.state_dict()["head.1.weight"], teacher.net.state_dict()["head.1.weight"])
    _, cold = _initial_model(make_cfg({}), replace(dims, context=1), teacher)
    assert cold == "random"
