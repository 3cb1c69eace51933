"""The network: shapes for every kind, pretrained-weight sources and their failure modes."""

from __future__ import annotations

import logging
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from autoclip.errors import ModelError
from autoclip.model import (
    HighlightNet,
    ModelDims,
    build_model,
    frames_to_tensor,
    mels_to_tensor,
    predict,
)

DIMS = dict(size=64, n_mels=32, mel_frames=41, dropout=0.2)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _inputs(n: int, size: int = 64, n_mels: int = 32, t: int = 41) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    mels = rng.standard_normal((n, n_mels, t)).astype(np.float32)
    return frames, mels


@pytest.mark.parametrize("kind", ["fused", "frames", "audio"])
def test_forward_shapes_and_probabilities(kind: str) -> None:
    dims = ModelDims(kind=kind, **DIMS)
    net = build_model(dims, "none")
    frames, mels = _inputs(5)
    f = frames_to_tensor(frames) if dims.uses_frames else None
    m = mels_to_tensor(mels) if dims.uses_audio else None
    net.train()
    out = net(f, m)
    assert out.shape == (5,)
    out.sum().backward()  # the graph reaches every used branch
    grads = [p.grad is not None for p in net.parameters() if p.requires_grad]
    assert all(grads)
    probs = predict(net, frames, mels)
    assert probs.shape == (5,) and probs.dtype == np.float32
    assert np.all((probs > 0) & (probs < 1))
    assert net.training, "predict restores the training mode it found"


def test_branches_follow_kind() -> None:
    fused = HighlightNet(ModelDims(kind="fused", **DIMS))
    frames = HighlightNet(ModelDims(kind="frames", **DIMS))
    audio = HighlightNet(ModelDims(kind="audio", **DIMS))
    assert hasattr(fused, "frames") and hasattr(fused, "audio")
    assert hasattr(frames, "frames") and not hasattr(frames, "audio")
    assert hasattr(audio, "audio") and not hasattr(audio, "frames")
    with pytest.raises(ModelError, match="needs spectrograms"):
        fused(frames_to_tensor(_inputs(2)[0]), None)


def test_dims_round_trip_and_bad_kind() -> None:
    dims = ModelDims(kind="audio", **DIMS)
    assert ModelDims.from_dict({**dims.to_dict(), "unknown_future_key": 1}) == dims
    with pytest.raises(ModelError, match="unknown model kind"):
        ModelDims(kind="video")


def test_frames_to_tensor_layout_and_resize() -> None:
    frames = np.zeros((2, 48, 48, 3), dtype=np.uint8)
    frames[..., 0] = 255
    t = frames_to_tensor(frames)
    assert t.shape == (2, 3, 48, 48)
    assert t.is_contiguous(memory_format=torch.channels_last)
    assert float(t[:, 0].min()) == 1.0 and float(t[:, 1:].max()) == 0.0
    assert frames_to_tensor(frames, size=64).shape == (2, 3, 64, 64)
    with pytest.raises(ModelError):
        frames_to_tensor(np.zeros((2, 48, 48), dtype=np.uint8))


def test_predict_refuses_mismatched_spectrograms() -> None:
    net = build_model(ModelDims(kind="audio", **DIMS), "none")
    with pytest.raises(ModelError, match="retrain"):
        predict(net, None, np.zeros((2, 32, 50), dtype=np.float32))


def test_imagenet_unavailable_warns_once_and_uses_random_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # an empty cache
    caplog.set_level(logging.WARNING, logger="autoclip.model")
    net = build_model(ModelDims(kind="frames", **DIMS), "imagenet", download=False)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "random weights" in warnings[0].getMessage()
    assert net(frames_to_tensor(_inputs(2)[0]), None).shape == (2,)


