"""The audio-only gate of the scoring cascade: which frame times can be highlights at all.

A small head (``GateHead``) reads the model's own audio embedding (its log-mel branch, when it
has one) plus four loudness statistics of the same log-mel window, and gives a probability that
the moment is a highlight. It is trained in the same training run as the model, after the model
is fitted (the model's weights stay as they are), on the training split's samples; its threshold
is chosen on the validation split's highlight *ranges* so that at least ``RECALL`` of them are
found, then lowered by ``SLACK`` logits (a few validation clips do not show every kind of
highlight), and by up to ``SLACK`` more while there are fewer than ``FEW_RANGES`` ranges. A
frame is inside when a gate value at or above the threshold lies within the window margin
(``margin_frames`` sampled frames) of it in the same labelled range, as
``cascade.candidate_windows`` decodes around every passing time: the quiet first seconds of a
highlight need not pass themselves when its loud moment does. A range a person drew (an imported label) is found when every frame of it is
inside; an answered review item when ``RANGE_SHARE`` (half) of it is: a reviewer marks a queued
range "highlight" when most of it is one, so up to half of it can be calm padding around the
moment, and asking for every frame of those drove the threshold to ~0 (everything decoded) once
answers came in.
Head and threshold are saved in the model's checkpoint (``gate.*`` tensors in its weights file,
``gate`` in its model.json), so a model and its gate never drift apart.

Scoring in ``[scoring] mode = "cascade"`` runs only the gate over the whole VOD (audio only, no
video decode) and the full model only where the gate passes (``autoclip.cascade``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

if TYPE_CHECKING:
    from autoclip.fitting import SplitData
    from autoclip.model import HighlightNet

log = logging.getLogger(__name__)

#: share of the validation highlight ranges the gate's threshold must find
RECALL = 0.99
#: an answered review item is found when at least this share of its frames lies inside stage 2's
#: windows (a reviewer's "highlight" promises no more than that: the rest may be padding); a
#: range a person drew (an imported label) needs every frame
RANGE_SHARE = 0.5
#: the threshold is this many logits below the validation quantile (odds / 7.4)
SLACK = 2.0
#: with fewer validation highlight ranges than this, the slack grows by SLACK x (FEW - n) / FEW:
#: one range says little about the highlights the gate has not seen
FEW_RANGES = 3
#: the gate runs on every STRIDE-th sampled frame (its 1-s log-mel window overlaps the next
#: frame's by 75 % at 4 fps); a frame in between takes the larger of its two neighbours' values
STRIDE = 2
HIDDEN = 16
STEPS = 300
#: augmented copies of the training samples the gate also sees
AUGMENTED = 3
#: loudness statistics per window: centre energy (+-50 ms), max, mean and spread over the window
N_STATS = 4
PREFIX = "gate."


class GateHead(nn.Module):
    """Standardised features -> a small MLP -> one logit."""

    def __init__(self, n_in: int, hidden: int = HIDDEN) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(n_in))
        self.register_buffer("std", torch.ones(n_in))
        self.mlp = nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, 1))

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.mlp((feats - self.mean) / self.std).squeeze(1)


def loudness_stats(mels: torch.Tensor) -> torch.Tensor:
    """(N, 1, n_mels, T) log-mel windows -> (N, 4) energy statistics on the same log scale."""
    # features.py stores 0.5 x log10(power) + 1 per band; sum the power over bands per column
    log_power = (mels.squeeze(1) - 1.0) * 2.0 * float(np.log(10.0))
    energy = (torch.logsumexp(log_power, dim=1) / float(np.log(10.0))) * 0.5 + 1.0  # (N, T)
    mid, half = energy.shape[1] // 2, max(1, energy.shape[1] // 20)
    centre = energy[:, max(0, mid - half): mid + half + 1].mean(dim=1)
    return torch.stack([centre, energy.amax(dim=1), energy.mean(dim=1), energy.std(dim=1)], dim=1)


def features(net: HighlightNet, mels: torch.Tensor) -> torch.Tensor:
    """The gate's input for (N, 1, n_mels, T) windows: the model's audio embedding (if it has an
    audio branch) and the loudness statistics."""
    parts = [loudness_stats(mels)]
    if net.dims.uses_audio:
        parts.insert(0, net.audio_proj(net.audio(mels)))
    return torch.cat(parts, dim=1)


def n_features(net: HighlightNet) -> int:
    from autoclip.model import EMBED

    return N_STATS + (EMBED if net.dims.uses_audio else 0)


def has_gate(net: HighlightNet) -> bool:
    return isinstance(getattr(net, "gate", None), GateHead)


def probabilities(net: HighlightNet, mels: np.ndarray, *, batch: int = 256) -> np.ndarray:
    """Gate probabilities (N,) for (N, n_mels, T) log-mel windows (eval mode, no autograd)."""
    from autoclip.model import mels_to_tensor

    if not has_gate(net):
        raise ValueError("this model has no gate")
    device = next(net.parameters()).device
    was_training = net.training
    net.eval()
    out = []
    try:
        with torch.inference_mode():
            for i in range(0, len(mels), batch):
                m = mels_to_tensor(mels[i: i + batch]).to(device)
                out.append(torch.sigmoid(net.gate(features(net, m))).float().cpu().numpy())
    finally:
        net.train(was_training)
    return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)


def _inputs(net: HighlightNet, mels: np.ndarray, gen: torch.Generator | None = None) -> torch.Tensor:
    """Gate features of ``mels`` (augmented with ``augment.mels`` when ``gen`` is given)."""
    from autoclip import augment
    from autoclip.model import mels_to_tensor

    was_training = net.training
    net.eval()
    out = []
    try:
        with torch.inference_mode():
            for i in range(0, len(mels), 256):
                m = mels_to_tensor(mels[i: i + 256])
                out.append(features(net, m if gen is None else augment.mels(m, gen)))
    finally:
        net.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, n_features(net))


def covered(prob: np.ndarray, seg: np.ndarray, margin_frames: int) -> np.ndarray:
    """Per sample: the largest gate probability within ``margin_frames`` samples of it in the same
    segment (a run of consecutive sampled frames). A window threshold at or below it decodes it."""
    out = prob.astype(np.float64).copy()
    n = len(prob)
    for k in range(1, max(0, margin_frames) + 1):
        if k >= n:
            break
        same = seg[k:] == seg[:-k]
        out[:-k] = np.where(same, np.maximum(out[:-k], prob[k:]), out[:-k])
        out[k:] = np.where(same, np.maximum(out[k:], prob[:-k]), out[k:])
    return out


def evaluated(times: np.ndarray, fps: float) -> np.ndarray:
    """Which frame times of a stage-1 grid the gate runs on: those in every STRIDE-th 1/fps bin,
    counted from the file's start (so a range and a whole run agree), plus any frame whose
    previous one is two or more bins back (never two skipped in a row) and the first."""
    k = np.floor(np.asarray(times, dtype=np.float64) * fps + 1e-6).astype(np.int64)
    keep = k % STRIDE == 0
    if len(k):
        keep[0] = True
        keep[1:] |= (k[1:] - k[:-1]) >= 2
    return keep


def spread(values: np.ndarray, keep: np.ndarray, seg: np.ndarray | None = None) -> np.ndarray:
    """Per frame: its gate value where it was ``evaluated``, else the larger of its neighbours'
    (within the same segment when ``seg`` is given). ``values`` holds the evaluated frames' values."""
    out = np.zeros(len(keep), dtype=np.float32)
    out[keep] = values
    idx = np.flatnonzero(~keep)
    if len(idx):
        out[idx] = out[idx - 1]  # the previous frame was evaluated (never two skipped in a row)
        nxt = idx + 1
        ok = nxt < len(keep)
        ok[ok] &= keep[nxt[ok]] & (True if seg is None else seg[nxt[ok]] == seg[idx[ok]])
        out[idx[ok]] = np.maximum(out[idx[ok]], out[nxt[ok]])
    return out


