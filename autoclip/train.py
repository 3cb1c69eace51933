"""A training run: ``train(cfg, conn)`` is what `autoclip train` and the daemon's retraining child run.

Load the labelled clips, split them (``splits``: a clip never changes split), decode (or fetch
cached) samples, start the student from the current model (the teacher) when their shapes
match, optionally add the teacher's pseudo-labels (``train.pseudo_labels``), fit (``fitting``),
compare student and teacher on the validation clips the teacher never trained on (``compare``),
save the student with the clips it trained on, and promote it unless it is worse beyond the
margin (``promotion``). Every run is recorded in the ``retrain_runs`` table.
"""

from __future__ import annotations

import logging
import math
import sqlite3
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from autoclip import cascade, compare, cropbox, gate, metrics, pretrain, promotion
from autoclip.config import Config
from autoclip.errors import LabelError, ModelError
from autoclip.fitting import FitResult, SplitData, evaluate, fit, load_split, segments_from_times
from autoclip.fsutil import TMP_PREFIX
from autoclip.model import HighlightNet, ModelDims, build_model, set_threads
from autoclip.registry import Registry
from autoclip.trainrun import RunRecord, TrainLock, gather_pseudo, plan_pseudo, record_skipped

if TYPE_CHECKING:
    from autoclip.dataset import Clip

log = logging.getLogger(__name__)


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
    net, start = _initial_model(cfg, dims, teacher, conn, progress=progress)
    if start.startswith("warm:"):  # near a solution already: fewer, gentler passes
        cfg = cfg.model_copy(update={"train": cfg.train.model_copy(
            update={"epochs": min(cfg.train.epochs, cfg.train.warm_epochs),
                    "lr": cfg.train.lr * cfg.train.warm_lr_factor})})
    fitted = _fit_where_configured(net, data, cfg, pretrained=start in ("pretrained", "self-supervised"),
                                   progress=progress)
    fitted.start = start
    return _finish(cfg, conn, registry, net, dims, data, splits, fitted, teacher, shared,
                   label_hash=label_hash, trigger=trigger, started=t0)


def _initial_model(cfg: Config, dims: ModelDims, teacher: Any, conn: sqlite3.Connection | None = None, *,
                   progress: bool = False) -> tuple[HighlightNet, str]:
    """The student's starting point: the teacher's weights (same shape), else ``model.pretrained``
    ('self': the self-supervised weights, pretrained first when missing or out of date)."""
    # the score combination adds no weights: a teacher that scored its fused head warm-starts an
    # "agree" student (the first retrain after the default changed)
    if cfg.train.warm_start and teacher is not None and replace(teacher.dims, combine=dims.combine) == dims:
        net = build_model(dims, "none")
        own = {k: v for k, v in teacher.net.state_dict().items() if not k.startswith(gate.PREFIX)}
        net.load_state_dict(own)  # the teacher's gate is not the student's: it is trained afresh
        log.info("student starts from the current model %s (warm start)", teacher.id)
        return net, f"warm:{teacher.id}"
    choice = cfg.model.pretrained.strip()
    if choice.lower() == pretrain.SELF:
        if conn is None:
            raise ModelError("model.pretrained = 'self' needs the deployment's database")
        meta = pretrain.ensure(cfg, conn, progress=progress)
        net = build_model(dims, "none")
        pretrain.load_into(net, cfg, meta)
        return net, "self-supervised"
    return build_model(dims, choice), ("random" if choice.lower() == "none" else "pretrained")


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
    train_data.extend(got.frames, got.mels, got.targets, cfg.train.pseudo_weight,
                      seg=segments_from_times(got.fingerprints, got.times, cfg.frames.fps))
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
    student, student_probs, _ = evaluate(net, shared.data, cfg.train.threshold, reel_threshold=cfg.selection.threshold)
    noise = 0.0
    if cfg.train.promote_noise_z > 0 and shared.teacher_probs is not None:
        human = shared.data.clip_index >= 0
        noise = cfg.train.promote_noise_z * metrics.paired_ap_noise(
            shared.data.targets[human] >= 0.5, student_probs, shared.teacher_probs, shared.data.clip_index[human],
            seed=cfg.train.seed)
    promote, reason, table = promotion.decide(student, shared.teacher, margin=cfg.train.promote_margin,
                                              loss_margin=cfg.train.promote_loss_margin, ap_noise=noise)
    keys = ("frame_ap", "log_loss", "frame_precision", "reel_precision", "reel_n", "clips", "frames")
    return promote, f"{reason} ({shared.note})", {
        "student": {k: student.get(k) for k in keys}, "teacher": {k: (shared.teacher or {}).get(k) for k in keys},
        "checks": table, "frame_ap_noise": noise}


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
                   # the face-cam box source of every clip (stored detections: decoding stored them)
                   "crops": cropbox.clip_sources([c for s in splits.values() for c in s], cfg, conn),
                   "seconds": {"fit": fitted.seconds, "total": time.monotonic() - started}}
    gate_info = gate.train_gate(net, data["train"], data["val"], seed=cfg.train.seed,  # saved as net.gate
                                margin_frames=cascade.margin_frames(cfg))
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