def test_imagenet_from_local_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog) -> None:
    from torchvision.models import ResNet18_Weights, resnet18

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    cache = Path(torch.hub.get_dir()) / "checkpoints" / Path(ResNet18_Weights.IMAGENET1K_V1.url).name
    cache.parent.mkdir(parents=True)
    reference = resnet18(weights=None)
    torch.save(reference.state_dict(), cache)
    caplog.set_level(logging.WARNING, logger="autoclip.model")
    net = build_model(ModelDims(kind="fused", **DIMS), "imagenet", download=False)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert torch.equal(net.frames.conv1.weight, reference.conv1.weight)


def test_pretrained_path_state_dict_and_safetensors(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    dims = ModelDims(kind="fused", **DIMS)
    source = build_model(dims, "none")
    pt = tmp_path / "net.pt"
    torch.save(source.state_dict(), pt)
    st = tmp_path / "net.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(st))
    for path in (pt, st):
        net = build_model(dims, str(path))
        assert torch.equal(net.head[-1].weight, source.head[-1].weight)
    with pytest.raises(ModelError, match="not found"):
        build_model(dims, str(tmp_path / "missing.pt"))


def test_malicious_pickle_as_pretrained_is_refused(tmp_path: Path, malicious_payload) -> None:
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps({"conv1.weight": malicious_payload(marker)}, protocol=2))
    with pytest.raises(ModelError, match="refusing"):
        build_model(ModelDims(kind="frames", **DIMS), str(evil))
    assert not marker.exists()


def test_augmentation_keeps_shapes_and_ranges_and_varies_per_sample() -> None:
    from autoclip import augment

    g = torch.Generator().manual_seed(0)
    frames = frames_to_tensor(np.repeat(_inputs(1)[0], 4, axis=0))
    out = augment.frames(frames, g)
    assert out.shape == frames.shape and float(out.min()) >= 0 and float(out.max()) <= 1
    assert not torch.allclose(out[0], out[1]), "each sample gets its own draw"
    mels = mels_to_tensor(np.repeat(_inputs(1)[1], 4, axis=0))
    out = augment.mels(mels, g)
    assert out.shape == mels.shape and not torch.allclose(out[0], out[1])


# ---------------------------------------------------------------------------------------------
# Temporal context
# ---------------------------------------------------------------------------------------------

TEMPORAL = dict(size=32, n_mels=16, mel_frames=21, dropout=0.2, context=2, motion=True)


def test_neighbours_stay_inside_their_segment() -> None:
    from autoclip.temporal import neighbours

    seg = torch.tensor([0, 0, 0, 1, 1, 2])
    idx = neighbours(seg, torch.arange(-2, 3))
    assert idx.tolist() == [[0, 0, 0, 1, 2], [0, 0, 1, 2, 2], [0, 1, 2, 2, 2],
                            [3, 3, 3, 4, 4], [3, 3, 4, 4, 4], [5, 5, 5, 5, 5]]


@pytest.mark.parametrize("kind", ["fused", "frames", "audio"])
def test_temporal_model_trains_every_part_and_hides_branches(kind: str) -> None:
    dims = ModelDims(kind=kind, **TEMPORAL)
    net = build_model(dims, "none").train()
    frames, mels = _inputs(12, 32, 16, 21)
    f = frames_to_tensor(frames) if dims.uses_frames else None
    m = mels_to_tensor(mels) if dims.uses_audio else None
    seg = torch.tensor([0] * 6 + [1] * 6)
    out = net.temporal(net.base(f, m), seg)
    assert out["fused"].shape == (12,)
    sum(v.sum() for v in out.values()).backward()
    assert all(p.grad is not None for p in net.parameters() if p.requires_grad)
    if kind == "fused":  # with the audio hidden, the fused output does not depend on it
        net.eval()
        hide = torch.ones(12, dtype=torch.bool)
        base = net.base(f, m)
        a = net.temporal(base, seg, drop_a=hide)["fused"]
        noisy = dict(base, a=base["a"] + torch.randn_like(base["a"]))
        assert torch.allclose(a, net.temporal(noisy, seg, drop_a=hide)["fused"])
        assert not torch.allclose(a, net.temporal(noisy, seg)["fused"])


