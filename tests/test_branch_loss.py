"""The branch heads' loss (``train.branch_loss``): a highlight needs both cues, so a "normal"
answer on a moment with one cue must not teach the branch that saw that cue to ignore it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from autoclip import config
from autoclip.fitting import ALONE_WEIGHT, and_loss
from autoclip.metrics import average_precision


def test_and_loss_is_the_per_branch_loss_on_highlights_and_not_both_on_normal_frames() -> None:
    zv, za = torch.tensor([2.0, -1.0, 3.0]), torch.tensor([0.5, 1.5, -2.0])
    one, w, pw = torch.ones(3), torch.tensor([1.0, 0.5, 2.0]), torch.tensor(3.0)
    each = (F.binary_cross_entropy_with_logits(zv, one, weight=w, pos_weight=pw)
            + F.binary_cross_entropy_with_logits(za, one, weight=w, pos_weight=pw))
    torch.testing.assert_close(and_loss(zv, za, one, w, pw), each)
    zero = torch.zeros(3)
    both = torch.sigmoid(zv) * torch.sigmoid(za)
    alone = -torch.log1p(-torch.sigmoid(zv)) - torch.log1p(-torch.sigmoid(za))
    torch.testing.assert_close(and_loss(zv, za, zero, w, pw), (w * (-torch.log1p(-both) + ALONE_WEIGHT * alone)).mean())
    assert torch.isfinite(and_loss(torch.tensor([40.0]), torch.tensor([40.0]), torch.zeros(1), torch.ones(1), pw))


def test_a_normal_face_reaction_teaches_the_audio_branch_not_the_frame_branch() -> None:
    """A face reaction with a calm voice answered "normal": the frame branch is sure, the audio
    branch half sure. The per-branch loss pushes the frame branch down hardest; 'and' the audio."""
    def grads(loss_of):
        zv, za = torch.tensor([4.0], requires_grad=True), torch.tensor([0.0], requires_grad=True)
        loss_of(zv, za).backward()
        return float(zv.grad), float(za.grad)

    gv, ga = grads(lambda zv, za: and_loss(zv, za, torch.zeros(1), torch.ones(1), torch.tensor(1.0)))
    assert ga > 2 * gv > 0
    ev, ea = grads(lambda zv, za: F.binary_cross_entropy_with_logits(zv, torch.zeros(1))
                   + F.binary_cross_entropy_with_logits(za, torch.zeros(1)))
    assert ev > ea


def _moments(rng: np.random.Generator, n: int, face: bool, voice: bool) -> tuple[np.ndarray, np.ndarray]:
    """Features of ``n`` moments: the frame branch sees a reaction cue, the audio branch a shout."""
    v = rng.normal(0.0, 1.0, (n, 4)) + (np.array([2.0, 1.0, 0, 0]) if face else 0)
    a = rng.normal(0.0, 1.0, (n, 4)) + (np.array([0, 0, 2.0, 1.0]) if voice else 0)
    return v.astype(np.float32), a.astype(np.float32)


def _train(branch_loss: str, seed: int = 0, one_cue: bool = True) -> tuple[torch.nn.Module, torch.nn.Module]:
    """Two linear branch heads trained by ``fitting.and_loss`` or per-branch BCE on moments where
    answers caught many face-only reactions: 3 of them per highlight, as a review queue's
    in-reel answers do when the model over-trusts the face. Without ``one_cue``: highlights and
    calm moments only, as random seed picks mostly are."""
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    parts = [(_moments(rng, 40, True, True), 1.0), (_moments(rng, 120, False, False), 0.0)]
    if one_cue:
        parts += [(_moments(rng, 120, True, False), 0.0), (_moments(rng, 40, False, True), 0.0)]
    xv = torch.from_numpy(np.concatenate([p[0][0] for p in parts]))
    xa = torch.from_numpy(np.concatenate([p[0][1] for p in parts]))
    y = torch.from_numpy(np.concatenate([np.full(len(p[0][0]), p[1], np.float32) for p in parts]))
    hv, ha = torch.nn.Linear(4, 1), torch.nn.Linear(4, 1)
    opt = torch.optim.Adam([*hv.parameters(), *ha.parameters()], lr=0.05)
    w, pw = torch.ones_like(y), (1 - y).sum() / y.sum()
    for _ in range(300):
        zv, za = hv(xv).squeeze(1), ha(xa).squeeze(1)
        if branch_loss == "and":
            loss = and_loss(zv, za, y, w, pw)
        else:
            loss = (F.binary_cross_entropy_with_logits(zv, y, pos_weight=pw)
                    + F.binary_cross_entropy_with_logits(za, y, pos_weight=pw))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return hv, ha


@pytest.mark.parametrize("seed", [0, 1])
def test_with_and_the_frame_branch_still_sees_reactions_after_many_normal_face_answers(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    hl_v, hl_a = _moments(rng, 200, True, True)
    face_v, face_a = _moments(rng, 200, True, False)
    shout_v, shout_a = _moments(rng, 200, False, True)
    results = {}
    for kind in ("and", "each"):
        hv, ha = _train(kind, seed)
        with torch.no_grad():
            pv = torch.sigmoid(hv(torch.from_numpy(hl_v))).squeeze(1).numpy()
            score = [np.sqrt(torch.sigmoid(hv(torch.from_numpy(v))).squeeze(1).numpy()
                             * torch.sigmoid(ha(torch.from_numpy(a))).squeeze(1).numpy())
                     for v, a in ((hl_v, hl_a), (face_v, face_a), (shout_v, shout_a))]
        labels = np.r_[np.ones(200), np.zeros(400)]
        results[kind] = (float(np.median(pv)), average_precision(labels, np.concatenate(score)))
    # 'and': the frame branch still calls a reaction a reaction, and the branches' agreement ranks
    # highlights above one-cue moments no worse than per-branch training does
    assert results["and"][0] > 0.8 and results["and"][1] >= results["each"][1] - 0.02
    # per branch: the many "normal" face answers taught the frame branch that reactions are normal
    assert results["each"][0] < 0.7 and results["each"][0] < results["and"][0] - 0.15


def test_each_branch_still_learns_what_calm_is_when_the_other_could_veto_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """Labels of highlights and calm moments only: either branch alone could veto every normal
    frame. With "not both" alone the audio branch drifts to calling calm moments highlights;
    each branch's own "normal" at ``ALONE_WEIGHT`` keeps it a detector of its cue."""
    from autoclip import fitting

    calm_v, calm_a = _moments(np.random.default_rng(7), 200, False, False)
    medians = {}
    for weight in (ALONE_WEIGHT, 0.0):
        monkeypatch.setattr(fitting, "ALONE_WEIGHT", weight)
        _, ha = _train("and", 0, one_cue=False)
        with torch.no_grad():
            medians[weight] = float(np.median(torch.sigmoid(ha(torch.from_numpy(calm_a))).numpy()))
    assert medians[ALONE_WEIGHT] < 0.3 and medians[0.0] > medians[ALONE_WEIGHT] + 0.15, medians


