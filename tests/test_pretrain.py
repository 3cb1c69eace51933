"""Self-supervised pretraining on the deployment's own VODs (``model.pretrained = "self"``): the
contrastive task learns on generated VODs, its weights are what a new model starts from, they
are made again when VODs are added or the file is damaged, and the CLI reports them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from autoclip import cli, config, labels, pretrain, store, synth
from autoclip.model import ModelDims, build_model
from autoclip.registry import Registry
from autoclip.train import train
from benchmarks.realistic.tomlout import dumps

#: a tiny deployment: 32 px frames at 2 fps, short audio windows, one torch thread, few passes
SETTINGS = {
    "frames": {"size": 32, "fps": 2},
    "audio": {"n_mels": 16, "window": 0.5},
    "model": {"threads": 1, "pretrained": "self"},
    "train": {"epochs": 1, "batch_size": 8, "frames_per_clip": 4},
    "pretrain": {"blocks_per_vod": 10, "block_seconds": 4.0, "batch_size": 8, "lr": 3e-3},
}

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def vods(tmp_path_factory: pytest.TempPathFactory) -> list[synth.SynthVod]:
    folder = tmp_path_factory.mktemp("pretrain-media")
    out = []
    for seed in (11, 12):
        events = synth.plan_events(100, highlights=3, visual=2, audio=2, seed=seed)
        out.append(synth.make_vod(folder / f"v{seed}.mp4", 100, events, width=160, height=90, seed=seed))
    return out


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("pretrain-cache")


def deploy(root: Path, cache: Path, vods: list[synth.SynthVod], epochs: int = 3) -> tuple[config.Config, object]:
    settings = {**SETTINGS, "paths": {"cache": str(cache)}, "pretrain": {**SETTINGS["pretrain"], "epochs": epochs}}
    (root / "config.toml").write_text(dumps(settings))
    cfg = config.load(root / "config.toml")
    cfg.ensure_dirs()
    conn = store.connect(cfg.path("database"))
    for vod in vods:
        for start, end, label in synth.sample_clips(vod, normal_per_event=1.0, seed=1):
            labels.add_label(conn, vod.path, start, end, label, "import")
    return cfg, conn


def test_pretraining_learns_the_correspondence_and_records_it(tmp_path: Path, vods, shared_cache) -> None:
    cfg, conn = deploy(tmp_path, shared_cache, vods, epochs=6)
    meta = pretrain.run(cfg, conn)
    assert sorted(meta["vods"]) == sorted(synth_fp(v) for v in vods)
    assert meta["samples"] >= 100 and meta["blocks"] == 20 and meta["held_out_blocks"] == 4
    # the contrastive loss falls from about ln(batch) (chance) as the pairing is learnt
    assert meta["loss"][0] > meta["loss"][-1]
    assert meta["loss"][-1] < meta["chance_loss"]
    saved = json.loads((pretrain.folder(cfg) / pretrain.META).read_text())
    assert saved == meta and pretrain.current(cfg) == meta
    # only the per-frame parts are saved; the registry does not mistake the folder for a model
    from safetensors.torch import load_file

    keys = {k.split(".")[0] for k in load_file(str(pretrain.folder(cfg) / pretrain.WEIGHTS))}
    assert keys == set(pretrain.PARTS)
    assert Registry(cfg.path("models")).ids() == []


def synth_fp(vod: synth.SynthVod) -> str:
    from autoclip import fsutil

    return fsutil.fingerprint(vod.path)


def test_a_new_model_starts_from_the_pretrained_weights(tmp_path: Path, vods, shared_cache) -> None:
    cfg, conn = deploy(tmp_path, shared_cache, vods, epochs=1)
    result = train(cfg, conn, progress=False)  # no weights yet: pretraining runs first
    assert pretrain.current(cfg) is not None
    reg = Registry(cfg.path("models"))
    assert reg.metrics(result["model"])["start"] == "self-supervised"
    dims = ModelDims.from_config(cfg)
    net = build_model(dims, "none")
    before = {k: v.clone() for k, v in net.state_dict().items()}
    pretrain.load_into(net, cfg)
    from safetensors.torch import load_file

    state = load_file(str(pretrain.folder(cfg) / pretrain.WEIGHTS))
    for k, v in net.state_dict().items():
        if k in state:
            assert torch.equal(v, state[k]), k
        else:  # temporal layers, motion branch and heads keep their own initialisation
            assert k.split(".")[0] not in pretrain.PARTS and torch.equal(v, before[k]), k
    # the second model warm-starts from the first: no pretraining, no self-supervised start
    created = pretrain.current(cfg)["created"]
    labels.add_label(conn, vods[0].path, 1.0, 3.0, "normal", "import")
    second = train(cfg, conn, progress=False)
    assert reg.metrics(second["model"])["start"].startswith("warm:")
    assert pretrain.current(cfg)["created"] == created


def test_weights_are_made_again_when_vods_are_added_or_damaged(tmp_path: Path, vods, shared_cache) -> None:
    cfg, conn = deploy(tmp_path, shared_cache, vods[:1], epochs=1)
    first = pretrain.ensure(cfg, conn)
    assert pretrain.stale(cfg, conn) is None
    assert pretrain.ensure(cfg, conn)["created"] == first["created"]  # up to date: not run again
    for start, end, label in synth.sample_clips(vods[1], normal_per_event=1.0, seed=1):
        labels.add_label(conn, vods[1].path, start, end, label, "import")
    assert "1 VOD(s) added" in pretrain.stale(cfg, conn)
    second = pretrain.ensure(cfg, conn)
    assert len(second["vods"]) == 2 and pretrain.stale(cfg, conn) is None
    # a labelled VOD whose file is gone is skipped with a warning, and is not "new" ever after
    labels.add_label(conn, str(tmp_path / "gone.mp4"), 1.0, 3.0, "normal", "cli", fingerprint="fp-gone")
    assert "1 VOD(s) added" in pretrain.stale(cfg, conn)
    second = pretrain.ensure(cfg, conn)
    assert len(second["vods"]) == 2 and "fp-gone" in second["sources"]
    assert pretrain.stale(cfg, conn) is None
    # a damaged weights file does not match its checksum: ignored, then made again
    weights = pretrain.folder(cfg) / pretrain.WEIGHTS
    weights.write_bytes(weights.read_bytes()[:-100])
    assert pretrain.current(cfg) is None
    assert pretrain.stale(cfg, conn) == "no self-supervised weights yet"
    with pytest.raises(Exception, match="autoclip pretrain"):
        pretrain.load_into(build_model(ModelDims.from_config(cfg), "none"), cfg)
    third = pretrain.ensure(cfg, conn)
    assert pretrain.current(cfg) == third


def test_batches_hold_one_moment_per_block() -> None:
    block = np.repeat(np.arange(7), [5, 3, 8, 1, 4, 6, 2])
    got = pretrain.batches(block, 4, np.random.default_rng(0))
    flat = np.concatenate(got)
    assert len(flat) == len(np.unique(flat))  # every moment at most once
    assert len(flat) >= len(block) - 7  # only single leftovers of a round are dropped
    for idx in got:
        assert len(np.unique(block[idx])) == len(idx) <= 4


def test_cli_pretrain_json_and_if_stale(tmp_path: Path, vods, shared_cache, capsys) -> None:
    cfg, _conn = deploy(tmp_path, shared_cache, vods[:1], epochs=1)
    cfg_path = str(tmp_path / "config.toml")
    assert cli.main(["--config", cfg_path, "pretrain", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ran"] is True and Path(out["weights"]).is_file() and out["retrieval_chance"] is not None
    assert cli.main(["--config", cfg_path, "pretrain", "--if-stale", "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["ran"] is False and again["created"] == out["created"]
    assert cli.main(["--config", cfg_path, "pretrain", "--if-stale"]) == 0
    assert "up to date" in capsys.readouterr().out