def test_agreement_lets_either_branch_veto() -> None:
    """combine = "agree": the geometric mean of the fused head's and both branch heads' probabilities."""
    from autoclip.model import agreement

    sure, calm = torch.tensor([6.0]), torch.tensor([-4.0])
    assert torch.sigmoid(agreement(sure, sure, sure)).item() == pytest.approx(torch.sigmoid(sure).item(), rel=1e-5)
    vetoed = torch.sigmoid(agreement(sure, sure, calm)).item()  # a calm voice under a reacting face
    assert vetoed < 0.3 and vetoed == pytest.approx(float(torch.sigmoid(sure) ** 2 * torch.sigmoid(calm)) ** (1 / 3), rel=1e-4)
    assert torch.isfinite(agreement(torch.tensor([200.0]), torch.tensor([200.0]), torch.tensor([200.0]))).all()

    dims = ModelDims(kind="fused", combine="agree", **TEMPORAL)
    net = build_model(dims, "none").eval()
    frames, mels = _inputs(6, 32, 16, 21)
    with torch.no_grad():
        out = net.temporal(net.base(frames_to_tensor(frames), mels_to_tensor(mels)), torch.zeros(6, dtype=torch.long))
    torch.testing.assert_close(out["score"], agreement(out["fused"], out["v"], out["a"]))
    z = np.log(predict(net, frames, mels) / (1 - predict(net, frames, mels)))
    np.testing.assert_allclose(z, out["score"].numpy(), atol=1e-4)  # what scoring and evaluation read
    with pytest.raises(ModelError, match="needs a fused model with temporal context"):
        ModelDims(kind="audio", combine="agree", **TEMPORAL)
    assert ModelDims.from_dict({"kind": "fused", "context": 2}).combine == "fused"  # older checkpoints


def test_combine_comes_from_the_config_only_where_branch_heads_learn() -> None:
    from autoclip import config

    assert ModelDims.from_config(config.from_dict({})).combine == "agree"
    for over in ({"model": {"context": 0}}, {"model": {"kind": "audio"}}, {"train": {"aux_weight": 0}},
                 {"model": {"combine": "fused"}}):
        assert ModelDims.from_config(config.from_dict(over)).combine == "fused", over


def test_motion_sees_change_between_frames_that_one_frame_cannot() -> None:
    from autoclip.model import thumbnails

    still = torch.zeros(3, 3, 32, 32)
    flash = still.clone()
    flash[1] = 1.0
    th = thumbnails(flash)
    assert th.shape == (3, 1, 32, 32) and float((th[1] - th[0]).mean()) == pytest.approx(4.0, rel=1e-4)
    assert float(thumbnails(still).abs().max()) == 0.0


def test_streamed_scores_equal_one_pass_over_the_whole_vod(monkeypatch: pytest.MonkeyPatch) -> None:
    from autoclip import temporal

    monkeypatch.setattr(temporal, "CHUNK", 16)  # the chunked path with halos too
    torch.manual_seed(0)
    net = build_model(ModelDims(kind="fused", **TEMPORAL), "none").eval()
    frames, mels = _inputs(101, 32, 16, 21)
    whole = predict(net, frames, mels, batch=8)
    stream = temporal.StreamScorer(net, batch=8)
    parts = [stream.feed(frames[a:a + 23], mels[a:a + 23]) for a in range(0, 101, 23)]
    parts.append(stream.flush())
    np.testing.assert_allclose(np.concatenate(parts), whole, rtol=1e-5, atol=1e-6)
    legacy = build_model(ModelDims(kind="audio", **DIMS), "none").eval()  # context 0: no delay
    one = temporal.StreamScorer(legacy)
    _, m = _inputs(5)
    assert len(one.feed(None, m)) == 5 and len(one.flush()) == 0