def strided_cover(prob: np.ndarray, seg: np.ndarray, margin_frames: int) -> np.ndarray:
    """``covered`` as stage 1 sees it: the gate run on every other frame of each segment (both
    phases tried, the worse kept per frame), the frames between filled by ``spread``."""
    pos = _positions(seg)
    out = None
    for phase in range(STRIDE):
        keep = (pos % STRIDE == phase) | (pos == 0)
        cov = covered(spread(prob[keep], keep, seg), seg, margin_frames)
        out = cov if out is None else np.minimum(out, cov)
    return out if out is not None else prob


def choose_threshold(found: np.ndarray) -> tuple[float, float]:
    """(threshold, slack in logits) from the validation highlight ranges' ``range_values``: the
    largest threshold that finds at least RECALL of them, less SLACK logits for highlights unlike
    any validation clip, and more while there are fewer than FEW_RANGES of them."""
    k = int(np.floor((1.0 - RECALL) * len(found)))
    q = float(np.clip(found[k], 1e-7, 1 - 1e-7))
    slack = SLACK * (1.0 + max(0, FEW_RANGES - len(found)) / FEW_RANGES)
    return float(1.0 / (1.0 + np.exp(-(np.log(q / (1 - q)) - slack)))), slack


def range_values(cover: np.ndarray, clip_index: np.ndarray, share: dict[int, float]) -> np.ndarray:
    """Per labelled range (ascending): the largest threshold that puts at least ``share[clip]`` of
    its frames inside stage 2's windows, from its frames' ``covered`` values."""
    out = []
    for c in np.unique(clip_index):
        values = np.sort(cover[clip_index == c])[::-1]
        out.append(values[max(1, int(np.ceil(share.get(int(c), 1.0) * len(values)))) - 1])
    return np.sort(np.asarray(out, dtype=np.float64))


