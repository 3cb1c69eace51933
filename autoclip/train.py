"""Training, evaluation and promotion: ``fit`` / ``train_one_epoch`` / ``evaluate`` and ``train``.

``train(cfg, conn)`` is what `autoclip train` and the daemon's retraining child run: load the
labelled clips, split them without leakage, decode (or fetch cached) samples, optionally add
pseudo-labels from the current model (the teacher) on processed VODs nobody labelled, fit a new
model (the student) with augmentation and dropout as noise, evaluate it and the current model on
the same validation clips, save it to the registry and promote it only if it is better by more
than ``train.promote_margin``. Every run is recorded in the ``retrain_runs`` table.
"""

from __future__ import annotations

import copy
import logging
import math
import sqlite3
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.nn import functional as F

from autoclip import augment, compare, gate, metrics, promotion
from autoclip.config import Config
from autoclip.errors import LabelError, ModelError
from autoclip.fsutil import TMP_PREFIX
from autoclip.model import (
    HighlightNet,
    ModelDims,
    build_model,
    frames_to_tensor,
    logits,
    mels_to_tensor,
    set_threads,
)
from autoclip.progress import Progress
from autoclip.registry import Registry
from autoclip.trainrun import RunRecord, TrainLock, gather_pseudo, plan_pseudo, record_skipped

if TYPE_CHECKING:
    from autoclip.dataset import Clip

log = logging.getLogger(__name__)

#: most frames of one validation or test clip (evenly spaced when a clip is longer)
EVAL_FRAMES = 240


@dataclass
class SplitData:
    """Samples of one split: frames, mels, per-sample target and weight, and their clip."""

    clips: list[Clip]
    frames: np.ndarray
    mels: np.ndarray
    clip_index: np.ndarray  # (N,) index into clips; -1 for pseudo-labelled samples
    targets: np.ndarray  # (N,) float32 in [0,1]
    weights: np.ndarray  # (N,) float32 loss weights
    pseudo_note: str = ""

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
        return SplitData([self.clips[i] for i in old], self.frames[rows], self.mels[rows],
                         remap[self.clip_index[rows]], self.targets[rows], self.weights[rows])

    def extend(self, frames: np.ndarray, mels: np.ndarray, targets: np.ndarray, weight: float) -> None:
        if len(targets) == 0:
            return
        self.frames = np.concatenate([self.frames, frames])
        self.mels = np.concatenate([self.mels, mels])
        self.clip_index = np.concatenate([self.clip_index, np.full(len(targets), -1)])
        self.targets = np.concatenate([self.targets, targets.astype(np.float32)])
        self.weights = np.concatenate([self.weights, np.full(len(targets), weight, np.float32)])


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

    frames, mels, index = [], [], []
    for i, clip in enumerate(clips):
        _, f, m = clip_samples(clip, cfg, cache, cap=EVAL_FRAMES if whole else None)
        frames.append(f)
        mels.append(m)
        index.append(np.full(len(f), i))
    s, shape = cfg.frames.size, (cfg.audio.n_mels, mel_frames(cfg.audio))
    idx = np.concatenate(index) if index else np.zeros(0, dtype=int)
    return SplitData(
        clips=list(clips),
        frames=np.concatenate(frames) if frames else np.zeros((0, s, s, 3), np.uint8),
        mels=np.concatenate(mels) if mels else np.zeros((0, *shape), np.float32),
        clip_index=idx,
        targets=np.array([clips[i].label for i in idx], dtype=np.float32),
        weights=np.ones(len(idx), dtype=np.float32),
    )


# ---------------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------------


def _batch_tensors(net: HighlightNet, data: SplitData, idx: np.ndarray, gen: torch.Generator | None):
    dims = net.dims
    f = m = None
    if dims.uses_frames:
        f = frames_to_tensor(data.frames[idx], dims.size)
        if gen is not None:
            f = augment.frames(f, gen)
    if dims.uses_audio:
        m = mels_to_tensor(data.mels[idx])
        if gen is not None:
            m = augment.mels(m, gen)
    return f, m


