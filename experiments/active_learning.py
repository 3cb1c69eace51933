"""Active learning: does answering autoclip's review queue teach the model more than answering
the same number of randomly chosen moments?

Generated VODs (``autoclip.synth``): a highlight is a picture event *and* a loud sound;
distractors carry only one of them. The seed labels mark highlights, sound-only distractors and
quiet stretches, but no picture-only distractor (``--missing visual``, the default; ``audio``
swaps the roles), so the first model takes any picture event for a highlight. Then, each round:

* queue arm: score the training VODs with the current model, select the reel, fill the review
  queue (``enqueue_after_process``; training also queues ``check-label`` items) and let a scripted
  reviewer answer the top ``budget`` items from the planted truth (nudging a highlight's range
  to the event, as a person would);
* random arm: the same reviewer answers ``budget`` randomly placed moments;
* both retrain (``train.train``) and are scored on held-out VODs: frame-level average precision.

Run:  .venv/bin/python experiments/active_learning.py [--rounds 3] [--budget 20] [--threads 1]
Prints one line per round and arm and a JSON summary at the end (also written to the work dir).
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from autoclip import labels, store, synth
from autoclip.config import Config, from_dict
from autoclip.errors import LabelError
from autoclip.fsutil import fingerprint
from autoclip.review import queue

log = logging.getLogger("active_learning")

LENGTH = 5.0  # seconds of a random moment (same as the queue's uncertain items)


# ---------------------------------------------------------------------------------------------
# Data and configuration
# ---------------------------------------------------------------------------------------------


@dataclass
class Data:
    train: list[synth.SynthVod]
    heldout: list[synth.SynthVod]
    truth: dict[str, synth.SynthVod] = field(default_factory=dict)  # fingerprint -> VOD


def make_data(folder: Path, *, n_train: int = 4, n_heldout: int = 3, duration: float = 300.0,
              events: int = 3, seed: int = 0) -> Data:
    """Generated VODs (reused when already there): ``events`` of each kind per VOD.

    Events are sparse (about 15% of the time), as in real streams, so a random moment is
    usually an uneventful one."""
    folder.mkdir(parents=True, exist_ok=True)
    vods = []
    for i in range(n_train + n_heldout):
        path = folder / f"{'train' if i < n_train else 'heldout'}-{i}-{int(duration)}s.mp4"
        if Path(str(path) + ".truth.json").exists() and path.exists():
            vods.append(synth.load_truth(path))
            continue
        planned = synth.plan_events(duration, highlights=events, visual=events, audio=events, seed=seed + i)
        vods.append(synth.make_vod(path, duration, planned, seed=seed + i))
    data = Data(vods[:n_train], vods[n_train:])
    data.truth = {fingerprint(v.path): v for v in data.train}
    return data


def make_config(root: Path, cache: Path, *, threads: int, epochs: int, crop: list[int],
                frames_per_clip: int = 0) -> Config:
    return from_dict({
        "paths": {"cache": str(cache)},
        "frames": {"fps": 2.0, "size": 64, "crop": crop, "batch": 64},
        "audio": {"n_mels": 32},
        "model": {"kind": "fused", "pretrained": "none", "threads": threads},
        "train": {"epochs": epochs, "batch_size": 32, "patience": epochs, "split": [0.75, 0.25, 0.0],
                  "pseudo_max": 0, "promote_margin": 0.0, "seed": 0, "frames_per_clip": frames_per_clip},
        "selection": {"snap": 0.0},
        "review": {"per_vod": 10, "uncertain": 6, "min_spacing": 8.0, "uncertain_length": LENGTH,
                   "check_labels": 4},
    }, root=root)


def seed_labels(conn: Any, vods: list[synth.SynthVod], seed: int = 0, missing: str = "visual") -> int:
    """Highlights, distractors and quiet stretches, except every distractor of kind ``missing``."""
    n = 0
    for i, vod in enumerate(vods):
        fp = fingerprint(vod.path)
        for start, end, label in synth.sample_clips(vod, normal_per_event=1.0, seed=seed + i):
            if any(e.kind == missing and e.start < end and start < e.end for e in vod.events):
                continue
            labels.add_label(conn, vod.path, start, end, label, "import", fingerprint=fp)
            n += 1
    return n


# ---------------------------------------------------------------------------------------------
# The scripted reviewer
# ---------------------------------------------------------------------------------------------


def truth_answer(vod: synth.SynthVod, start: float, end: float) -> tuple[str, float, float]:
    """What a careful person answers for [start, end): (answer, start, end) after nudging."""
    for e in vod.highlights():
        inter = min(end, e.end) - max(start, e.start)
        if inter <= 0:
            continue
        if inter >= 0.5 * min(end - start, e.end - e.start):
            return "highlight", e.start, e.end  # nudged onto the highlight
        # mostly something else: keep the larger part outside the highlight
        before, after = (start, min(end, e.start)), (max(start, e.end), end)
        part = max(before, after, key=lambda r: r[1] - r[0])
        if part[1] - part[0] < 1.0:
            return "skip", start, end
        start, end = part
    return "normal", start, end


def answer_queue(conn: Any, data: Data, budget: int) -> dict[str, int]:
    """Answer the ``budget`` top-priority pending items from the truth."""
    counts: dict[str, int] = {}
    for item in queue.list_items(conn, "pending", limit=budget):
        vod = data.truth[item["fingerprint"]]
        answer, s, e = truth_answer(vod, item["start"], item["end"])
        if answer != "skip" and (s, e) != (item["start"], item["end"]):
            queue.adjust(conn, item["id"], start=s, end=e)
        try:
            queue.mark(conn, item["id"], answer)
        except LabelError:
            answer = "skip"
            queue.mark(conn, item["id"], "skip")
        key = f"{item['reason']}:{answer}:{_kind_at(vod, s, e)}"
        counts[key] = counts.get(key, 0) + 1
    return counts


def _kind_at(vod: synth.SynthVod, start: float, end: float) -> str:
    kinds = [ev.kind for ev in vod.events if ev.start < end and start < ev.end]
    return "+".join(sorted(set(kinds))) or "quiet"


def answer_random(conn: Any, data: Data, budget: int, rng: np.random.Generator) -> dict[str, int]:
    """Answer ``budget`` random moments (not overlapping labels) from the truth."""
    counts: dict[str, int] = {}
    answered, tries = 0, 0
    while answered < budget and tries < 100 * budget:
        tries += 1
        vod = data.train[int(rng.integers(len(data.train)))]
        fp = fingerprint(vod.path)
        s = float(rng.uniform(0, vod.duration - LENGTH))
        taken = conn.execute("SELECT 1 FROM labels WHERE fingerprint = ? AND start < ? AND end > ?",
                             (fp, s + LENGTH, s)).fetchone()
        if taken:
            continue
        answer, a, b = truth_answer(vod, s, s + LENGTH)
        answered += 1  # a skip costs a keystroke too
        if answer != "skip":
            try:
                labels.add_label(conn, vod.path, a, b, answer, "review", fingerprint=fp)
            except LabelError:
                answer = "skip"
        key = f"random:{answer}:{_kind_at(vod, a, b)}"
        counts[key] = counts.get(key, 0) + 1
    return counts


# ---------------------------------------------------------------------------------------------
# Model steps
# ---------------------------------------------------------------------------------------------


def train_latest(cfg: Config, conn: Any) -> tuple[Any, dict[str, Any]]:
    """Train on the current labels; the new model becomes current (the experiment follows it)."""
    from autoclip import train
    from autoclip.registry import Registry

    result = train.train(cfg, conn, trigger="manual", pseudo=False, progress=False)
    reg = Registry(cfg.path("models"))
    model_id = result.get("model")
    if not model_id:
        raise RuntimeError(f"training produced no model: {result.get('reason')}")
    if reg.current_id() != model_id:
        reg.promote(model_id)
    return reg.load(model_id), result


def score(cfg: Config, loaded: Any, vod: synth.SynthVod) -> Any:
    from autoclip.scoring import score_vod

    return score_vod(vod.path, cfg, loaded, progress=False)


def heldout_ap(cfg: Config, loaded: Any, vods: list[synth.SynthVod]) -> tuple[float, dict[str, float]]:
    """Frame-level average precision on VODs no label came from, and other numbers that keep
    moving once AP reaches 1: the mean score per event kind, frame precision at the selection
    threshold (what the reel would show) and the log loss."""
    from sklearn.metrics import average_precision_score

    ys, ps, by_kind = [], [], {k: [] for k in (*synth.KINDS, "quiet")}
    for vod in vods:
        sc = score(cfg, loaded, vod)
        ys.append(np.array([any(e.start <= t < e.end for e in vod.highlights()) for t in sc.times]))
        ps.append(sc.scores)
        for t, p in zip(sc.times, sc.scores, strict=True):
            kinds = [e.kind for e in vod.events if e.start <= t < e.end]
            by_kind[kinds[0] if kinds else "quiet"].append(float(p))
    means = {k: round(float(np.mean(v)), 3) for k, v in by_kind.items() if v}
    y, p = np.concatenate(ys), np.clip(np.concatenate(ps).astype(np.float64), 1e-6, 1 - 1e-6)
    picked = p >= cfg.selection.threshold
    means["precision@thr"] = round(float(y[picked].mean()) if picked.any() else 0.0, 3)
    means["log_loss"] = round(float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))), 4)
    return float(average_precision_score(y, p)), means


def fill_queue(cfg: Config, conn: Any, loaded: Any, data: Data) -> int:
    """What ``process`` does for the queue, without rendering: score, select, enqueue."""
    from autoclip.selection import select

    n = 0
    for vod in data.train:
        sc = score(cfg, loaded, vod)
        jdir = cfg.path("jobs") / f"{vod.path.stem}-{loaded.id}"
        sc.save(jdir / "scores.npz")
        segs = select(sc.times, sc.scores, cfg.selection, duration=sc.duration, loudness=sc.loudness)
        n += len(queue.enqueue_after_process(
            conn, cfg, vod=str(vod.path), fingerprint=fingerprint(vod.path), job=jdir.name,
            model=loaded.id, times=sc.times, scores=sc.scores, segments=[s.to_dict() for s in segs]))
    return n


# ---------------------------------------------------------------------------------------------
# The experiment
# ---------------------------------------------------------------------------------------------


def _copy_arm(src_cfg: Config, dst_root: Path, make: Callable[[Path], Config]) -> Config:
    cfg = make(dst_root)
    cfg.path("database").parent.mkdir(parents=True, exist_ok=True)
    src, dst = store.connect(src_cfg.path("database")), store.connect(cfg.path("database"))
    src.backup(dst)
    src.close()
    dst.close()
    shutil.copytree(src_cfg.path("models"), cfg.path("models"), dirs_exist_ok=True)
    return cfg


def _seed_round(workdir: Path, data: Data, make: Callable[[Path], Config], seed: int, missing: str,
                say: Callable[[str], None]) -> tuple[Config, Any, dict[str, Any]]:
    """Round 0: the seed labels and the first model, shared by both arms."""
    t0 = time.time()
    shutil.rmtree(workdir / "seed", ignore_errors=True)
    base = make(workdir / "seed")
    base.ensure_dirs()
    conn = store.connect(base.path("database"))
    n_seed = seed_labels(conn, data.train, seed, missing)
    loaded, result = train_latest(base, conn)
    conn.close()
    ap0, kinds0 = heldout_ap(base, loaded, data.heldout)
    say(f"round 0: {n_seed} seed labels (no {missing}-only distractor)  held-out AP {ap0:.3f}  "
        f"val AP {result['metrics']['val'].get('ap')}  {kinds0}  [{time.time() - t0:.0f} s]")
    return base, loaded, {"seed_labels": n_seed, "ap": ap0, "detail": kinds0}


def _run_arm(arm: str, cfg: Config, loaded: Any, data: Data, *, rounds: int, budget: int,
             rng: np.random.Generator, say: Callable[[str], None]) -> dict[str, list[Any]]:
    """Rounds of answering (the queue's items or random moments) and retraining."""
    out: dict[str, list[Any]] = {"ap": [], "answers": [], "detail": []}
    conn = store.connect(cfg.path("database"))
    current = loaded
    for r in range(1, rounds + 1):
        t = time.time()
        queued = fill_queue(cfg, conn, current, data) if arm == "queue" else 0
        counts = answer_queue(conn, data, budget) if arm == "queue" else answer_random(conn, data, budget, rng)
        current, _ = train_latest(cfg, conn)
        ap, kinds = heldout_ap(cfg, current, data.heldout)
        out["ap"].append(ap)
        out["answers"].append(counts)
        out["detail"].append(kinds)
        say(f"round {r} {arm:>6}: queued {queued:3d}, answered {sum(counts.values()):2d}  "
            f"held-out AP {ap:.3f}  {kinds}  [{time.time() - t:.0f} s]  answers {dict(sorted(counts.items()))}")
    conn.close()
    return out


def run(workdir: Path, *, rounds: int = 3, budget: int = 20, threads: int = 1, epochs: int = 6,
        frames_per_clip: int = 0, seed: int = 0, missing: str = "visual",
        arms: tuple[str, ...] = ("queue", "random"), say: Callable[[str], None] = print) -> dict[str, Any]:
    """The whole experiment; returns (and writes to workdir/active_learning.json) the numbers."""
    import torch

    torch.manual_seed(seed)
    t0 = time.time()
    data = make_data(workdir / "vods", seed=seed)
    crop = list(data.train[0].facecam)

    def make(root: Path) -> Config:
        return make_config(root, workdir / "cache", threads=threads, epochs=epochs, crop=crop,
                           frames_per_clip=frames_per_clip)

    base, loaded, zero = _seed_round(workdir, data, make, seed, missing, say)
    report: dict[str, Any] = {"seed_labels": zero["seed_labels"], "budget": budget, "rounds": rounds,
                              "arms": {}, "answers": {}, "detail": {}}
    rng = np.random.default_rng(seed)
    for arm in arms:
        shutil.rmtree(workdir / arm, ignore_errors=True)
        got = _run_arm(arm, _copy_arm(base, workdir / arm, make), loaded, data, rounds=rounds,
                       budget=budget, rng=rng, say=say)
        report["arms"][arm] = [zero["ap"], *got["ap"]]
        report["answers"][arm] = got["answers"]
        report["detail"][arm] = [zero["detail"], *got["detail"]]
        say(f"{arm:>6} AP by round: {' -> '.join(f'{x:.3f}' for x in report['arms'][arm])}")
    q, rnd = report["arms"].get("queue", []), report["arms"].get("random", [])
    report["rises_each_round"] = bool(q) and all(b > a for a, b in zip(q, q[1:], strict=False))
    report["queue_beats_random"] = bool(q and rnd) and q[-1] > rnd[-1]
    report["seconds"] = round(time.time() - t0, 1)
    (workdir / "active_learning.json").write_text(json.dumps(report, indent=2, default=str))
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", type=Path, default=Path("/tmp/autoclip-active-learning"))
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--budget", type=int, default=20, help="answers per round")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--frames-per-clip", type=int, default=0, help="cap on training frames per labelled clip")
    p.add_argument("--arms", default="queue,random")
    p.add_argument("--seed", type=int, default=1, help="seed of the generated data and training")
    p.add_argument("--missing", choices=("visual", "audio"), default="visual",
                   help="the distractor kind the seed labels never show")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    report = run(args.workdir, rounds=args.rounds, budget=args.budget, threads=args.threads,
                 epochs=args.epochs, frames_per_clip=args.frames_per_clip, seed=args.seed,
                 missing=args.missing, arms=tuple(args.arms.split(",")))
    print(json.dumps({k: report[k] for k in ("arms", "rises_each_round", "queue_beats_random", "seconds")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
