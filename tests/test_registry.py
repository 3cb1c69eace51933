"""The model registry: checksums, promote/rollback, pickles refused, kill safety."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from autoclip.errors import ModelError
from autoclip.fsutil import TMP_PREFIX
from autoclip.model import ModelDims, build_model, predict
from autoclip.registry import WEIGHTS, Registry, sha256_file

DIMS = ModelDims(kind="audio", size=32, n_mels=16, mel_frames=21, dropout=0.1)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _save(reg: Registry, seed: int, val_ap: float = 0.5, dims: ModelDims = DIMS) -> str:
    torch.manual_seed(seed)
    net = build_model(dims, "none")
    return reg.save(net, dims, label_hash=f"h{seed}", metrics={"val": {"ap": val_ap}},
                    info={"summary": {"val_ap": val_ap, "test_ap": None}, "trigger": "manual"},
                    model_id=f"m-{seed:04d}")


def test_save_load_round_trip_verifies_checksum(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "models")
    torch.manual_seed(3)
    net = build_model(DIMS, "none").eval()
    mid = reg.save(net, DIMS, label_hash="abc", metrics={"val": {"ap": 0.7}})
    folder = reg.root / mid
    meta = json.loads((folder / "model.json").read_text())
    assert meta["sha256"] == sha256_file(folder / WEIGHTS)
    assert meta["label_hash"] == "abc" and meta["dims"] == DIMS.to_dict()
    loaded = reg.load(mid)
    assert loaded.dims == DIMS and loaded.id == mid
    mels = np.random.default_rng(0).standard_normal((4, 16, 21)).astype(np.float32)
    np.testing.assert_allclose(predict(loaded.net, None, mels), predict(net, None, mels), rtol=1e-5)
    assert reg.metrics(mid) == {"val": {"ap": 0.7}}
    assert not list(reg.root.glob(f"{TMP_PREFIX}*")), "no staging folder left behind"

    data = bytearray((folder / WEIGHTS).read_bytes())
    data[-1] ^= 0xFF  # one flipped bit in the last tensor
    (folder / WEIGHTS).write_bytes(bytes(data))
    with pytest.raises(ModelError, match="checksum mismatch"):
        reg.load(mid)


def test_promote_rollback_and_history(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "models")
    a, b, c = (_save(reg, i) for i in (1, 2, 3))
    assert reg.current_id() is None and reg.load_current() is None
    with pytest.raises(ModelError, match="no earlier model"):
        reg.rollback()
    reg.promote(a)
    reg.promote(b)
    assert reg.current_id() == b and reg.history() == [a, b]
    assert reg.load_current().id == b
    assert reg.rollback() == a
    assert reg.current_id() == a
    with pytest.raises(ModelError, match="no earlier model"):
        reg.rollback()
    reg.promote(c)
    reg.promote(b)
    assert reg.history() == [a, c, b]
    assert reg.rollback() == c
    listed = {m["id"]: m for m in reg.list()}
    assert set(listed) == {a, b, c} and listed[c]["current"] and not listed[b]["current"]
    with pytest.raises(ModelError, match="no model"):
        reg.promote("m-9999")
    with pytest.raises(ModelError, match="not a model id"):
        reg.promote("../outside")


def test_rollback_skips_a_damaged_model(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "models")
    a, b, c = (_save(reg, i) for i in (1, 2, 3))
    for m in (a, b, c):
        reg.promote(m)
    (reg.root / b / WEIGHTS).write_bytes(b"garbage")
    assert reg.rollback() == a


def test_malicious_pickle_as_model_is_refused_and_runs_nothing(tmp_path: Path, malicious_payload) -> None:
    reg = Registry(tmp_path / "models")
    good = _save(reg, 1)
    reg.promote(good)
    marker = tmp_path / "pwned"
    payload = pickle.dumps({"state_dict": malicious_payload(marker)}, protocol=2)

    # 1. a model folder whose weights are a pickle checkpoint
    evil = reg.root / "m-evil"
    evil.mkdir()
    (evil / "weights.pt").write_bytes(payload)
    meta = {"id": "m-evil", "dims": DIMS.to_dict(), "label_hash": "x", "sha256": sha256_file(evil / "weights.pt")}
    (evil / "model.json").write_text(json.dumps(meta))
    # 2. a pickle renamed to weights.safetensors with a matching checksum in model.json
    disguised = reg.root / "m-disguised"
    disguised.mkdir()
    (disguised / WEIGHTS).write_bytes(payload)
    (disguised / "model.json").write_text(json.dumps({**meta, "id": "m-disguised", "sha256": sha256_file(disguised / WEIGHTS)}))
    # 3. a bare pickle file dropped into the models folder
    (reg.root / "evil.pt").write_bytes(payload)

    for mid in ("m-evil", "m-disguised", "evil.pt"):
        with pytest.raises(ModelError):
            reg.load(mid)
    for mid in ("m-evil", "evil.pt"):
        with pytest.raises(ModelError):
            reg.promote(mid)
    assert reg.current_id() == good
    assert "evil.pt" not in reg.ids()
    assert not marker.exists(), "unpickling ran code"


WRITER = r"""
import sys, torch
torch.set_num_threads(1)
from autoclip.model import ModelDims, build_model
from autoclip.registry import Registry
reg = Registry(sys.argv[1])
dims = ModelDims(kind="frames", size=32, n_mels=16, mel_frames=21)
i = 0
while True:
    i += 1
    torch.manual_seed(i)
    mid = reg.save(build_model(dims, "none"), dims, label_hash=str(i), metrics={})
    reg.promote(mid)
    if i == 1:
        print("ready", flush=True)
"""


def test_sigkill_during_save_and_promote_leaves_a_complete_current(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "models")
    first = _save(reg, 1)
    reg.promote(first)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    rng = np.random.default_rng(0)
    for _round in range(3):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(reg.root)], stdout=subprocess.PIPE, env=env)
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
        time.sleep(float(rng.uniform(0.05, 1.0)))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        current = reg.current_id()
        assert current is not None
        loaded = reg.load(current)  # verifies the checksum
        assert loaded.id == current
        for mid in reg.ids():  # every visible model is complete
            reg.verify(mid)
    assert len(reg.ids()) > 2, "the writer got some models out before being killed"
    reg.clean()
    assert not list(reg.root.glob(f"{TMP_PREFIX}*"))