def _positions(seg: np.ndarray) -> np.ndarray:
    """Each sample's index within its run of equal ``seg`` values."""
    idx = np.arange(len(seg))
    first = np.ones(len(seg), dtype=bool)
    first[1:] = seg[1:] != seg[:-1]
    return idx - np.maximum.accumulate(np.where(first, idx, 0))


def train_gate(net: HighlightNet, train: SplitData, val: SplitData, *, seed: int = 0,
               margin_frames: int = 0) -> dict[str, Any] | None:
    """Fit a gate head on ``net``'s audio features of the training samples, choose its threshold
    on the validation highlight ranges (found by stage 2's windows, which reach ``margin_frames``
    samples on each side of a passing one; see the module docstring), attach it to ``net`` (as
    ``net.gate``) and return what goes into model.json. None (and no gate) when a split lacks
    highlights."""
    human = val.clip_index >= 0
    val_pos = human & (val.targets >= 0.5)
    if len(train) == 0 or not np.any(train.targets >= 0.5) or not np.any(val_pos):
        log.info("no audio gate for this model: the training or validation split has no highlight frames "
                 "(cascade scoring will score this model's VODs densely)")
        return None
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    # the samples as they are plus augmented copies: few labelled clips must not teach the gate
    # details of their own audio
    x = torch.cat([_inputs(net, train.mels)] + [_inputs(net, train.mels, gen) for _ in range(AUGMENTED)]).clone()
    y = torch.from_numpy(np.tile(train.targets.astype(np.float32), AUGMENTED + 1))
    w = torch.from_numpy(np.tile(train.weights.astype(np.float32), AUGMENTED + 1))
    head = GateHead(x.shape[1])
    head.mean.copy_(x.mean(dim=0))
    head.std.copy_(x.std(dim=0).clamp_min(1e-3))
    pos = float((y * w).sum())
    pos_weight = torch.tensor(float(((1 - y) * w).sum()) / max(pos, 1e-6))
    opt = torch.optim.Adam(head.parameters(), lr=1e-2, weight_decay=1e-4)
    for _ in range(STEPS):
        loss = F.binary_cross_entropy_with_logits(head(x), y, weight=w, pos_weight=pos_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    head.eval()
    net.gate = head
    with torch.inference_mode():
        p_val = torch.sigmoid(head(_inputs(net, val.mels[human]))).numpy()
    assert val.seg is not None
    p_val = strided_cover(p_val, val.seg[human], margin_frames)
    labels = val.targets[human] >= 0.5
    positives, negatives = p_val[labels], p_val[~labels]
    share = {i: RANGE_SHARE if c.reviewed else 1.0 for i, c in enumerate(val.clips)}
    found = range_values(positives, val.clip_index[human][labels], share)
    threshold, slack = choose_threshold(found)
    info = {
        "threshold": threshold, "recall_target": RECALL, "slack_logits": slack, "range_share": RANGE_SHARE,
        "val_range_recall": float(np.mean(found >= threshold)),
        "val_highlight_ranges": int(len(found)),
        "val_recall": float(np.mean(positives >= threshold)),
        "val_highlight_frames": int(len(positives)),
        "val_normal_pass": float(np.mean(negatives >= threshold)) if len(negatives) else None,
        "features": int(x.shape[1]), "hidden": HIDDEN, "train_loss": float(loss.detach()),
        "margin_frames": int(margin_frames),
    }
    log.info("audio gate: threshold %.4f finds %d of %d validation highlight ranges (an answered item with "
             "%.0f%% of it in stage 2's windows, a drawn range with all of it); %.1f%% of their frames and %s of "
             "normal ones are inside",
             threshold, int(np.sum(found >= threshold)), len(found), 100 * RANGE_SHARE, 100 * info["val_recall"],
             "n/a" if info["val_normal_pass"] is None else f"{100 * info['val_normal_pass']:.0f}%")
    return info


def attach_for_load(net: HighlightNet, state: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Before ``load_state_dict``: give ``net`` an (empty) gate head when the checkpoint has one."""
    if not any(k.startswith(PREFIX) for k in state):
        return
    gate = meta.get("gate") or {}
    n_in = int(gate.get("features") or state[PREFIX + "mean"].shape[0])
    net.gate = GateHead(n_in, int(gate.get("hidden") or state[PREFIX + "mlp.0.weight"].shape[0]))


def threshold(meta: dict[str, Any]) -> float | None:
    """The stored gate threshold of a model (None: no gate)."""
    gate = meta.get("gate")
    return float(gate["threshold"]) if isinstance(gate, dict) and gate.get("threshold") is not None else None
