"""The training loop: samples of a split, epochs over segments, evaluation, early stopping.

``SplitData`` holds a split's decoded samples in time order, grouped in *segments* (runs of
consecutive frames of one clip): the temporal layer sees a frame's neighbours only inside its
segment. ``fit`` trains on batches of frames drawn independently from every clip, and a
temporal model then on batches of whole segments with batch-norm statistics and the per-frame
parts frozen (``phases``); with augmentation (drawn once per segment, or per frame with its
neighbours, so frame differences show the video's motion, not the augmentation's), modality
dropout and the branches' auxiliary losses. It keeps the epoch with the best validation frame AP
(ties: the lower log loss). ``evaluate`` gives the validation numbers.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from autoclip import augment, metrics
from autoclip.config import Config
from autoclip.model import HighlightNet, frames_to_tensor, logits, mels_to_tensor, thumbnails
from autoclip.progress import Progress

if TYPE_CHECKING:
    from autoclip.dataset import Clip

log = logging.getLogger(__name__)

#: most frames of one validation or test clip (runs spread over the clip when it is longer)
EVAL_FRAMES = 240
#: a gap longer than this many frame steps starts a new segment
GAP_STEPS = 1.5


@dataclass
class SplitData:
    """Samples of one split in time order: frames, mels, target, weight, clip and segment."""

    clips: list[Clip]
    frames: np.ndarray
    mels: np.ndarray
    clip_index: np.ndarray  # (N,) index into clips; -1 for pseudo-labelled samples
    targets: np.ndarray  # (N,) float32 in [0,1]
    weights: np.ndarray  # (N,) float32 loss weights
    seg: np.ndarray | None = None  # (N,) segment id, runs of consecutive frames; None: one per sample
    pseudo_note: str = ""

    def __post_init__(self) -> None:
        if self.seg is None:
            self.seg = np.arange(len(self.targets))

    def __len__(self) -> int:
        return len(self.targets)

    @property
    def clip_labels(self) -> np.ndarray:
        return np.array([c.label for c in self.clips], dtype=int)

    def subset(self, keep: list[Clip]) -> SplitData:
        """The samples of the clips in ``keep`` (human-labelled only)."""
        wanted = {id(c) for c in keep}
        old = [i for i, c in enumerate(self.clips) if id(c) in wanted]
        remap = np.full(len(self.clips), -1)
        remap[old] = np.arange(len(old))
        rows = np.flatnonzero((self.clip_index >= 0) & np.isin(self.clip_index, old))
        assert self.seg is not None
        return SplitData([self.clips[i] for i in old], self.frames[rows], self.mels[rows],
                         remap[self.clip_index[rows]], self.targets[rows], self.weights[rows], self.seg[rows])

    def extend(self, frames: np.ndarray, mels: np.ndarray, targets: np.ndarray, weight: float,
               seg: np.ndarray | None = None) -> None:
        """Append pseudo-labelled samples (``seg``: their own segment ids; None: one each)."""
        if len(targets) == 0:
            return
        assert self.seg is not None
        base = int(self.seg.max()) + 1 if len(self.seg) else 0
        extra = np.arange(len(targets)) if seg is None else np.unique(seg, return_inverse=True)[1]
        self.frames = np.concatenate([self.frames, frames])
        self.mels = np.concatenate([self.mels, mels])
        self.clip_index = np.concatenate([self.clip_index, np.full(len(targets), -1)])
        self.targets = np.concatenate([self.targets, targets.astype(np.float32)])
        self.weights = np.concatenate([self.weights, np.full(len(targets), weight, np.float32)])
        self.seg = np.concatenate([self.seg, base + extra])


def segments_from_times(groups: np.ndarray, times: np.ndarray, fps: float) -> np.ndarray:
    """Segment ids: a new segment where the group changes or the time step exceeds ``GAP_STEPS``."""
    if len(times) == 0:
        return np.zeros(0, dtype=int)
    new = np.r_[True, (groups[1:] != groups[:-1]) | (np.diff(times) > GAP_STEPS / fps)]
    return np.cumsum(new) - 1


@dataclass
class FitResult:
    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = 0
    best_key: tuple[float, float, float] = (-1.0, -1e18, -1.0)
    seconds: float = 0.0
    start: str = "random"


def load_split(clips: list[Clip], cfg: Config, cache: Any, *, whole: bool = False) -> SplitData:
    """Decode (or fetch cached) samples of ``clips``; each frame takes its clip's label.

    ``whole``: every frame of each labelled range (validation and test measure on all of them,
    up to ``EVAL_FRAMES`` per clip), else at most ``train.frames_per_clip``.
    """
    from autoclip.dataset import clip_samples
    from autoclip.features import mel_frames

    frames, mels, index, times = [], [], [], []
    for i, clip in enumerate(clips):
        t, f, m = clip_samples(clip, cfg, cache, cap=EVAL_FRAMES if whole else None)
        frames.append(f)
        mels.append(m)
        times.append(t)
        index.append(np.full(len(f), i))
    s, shape = cfg.frames.size, (cfg.audio.n_mels, mel_frames(cfg.audio))
    idx = np.concatenate(index) if index else np.zeros(0, dtype=int)
    t_all = np.concatenate(times) if times else np.zeros(0)
    return SplitData(
        clips=list(clips),
        frames=np.concatenate(frames) if frames else np.zeros((0, s, s, 3), np.uint8),
        mels=np.concatenate(mels) if mels else np.zeros((0, *shape), np.float32),
        clip_index=idx,
        targets=np.array([clips[i].label for i in idx], dtype=np.float32),
        weights=np.ones(len(idx), dtype=np.float32),
        seg=segments_from_times(idx, t_all, cfg.frames.fps),
    )


# ---------------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------------


def segment_batches(seg: np.ndarray, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Sample indices grouped in batches of whole segments (random order, about ``batch_size``)."""
    n = len(seg)
    if n == 0:
        return []
    starts = np.flatnonzero(np.r_[True, seg[1:] != seg[:-1]])
    ends = np.r_[starts[1:], n]
    batches, cur, size = [], [], 0
    for j in rng.permutation(len(starts)):
        cur.append(np.arange(starts[j], ends[j]))
        size += ends[j] - starts[j]
        if size >= batch_size:
            batches.append(np.concatenate(cur))
            cur, size = [], 0
    if cur:
        batches.append(np.concatenate(cur))
    return batches