def train_one_epoch(
    net: HighlightNet, data: SplitData, optimizer: torch.optim.Optimizer, *, batch_size: int,
    pos_weight: float, seed: int, frozen_backbone: bool = False, on_batch: Any = None,
) -> tuple[float, float]:
    """One pass over ``data`` in a seeded random order, augmented. Returns (mean loss, images/s)."""
    net.train()
    if frozen_backbone and net.dims.uses_frames:
        net.frames.eval()  # frozen batch-norm statistics stay as pretrained
    gen = torch.Generator().manual_seed(seed)
    order = np.random.default_rng(seed).permutation(len(data))
    pw = torch.tensor(pos_weight)
    total, seen, t0 = 0.0, 0, time.monotonic()
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        if len(idx) < 2:  # batch-norm needs two samples
            continue
        f, m = _batch_tensors(net, data, idx, gen)
        target = torch.from_numpy(data.targets[idx])
        weight = torch.from_numpy(data.weights[idx])
        loss = F.binary_cross_entropy_with_logits(net(f, m), target, weight=weight, pos_weight=pw)
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


def evaluate(net: HighlightNet, data: SplitData, threshold: float, *,
             reel_threshold: float | None = None) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """Metrics of ``net`` on a split's human-labelled clips: (metrics, frame probs, clip probs).

    Frame level (every frame of every range): ``frame_ap``, ``log_loss`` and, with
    ``reel_threshold`` (the selection threshold), ``frame_precision`` at it; ``reel_precision``
    over the reviewed in-reel clips the model would still select (``reel_n`` of them).
    """
    human = data.clip_index >= 0
    z = logits(net, data.frames[human] if net.dims.uses_frames else None,
               data.mels[human] if net.dims.uses_audio else None)
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


def check_label_items(net: HighlightNet, data: dict[str, SplitData], model_id: str) -> list[dict[str, Any]]:
    """Every labelled clip with the model's clip probability and its loss, highest loss first."""
    items = []
    for split in data.values():
        if not split.clips:
            continue
        _, _, clip_prob = evaluate(net, split, 0.5)
        for clip, p in zip(split.clips, clip_prob, strict=True):
            p = float(np.clip(p, 1e-6, 1 - 1e-6))
            loss = -math.log(p) if clip.label else -math.log(1 - p)
            items.append({"label_id": clip.label_id, "vod": clip.vod, "fingerprint": clip.fingerprint,
                          "start": clip.start, "end": clip.end, "score": p, "loss": loss, "model": model_id})
    return sorted(items, key=lambda it: -it["loss"])


def queue_labels_to_check(conn: sqlite3.Connection, cfg: Config, net: HighlightNet, data: dict[str, SplitData],
                          model_id: str) -> int:
    """Send the labels the new model disagrees with most back to review (``[review] check_labels``).

    The model is saved by then: a busy database only costs the hint, logged, never the training.
    """
    if cfg.review.check_labels <= 0:
        return 0
    from autoclip.review import queue

    items = check_label_items(net, data, model_id)
    if not items:
        return 0
    try:
        return len(queue.enqueue_check_labels(conn, cfg, items))
    except sqlite3.Error as err:
        log.warning("could not queue labels for checking: %s", err)
        return 0


def _optimizer(net: HighlightNet, cfg: Config, pretrained: bool) -> torch.optim.Optimizer:
    t = cfg.train
    backbone_lr = t.lr * t.backbone_lr_factor if pretrained else t.lr
    groups = [{"params": net.head_parameters(), "lr": t.lr}]
    if net.backbone_parameters():
        groups.append({"params": net.backbone_parameters(), "lr": backbone_lr})
    return torch.optim.AdamW(groups, weight_decay=t.weight_decay)