def test_and_is_the_default_and_each_stays_available() -> None:
    assert config.from_dict({}).train.branch_loss == "and"
    assert config.from_dict({"train": {"branch_loss": "each"}}).train.branch_loss == "each"


def _tiny_temporal(combine: str) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    """A small fused temporal model (eval mode: no dropout) and 6 random frames and spectrograms."""
    from autoclip.model import ModelDims, build_model, frames_to_tensor, mels_to_tensor

    torch.manual_seed(0)
    net = build_model(ModelDims(kind="fused", combine=combine, size=32, n_mels=16, mel_frames=21, context=2,
                                motion=True), "none").eval()
    rng = np.random.default_rng(0)
    f = frames_to_tensor(rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8))
    m = mels_to_tensor(rng.standard_normal((6, 16, 21)).astype(np.float32))
    return net, f, m


GROUPS, TARGET = torch.zeros(6, dtype=torch.long), torch.tensor([1.0, 0, 0, 1, 0, 0])
W, PW = torch.ones(6), torch.tensor(2.0)


def _shared_grads(net: torch.nn.Module, f: torch.Tensor, m: torch.Tensor, branch_loss: str,
                  params: list[torch.Tensor]) -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
    """Gradients on ``params`` of the whole training loss, and of the branch heads' part alone."""
    from autoclip.fitting import _loss

    cfg = config.from_dict({"train": {"branch_loss": branch_loss}})
    got = torch.autograd.grad(_loss(net, f, m, GROUPS, TARGET, W, PW, cfg, torch.Generator().manual_seed(0)), params)
    out = net.temporal(net.base(f, m), GROUPS)
    if branch_loss == "and":
        branches = and_loss(out["v"], out["a"], TARGET, W, PW)
    else:
        branches = (F.binary_cross_entropy_with_logits(out["v"], TARGET, weight=W, pos_weight=PW)
                    + F.binary_cross_entropy_with_logits(out["a"], TARGET, weight=W, pos_weight=PW))
    return got, torch.autograd.grad(cfg.train.aux_weight * branches, params)


def _same(a: tuple[torch.Tensor, ...], b: tuple[torch.Tensor, ...]) -> bool:
    return all(torch.allclose(g, h, atol=1e-6) for g, h in zip(a, b, strict=True))


def test_with_and_only_the_branch_heads_shape_the_branch_features() -> None:
    """'and': the fused head's loss does not reach the features its branches share with it (a
    "normal" face-only reaction would teach the frame branch, through them, to see no reaction);
    'each', the earlier loss, lets it."""
    net, f, m = _tiny_temporal("agree")
    shared = [*net.tv.parameters(), *net.ta.parameters()]
    assert _same(*_shared_grads(net, f, m, "and", shared))
    assert not _same(*_shared_grads(net, f, m, "each", shared))


def test_a_model_that_scores_its_fused_head_lets_that_head_shape_the_features() -> None:
    """model.combine = "fused": the fused head is the score, so its loss reaches the branches'
    features whatever the branch loss."""
    net, f, m = _tiny_temporal("fused")
    assert not _same(*_shared_grads(net, f, m, "and", list(net.tv.parameters())))