def _batch_tensors(net: HighlightNet, data: SplitData, idx: np.ndarray, gen: torch.Generator | None,
                   groups: torch.Tensor, neighbour_rows: np.ndarray | None = None):
    """Frames and mels of rows ``idx``, augmented (``gen``) once per group. With
    ``neighbour_rows`` (B, 3) [previous, own, next] frame rows, the frames come back as (3B,...)
    triplets, each augmented as one, the own frame at positions 1::3."""
    dims = net.dims
    f = m = None
    if dims.uses_frames:
        rows = idx if neighbour_rows is None else neighbour_rows.reshape(-1)
        f = frames_to_tensor(data.frames[rows], dims.size)
        if gen is not None:
            f = augment.frames(f, gen, groups=groups if neighbour_rows is None else groups.repeat_interleave(3))
    if dims.uses_audio:
        m = mels_to_tensor(data.mels[idx])
        if gen is not None:
            m = augment.mels(m, gen)
    return f, m


def neighbour_rows(seg: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """(B, 3) rows of the frame before, the frame itself and the frame after (inside its segment;
    at a segment's end the frame itself): ``temporal.neighbours`` at offsets -1, 0, 1."""
    from autoclip.temporal import neighbours

    return neighbours(torch.from_numpy(np.asarray(seg)), torch.arange(-1, 2)).numpy()[idx]


def _modality_drop(groups: torch.Tensor, p: float, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Per segment: hide the audio (chance p) or the frames (chance p) from the fused head, never both."""
    u = torch.rand(int(groups.max()) + 1, generator=gen)[groups]
    return (u >= p) & (u < 2 * p), u < p


def _loss(net: HighlightNet, f: Any, m: Any, groups: torch.Tensor, target: torch.Tensor, weight: torch.Tensor,
          pw: torch.Tensor, cfg: Config, gen: torch.Generator, triplets: bool = False) -> torch.Tensor:
    """The batch's loss. ``triplets`` (a temporal model on independent frames): ``f`` holds each
    frame with the frames before and after it (``_batch_tensors``); the ResNet sees only the
    frame itself and the temporal layer its embedding in every slot of the window, while the
    motion branch sees the real changes to its neighbours."""
    def bce(z: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(z, target, weight=weight, pos_weight=pw)

    if net.dims.context == 0:
        return bce(net(f, m))
    fused = net.dims.kind == "fused"
    drop_v, drop_a = _modality_drop(groups, cfg.train.modality_dropout, gen) if fused else (None, None)
    # "and", where the branch heads are part of the score: the branches learn from their own
    # heads only (see and_loss); the fused head's loss would otherwise teach the frame branch,
    # through their shared features, that a face-only reaction answered "normal" is no reaction
    detach = net.dims.combine == "agree" and cfg.train.aux_weight > 0 and cfg.train.branch_loss == "and"
    if triplets and f is not None:
        parts = net.base(f[1::3].contiguous(memory_format=torch.channels_last), m)
        parts = {k: v.repeat_interleave(3, 0) for k, v in parts.items() if k != "thumb"}
        parts["thumb"] = thumbnails(f)
        three = groups.repeat_interleave(3)

        def rep(x: torch.Tensor | None) -> torch.Tensor | None:
            return None if x is None else x.repeat_interleave(3)

        out = {k: v[1::3] for k, v in net.temporal(parts, three, rep(drop_v), rep(drop_a), detach).items()}
    else:
        out = net.temporal(net.base(f, m), groups, drop_v, drop_a, detach)
    loss = bce(out["fused"])
    if fused and cfg.train.aux_weight > 0:
        if cfg.train.branch_loss == "and":
            loss = loss + cfg.train.aux_weight * and_loss(out["v"], out["a"], target, weight, pw)
        else:
            loss = loss + cfg.train.aux_weight * (bce(out["v"]) + bce(out["a"]))
    return loss


#: ``and_loss``: weight of each branch's own "not a highlight" on a normal frame, beside "not both"
ALONE_WEIGHT = 0.2


def and_loss(zv: torch.Tensor, za: torch.Tensor, target: torch.Tensor, weight: torch.Tensor,
             pos_weight: torch.Tensor) -> torch.Tensor:
    """The branch heads' loss when a highlight needs both cues (``train.branch_loss = "and"``).

    A highlight frame: each branch should fire (binary cross-entropy towards 1, times
    ``pos_weight``, as ``bce``). A normal frame: mostly that *not both* fire, -log(1 - pv * pa),
    whose gradient goes to the branch that is less sure: a face reaction under a calm voice
    teaches the audio branch and leaves the frame branch's sense of a reaction alone (the
    per-branch loss told the frame branch that this reaction was normal). Plus each branch's own
    "normal" at ``ALONE_WEIGHT``: with "not both" alone, one branch can call everything a
    highlight and leave the veto to the other (measured on the realistic benchmark's seed labels:
    the audio branch scored 0.92-1.00 on every planted moment of a held-out VOD, calm talk and
    game sounds included). ``_loss`` also keeps the fused head's loss off the branches'
    features. Soft targets mix both."""
    lv, la = F.logsigmoid(zv), F.logsigmoid(za)
    log_both = (lv + la).clamp(max=-1e-6)  # log(pv * pa)
    not_both = -torch.log(-torch.expm1(log_both))
    alone = F.softplus(zv) + F.softplus(za)  # -log(1 - pv) - log(1 - pa)
    per = pos_weight * target * -(lv + la) + (1 - target) * (not_both + ALONE_WEIGHT * alone)
    return (weight * per).mean()


def train_one_epoch(
    net: HighlightNet, data: SplitData, optimizer: torch.optim.Optimizer, *, batch_size: int,
    pos_weight: float, seed: int, cfg: Config, frozen_backbone: bool = False, on_batch: Any = None,
    segments: bool = False,
) -> tuple[float, float]:
    """One pass over ``data`` in a seeded random order, augmented. Returns (mean loss, images/s).

    By default a batch is frames drawn independently from every clip (a temporal model then
    sees each frame as its own segment: its neighbours are itself). ``segments``: batches of
    whole segments, with every batch-norm layer's statistics frozen (eval mode)."""
    net.train()
    if frozen_backbone and net.dims.uses_frames:
        net.frames.eval()  # frozen batch-norm statistics stay as pretrained
    if segments:
        freeze_batchnorm(net)
    gen = torch.Generator().manual_seed(seed)
    assert data.seg is not None
    # Batches of whole segments hold only a few distinct pictures (a segment's frames are
    # near-duplicates), and batch-norm statistics over a few pictures keep the frame branch from
    # learning (measured: a frames-only model stayed at chance on generated VODs). So frames are
    # drawn independently unless the batch-norm statistics are frozen.
    seg = data.seg if segments else np.arange(len(data))
    triplets = not segments and net.dims.context > 0 and net.dims.uses_frames and net.dims.motion
    table = neighbour_rows(data.seg, np.arange(len(data))) if triplets else None  # once per epoch
    pw = torch.tensor(pos_weight)
    total, seen, t0 = 0.0, 0, time.monotonic()
    for idx in segment_batches(seg, batch_size, np.random.default_rng(seed)):
        if len(idx) < 2:  # batch-norm needs two samples
            continue
        groups = torch.from_numpy(np.unique(seg[idx], return_inverse=True)[1].astype(np.int64))
        rows = table[idx] if table is not None else None
        f, m = _batch_tensors(net, data, idx, gen, groups, rows)
        loss = _loss(net, f, m, groups, torch.from_numpy(data.targets[idx]), torch.from_numpy(data.weights[idx]),
                     pw, cfg, gen, triplets=triplets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        value = float(loss.detach())
        total += value * len(idx)
        seen += len(idx)
        if on_batch is not None:
            on_batch(len(idx), value)
    elapsed = max(time.monotonic() - t0, 1e-9)
    return total / max(seen, 1), seen / elapsed


def freeze_batchnorm(net: nn.Module) -> None:
    """Every batch-norm layer in eval mode: normalises with its running statistics, updates none."""
    for mod in net.modules():
        if isinstance(mod, nn.modules.batchnorm._BatchNorm):
            mod.eval()


def evaluate(net: HighlightNet, data: SplitData, threshold: float, *,
             reel_threshold: float | None = None) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """Metrics of ``net`` on a split's human-labelled clips: (metrics, frame probs, clip probs).

    Frame level (every frame of every range): ``frame_ap``, ``log_loss`` and, with
    ``reel_threshold`` (the selection threshold), ``frame_precision`` at it; ``reel_precision``
    over the reviewed in-reel clips the model would still select (``reel_n`` of them).
    """
    human = data.clip_index >= 0
    assert data.seg is not None
    z = logits(net, data.frames[human] if net.dims.uses_frames else None,
               data.mels[human] if net.dims.uses_audio else None, seg=data.seg[human])
    frame_prob = 1.0 / (1.0 + np.exp(-z.astype(np.float64)))
    clip_prob = metrics.clip_scores(frame_prob, data.clip_index[human], len(data.clips))
    frame_labels = data.targets[human] >= 0.5
    out = metrics.split_metrics(data.clip_labels, clip_prob, frame_labels, frame_prob, threshold)
    out["log_loss"] = metrics.log_loss(frame_labels, frame_prob)
    if reel_threshold is not None:
        out.update(metrics.frame_precision(frame_labels, frame_prob, reel_threshold))
        in_reel = np.array([c.in_reel for c in data.clips], dtype=bool)
        out.update(metrics.reel_precision(data.clip_labels[in_reel], clip_prob[in_reel], reel_threshold))
    return out, frame_prob, clip_prob


def _optimizer(net: HighlightNet, cfg: Config, pretrained: bool, factor: float = 1.0) -> torch.optim.Optimizer:
    t = cfg.train
    backbone_lr = t.lr * t.backbone_lr_factor if pretrained else t.lr
    groups = [{"params": net.head_parameters(), "lr": t.lr * factor}]
    if net.backbone_parameters():
        groups.append({"params": net.backbone_parameters(), "lr": backbone_lr * factor})
    return torch.optim.AdamW(groups, weight_decay=t.weight_decay)


#: temporal models, second phase (whole segments): at most this share of ``train.epochs`` passes
SEGMENT_EPOCH_SHARE = 0.5
#: ...at the first phase's learning rates times this
SEGMENT_LR_FACTOR = 0.3


@dataclass(frozen=True)
class Phase:
    name: str  # "frames": independently drawn frames; "segments": whole segments, batch-norm frozen
    epochs: int
    lr_factor: float = 1.0
    per_frame: bool = True  # the per-frame parts train


def phases(net: HighlightNet, epochs: int) -> list[Phase]:
    """The single-frame network: one phase of independent frames. A temporal model: the same
    first (every part learns each frame on its own, batch-norm statistics over many pictures),
    then whole segments at a lower rate with the batch-norm statistics and the per-frame parts
    (``HighlightNet.per_frame_parameters``) frozen: the temporal layers, the motion branch and the
    heads learn the real neighbours. (Training the per-frame parts there too made the loss jump
    on generated VODs.) (Measured on generated VODs: whole segments from the
    start gave held-out frame AP 0.98 / 0.58 / 0.74 on 3 seeds; these two phases 1.00 on each.)"""
    if net.dims.context == 0:
        return [Phase("frames", epochs)]
    return [Phase("frames", epochs),
            Phase("segments", max(1, math.ceil(epochs * SEGMENT_EPOCH_SHARE)), SEGMENT_LR_FACTOR, per_frame=False)]


def fit(net: HighlightNet, train: SplitData, val: SplitData, cfg: Config, *, pretrained: bool = False,
        progress: bool = True, epochs: int | None = None) -> FitResult:
    """Train with early stopping on validation frame AP; ``net`` ends with its best weights.
    ``epochs`` overrides ``train.epochs`` (a warm start needs fewer). A temporal model trains in
    two phases (``phases``); each stops early on its own, and the best epoch of either is kept."""
    t = cfg.train.model_copy(update={"epochs": epochs}) if epochs else cfg.train
    n_pos = float(np.sum(train.targets * train.weights))
    n_neg = float(np.sum((1 - train.targets) * train.weights))
    pos_weight = n_neg / n_pos if n_pos > 0 else 1.0
    plan = phases(net, t.epochs)
    freeze = t.freeze_epochs if (pretrained and net.dims.uses_frames) else 0
    result, best_state = FitResult(), None
    t0 = time.monotonic()
    epoch = 0
    with _EpochProgress(sum(p.epochs for p in plan), len(train), progress) as bar:
        for phase in plan:
            if best_state is not None:  # a later phase starts from the best weights so far
                net.load_state_dict(best_state)
            optimizer = _optimizer(net, cfg, pretrained, phase.lr_factor)
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=phase.epochs,
                                                               eta_min=t.lr * phase.lr_factor * 0.05)
            stale = 0
            for step in range(1, phase.epochs + 1):
                epoch += 1
                frozen = phase.name == "frames" and step <= freeze
                for p in net.parameters():
                    p.requires_grad_(True)
                net.set_backbone_trainable(not frozen)
                for p in net.per_frame_parameters() if not phase.per_frame else []:
                    p.requires_grad_(False)
                loss, speed = train_one_epoch(
                    net, train, optimizer, batch_size=t.batch_size, pos_weight=pos_weight, cfg=cfg,
                    seed=t.seed * 1000 + epoch, frozen_backbone=frozen, on_batch=bar.batch,
                    segments=phase.name == "segments",
                )
                sched.step()
                m = evaluate(net, val, t.threshold)[0] if len(val) else {"ap": None, "frame_ap": None, "log_loss": None}
                result.history.append({"epoch": epoch, "phase": phase.name, "loss": loss, "val_ap": m["ap"],
                                       "val_frame_ap": m["frame_ap"], "val_log_loss": m.get("log_loss"),
                                       "images_per_s": speed, "frozen": frozen})
                bar.epoch_done(epoch, loss, m["frame_ap"], speed)
                # frame AP first (clip AP saturates on small sets); on a tie the better-calibrated epoch
                key = (_num(m["frame_ap"]), -_num(m.get("log_loss"), default=1e9), _num(m["ap"]))
                if key > result.best_key or best_state is None or not len(val):  # no val: keep the last
                    result.best_key, result.best_epoch, stale = key, epoch, 0
                    best_state = copy.deepcopy(net.state_dict())
                else:
                    stale += 1
                    if stale >= t.patience and step > (freeze if phase.name == "frames" else 0) and step < phase.epochs:
                        log.info("early stop after epoch %d (%s phase): no better validation frame AP for %d epochs",
                                 epoch, phase.name, stale)
                        break
    for p in net.parameters():
        p.requires_grad_(True)
    if best_state is not None:
        net.load_state_dict(best_state)
    result.seconds = time.monotonic() - t0
    return result


def _num(x: float | None, default: float = -1.0) -> float:
    return default if x is None else float(x)


class _EpochProgress:
    """Training's progress: a bar (epoch, loss, val AP, images/s) or one log line per epoch."""

    def __init__(self, epochs: int, per_epoch: int, enabled: bool) -> None:
        self.epochs = epochs
        self.bar = Progress("[bold]training[/] epoch {task.fields[epoch]}/" + str(epochs), total=epochs * per_epoch,
                            columns=("bar", "count", "loss {task.fields[loss]}", "val frame AP {task.fields[ap]}",
                                     "{task.fields[speed]} img/s", "elapsed"),
                            enabled=enabled, logger=log, name="train", transient=False,
                            epoch=1, loss="-", ap="-", speed="-")

    def __enter__(self) -> _EpochProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.close()

    def batch(self, n: int, loss: float) -> None:
        self.bar.update(advance=n, loss=f"{loss:.3f}")

    def epoch_done(self, epoch: int, loss: float, ap: float | None, speed: float) -> None:
        shown = "-" if ap is None else f"{ap:.3f}"
        self.bar.update(epoch=min(epoch + 1, self.epochs), loss=f"{loss:.3f}", ap=shown, speed=f"{speed:.0f}")
        self.bar.note("epoch %d/%d: loss %.4f, val frame AP %s, %.0f images/s", epoch, self.epochs, loss, shown, speed)