def fit(net: HighlightNet, train: SplitData, val: SplitData, cfg: Config, *, pretrained: bool = False,
        progress: bool = True) -> FitResult:
    """Train with early stopping on validation AP; ``net`` ends with its best weights."""
    t = cfg.train
    n_pos = float(np.sum(train.targets * train.weights))
    n_neg = float(np.sum((1 - train.targets) * train.weights))
    pos_weight = n_neg / n_pos if n_pos > 0 else 1.0
    optimizer = _optimizer(net, cfg, pretrained)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=t.epochs, eta_min=t.lr * 0.05)
    freeze = t.freeze_epochs if (pretrained and net.dims.uses_frames) else 0
    result, best_state, stale = FitResult(), None, 0
    t0 = time.monotonic()
    with _EpochProgress(t.epochs, len(train), progress) as bar:
        for epoch in range(1, t.epochs + 1):
            frozen = epoch <= freeze
            net.set_backbone_trainable(not frozen)
            loss, speed = train_one_epoch(
                net, train, optimizer, batch_size=t.batch_size, pos_weight=pos_weight,
                seed=t.seed * 1000 + epoch, frozen_backbone=frozen, on_batch=bar.batch,
            )
            sched.step()
            m = evaluate(net, val, t.threshold)[0] if len(val) else {"ap": None, "frame_ap": None, "log_loss": None}
            result.history.append({"epoch": epoch, "loss": loss, "val_ap": m["ap"], "val_frame_ap": m["frame_ap"],
                                   "images_per_s": speed, "frozen": frozen})
            bar.epoch_done(epoch, loss, m["ap"], speed)
            # frame AP first (clip AP saturates on small sets); on a tie the better-calibrated epoch
            key = (_num(m["frame_ap"]), -_num(m.get("log_loss"), default=1e9), _num(m["ap"]))
            if key > result.best_key or best_state is None or not len(val):  # no val: keep the last
                result.best_key, result.best_epoch, stale = key, epoch, 0
                best_state = copy.deepcopy(net.state_dict())
            else:
                stale += 1
                if stale >= t.patience and epoch > freeze and epoch < t.epochs:
                    log.info("early stop after epoch %d: no better validation AP for %d epochs", epoch, stale)
                    break
    net.set_backbone_trainable(True)
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
                            columns=("bar", "count", "loss {task.fields[loss]}", "val AP {task.fields[ap]}",
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
        self.bar.note("epoch %d/%d: loss %.4f, val AP %s, %.0f images/s", epoch, self.epochs, loss, shown, speed)


# ---------------------------------------------------------------------------------------------
# The whole run
# ---------------------------------------------------------------------------------------------


def train(cfg: Config, conn: sqlite3.Connection, *, trigger: str = "manual", pseudo: bool = True,
          progress: bool = True, kind: str | None = None, force: bool = False,
          threads: int | None = None) -> dict[str, Any]:
    """Train, evaluate and maybe promote a model; return the `train --json` dict (+ reason, skipped)."""
    set_threads(threads or cfg.model.threads)
    registry = Registry(cfg.path("models"))
    with TrainLock(registry.root) as lock:
        if not lock.acquired:
            reason = "another training is running; this trigger is skipped"
            record_skipped(conn, trigger, reason)
            return _skipped(registry.current_id(), reason, registry)
        registry.clean()
        with RunRecord(conn, trigger) as run:
            result = _train_locked(cfg, conn, registry, trigger=trigger, pseudo=pseudo, progress=progress,
                                   kind=kind, force=force)
            run.finish(result)
            return result


def _skipped(model: str | None, reason: str, registry: Registry | None = None,
             label_hash: str | None = None) -> dict[str, Any]:
    got: dict[str, Any] = {}
    if model and registry is not None:
        got = registry.metrics(model)
    log.info("training skipped: %s", reason)
    return {"model": model, "promoted": False, "skipped": True, "reason": reason, "label_hash": label_hash,
            "metrics": {"val": got.get("val", {}), "test": got.get("test", {})}}


def _train_locked(cfg: Config, conn: sqlite3.Connection, registry: Registry, *, trigger: str, pseudo: bool,
                  progress: bool, kind: str | None, force: bool) -> dict[str, Any]:
    from autoclip.dataset import label_set_hash, load_clips
    from autoclip.featcache import FeatureCache
    from autoclip.splits import split_clips

    clips = load_clips(conn)
    labels = {c.label for c in clips}
    if labels != {0, 1}:
        raise LabelError(f"training needs highlight and normal labels, have {len(clips)} label(s) of "
                         f"{len(labels)} class(es): add labels with `autoclip label import FILE.csv`")
    dims = ModelDims.from_config(cfg, kind)
    label_hash = label_set_hash(clips)
    current_id = registry.current_id()
    if current_id and not force:
        meta = registry.meta(current_id)
        if meta.get("label_hash") == label_hash and (meta.get("dims") or {}).get("kind") == dims.kind:
            return _skipped(current_id, f"label set unchanged since model {current_id} (hash {label_hash}); "
                                        "nothing to learn (use --force to retrain anyway)", registry, label_hash)
    t0 = time.monotonic()
    splits = split_clips(clips, cfg.train.split, cfg.train.seed, gap=cfg.audio.window)
    cache = FeatureCache(cfg.path("cache"))
    data = {name: load_split(splits[name], cfg, cache, whole=name != "train") for name in ("train", "val", "test")}
    log.info("samples: train %d (%d clips), val %d, test %d; decoded in %.1f s (cache hits %d, misses %d)",
             len(data["train"]), len(splits["train"]), len(data["val"]), len(data["test"]),
             time.monotonic() - t0, cache.hits, cache.misses)
    teacher = _load_current(registry, current_id)
    shared = _shared_val(cfg, registry, teacher, data["val"])
    if pseudo and cfg.train.pseudo_labels and teacher is not None and cfg.train.pseudo_max > 0:
        _add_pseudo(cfg, cache, teacher, clips, data["train"], shared)
    torch.manual_seed(cfg.train.seed)
    net, start = _initial_model(cfg, dims, teacher)
    fitted = _fit_where_configured(net, data, cfg, pretrained=start != "random", progress=progress)
    fitted.start = start
    return _finish(cfg, conn, registry, net, dims, data, splits, fitted, teacher, shared,
                   label_hash=label_hash, trigger=trigger, started=t0)


def _initial_model(cfg: Config, dims: ModelDims, teacher: Any) -> tuple[HighlightNet, str]:
    """The student's starting point: the teacher's weights (same shape), else ``model.pretrained``."""
    if cfg.train.warm_start and teacher is not None and teacher.dims == dims:
        net = build_model(dims, "none")
        own = {k: v for k, v in teacher.net.state_dict().items() if not k.startswith(gate.PREFIX)}
        net.load_state_dict(own)  # the teacher's gate is not the student's: it is trained afresh
        log.info("student starts from the current model %s (warm start)", teacher.id)
        return net, f"warm:{teacher.id}"
    pretrained = cfg.model.pretrained.strip().lower() != "none"
    return build_model(dims, cfg.model.pretrained), ("pretrained" if pretrained else "random")


@dataclass
class SharedVal:
    """The validation clips the teacher never trained on, and the teacher's numbers on them."""

    data: SplitData | None
    teacher: dict[str, Any] | None
    teacher_probs: np.ndarray | None
    note: str


def _shared_val(cfg: Config, registry: Registry, teacher: Any, val: SplitData) -> SharedVal:
    if teacher is None or not len(val):
        return SharedVal(None, None, None, "")
    kept, note = compare.comparison_clips(registry, teacher.id, val.clips, cfg.audio.window)
    if not kept:
        return SharedVal(None, None, None, note)
    sub = val.subset(kept)
    try:
        m, probs, _ = evaluate(teacher.net, sub, cfg.train.threshold, reel_threshold=cfg.selection.threshold)
    except ModelError as err:
        return SharedVal(None, None, None, f"current model not comparable: {err}")
    return SharedVal(sub, m, probs, note)


def _add_pseudo(cfg: Config, cache: Any, teacher: Any, clips: list[Clip], train_data: SplitData,
                shared: SharedVal) -> None:
    if shared.data is None or shared.teacher_probs is None:
        log.info("no pseudo-labels: no validation clips the teacher never trained on to choose thresholds")
        return
    human = shared.data.clip_index >= 0
    plan = plan_pseudo(cfg, float(np.sum(train_data.weights)), shared.data.targets[human] >= 0.5, shared.teacher_probs)
    got = gather_pseudo(cfg, cache, teacher, clips, plan)
    train_data.extend(got.frames, got.mels, got.targets, cfg.train.pseudo_weight)
    train_data.pseudo_note = plan.note
    log.info("pseudo-labels from teacher %s: %d samples (%d positive); %s", teacher.id, len(got),
             int(np.sum(got.targets >= 0.5)), plan.note)


def _fit_where_configured(net: HighlightNet, data: dict[str, SplitData], cfg: Config, *, pretrained: bool,
                          progress: bool) -> FitResult:
    """``fit`` here, or as one task on the Ray cluster with ``[cluster] train_on_cluster``."""
    if cfg.cluster.backend != "ray" or not cfg.cluster.train_on_cluster:
        return fit(net, data["train"], data["val"], cfg, pretrained=pretrained, progress=progress)
    from autoclip.runner import get_runner

    runner = get_runner(cfg)
    try:
        return runner.fit(net, data["train"], data["val"], cfg, pretrained=pretrained, progress=progress)
    finally:
        runner.close()


def _load_current(registry: Registry, current_id: str | None):
    if not current_id:
        return None
    try:
        return registry.load(current_id)
    except ModelError as err:
        log.warning("current model unusable as teacher or baseline: %s", err)
        return None


def _decide(cfg: Config, net: HighlightNet, teacher: Any, shared: SharedVal) -> tuple[bool, str, dict[str, Any]]:
    if teacher is None:
        return True, "no current model; the first trained model becomes current", {}
    if shared.data is None:
        return True, f"no shared validation clips ({shared.note or 'none'}); the student (more answers) is promoted", {}
    student, _, _ = evaluate(net, shared.data, cfg.train.threshold, reel_threshold=cfg.selection.threshold)
    promote, reason, table = promotion.decide(student, shared.teacher, margin=cfg.train.promote_margin,
                                              loss_margin=cfg.train.promote_loss_margin)
    keys = ("frame_ap", "log_loss", "frame_precision", "reel_precision", "reel_n", "clips", "frames")
    return promote, f"{reason} ({shared.note})", {
        "student": {k: student.get(k) for k in keys}, "teacher": {k: (shared.teacher or {}).get(k) for k in keys},
        "checks": table}


def _finish(cfg: Config, conn: sqlite3.Connection, registry: Registry, net: HighlightNet, dims: ModelDims,
            data: dict[str, SplitData], splits: dict[str, list[Clip]], fitted: FitResult, teacher: Any,
            shared: SharedVal, *, label_hash: str, trigger: str, started: float) -> dict[str, Any]:
    thr, sel = cfg.train.threshold, cfg.selection.threshold
    none: tuple[dict[str, Any], Any, Any] = ({"ap": None, "frame_ap": None}, None, None)
    val, val_frames, val_clips = evaluate(net, data["val"], thr, reel_threshold=sel) if len(data["val"]) else none
    test, _, test_clips = evaluate(net, data["test"], thr, reel_threshold=sel) if len(data["test"]) else none
    promote, reason, comparison = _decide(cfg, net, teacher, shared)
    current_ap = (shared.teacher or {}).get("frame_ap")
    out_metrics = {"val": val, "test": test, "history": fitted.history, "best_epoch": fitted.best_epoch,
                   "current": {"id": getattr(teacher, "id", None), "val_frame_ap": current_ap},
                   "comparison": comparison, "start": fitted.start,
                   "train": {"clips": len(data["train"].clips), "samples": len(data["train"]),
                             "pseudo": int(np.sum(data["train"].clip_index < 0)),
                             "pseudo_plan": data["train"].pseudo_note},
                   "seconds": {"fit": fitted.seconds, "total": time.monotonic() - started}}
    gate_info = gate.train_gate(net, data["train"], data["val"], seed=cfg.train.seed)  # saved as net.gate
    with tempfile.TemporaryDirectory(prefix=TMP_PREFIX + "plots-", dir=registry.root) as tmp:
        files = _plots(Path(tmp), data, fitted, val_clips, val_frames, test_clips, val)
        files.append(compare.write_clips_record(Path(tmp), splits))
        info = {"trigger": trigger, "gate": gate_info, "config": {"model": cfg.model.model_dump(), "train": cfg.train.model_dump(),
                                               "frames": cfg.frames.model_dump(mode="json"),
                                               "audio": cfg.audio.model_dump()},
                "summary": {"val_ap": val.get("ap"), "test_ap": test.get("ap"), "val_frame_ap": val.get("frame_ap"),
                            "test_frame_ap": test.get("frame_ap"), "current_val_frame_ap": current_ap},
                "decision": {"promote": promote, "reason": reason}}
        model_id = registry.save(net, dims, label_hash=label_hash, metrics=out_metrics, info=info, extra_files=files)
    if promote:
        registry.promote(model_id)
    log.info("model %s: val frame AP %s, test frame AP %s; %s", model_id, _fmt(val.get("frame_ap")),
             _fmt(test.get("frame_ap")), reason)
    queue_labels_to_check(conn, cfg, net, data, model_id)
    return {"model": model_id, "promoted": promote, "skipped": False, "reason": reason,
            "label_hash": label_hash, "metrics": {"val": val, "test": test}}


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def _plots(folder: Path, data: dict[str, SplitData], fitted: FitResult, val_clips: Any, val_frames: Any,
           test_clips: Any, val: dict[str, Any]) -> list[Path]:
    out: list[Path] = []
    try:
        curves = {}
        if val_clips is not None:
            curves["val clips"] = (data["val"].clip_labels, val_clips)
            human = data["val"].clip_index >= 0
            curves["val frames"] = (data["val"].targets[human] >= 0.5, val_frames)
        if test_clips is not None:
            curves["test clips"] = (data["test"].clip_labels, test_clips)
        for p in (metrics.plot_pr(curves, folder / "pr_curve.png"),
                  metrics.plot_history(fitted.history, folder / "training.png"),
                  metrics.plot_confusion(val["confusion"], folder / "confusion.png", "validation clips")
                  if "confusion" in val else None):
            if p is not None:
                out.append(p)
    except Exception as err:  # noqa: BLE001 - plots are a convenience; never lose a model over them
        log.warning("could not draw training plots: %s", err)
    return out
