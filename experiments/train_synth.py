"""The issue's "done means" experiment: fused vs frames-only vs audio-only on generated VODs.

Four generated VODs hold 12 highlights (a picture event in the face cam *and* a loud sound) and
distractors carrying only one of them. 36 clips are labelled: the 12 highlights and 24 normal
clips (8 picture-only, 8 sound-only, 8 quiet stretches), 9 per VOD, split by the product's stable
per-clip hash. Each model kind is trained with the default [train] settings on the same labels.
The headline is the frame AP on a fifth VOD that nobody labelled (its 3 highlights against every
other sampled frame, distractors included), scored by each model as `autoclip score` does; the
validation frame AP that chose the epoch is printed beside it, with wall time.

    .venv/bin/python experiments/train_synth.py [--out DIR] [--threads 2] [--seeds 0 1 2]

Features are decoded once (shared cache); decoding time is reported separately. A single-branch
model cannot tell a highlight from its one-cue distractor; the verdict compares the mean over
seeds.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from autoclip import config as config_mod  # noqa: E402
from autoclip import labels, store, synth  # noqa: E402

KINDS = ("fused", "frames", "audio")
#: per VOD: 3 highlights, 2 picture-only and 2 sound-only distractors, 2 quiet clips
N_VODS = 4
PER_VOD = dict(highlights=3, visual=2, audio=2)
QUIET_PER_VOD = 2
DURATION = 150.0


def make_vods(folder: Path) -> list[synth.SynthVod]:
    return [synth.planted_vod(folder / f"synth-{i}.mp4", DURATION, seed=100 + i, **PER_VOD) for i in range(N_VODS)]


def make_heldout(folder: Path) -> synth.SynthVod:
    """The VOD nobody labels: only ever scored."""
    return synth.planted_vod(folder / "heldout.mp4", DURATION, seed=200, **PER_VOD)


def heldout_ap(cfg: config_mod.Config, model_id: str, vod: synth.SynthVod) -> float | None:
    """Frame AP of model ``model_id`` over every sampled frame of ``vod`` (dense scoring)."""
    from autoclip.metrics import average_precision, frames_in
    from autoclip.registry import Registry
    from autoclip.scoring import score_range

    loaded = Registry(cfg.path("models")).load(model_id)
    scores = score_range(vod.path, cfg, loaded, mode="dense", progress=False)
    truth = frames_in(scores.times, [(e.start, e.end) for e in vod.highlights()])
    return average_precision(truth, scores.scores)


def label_vods(conn: Any, vods: list[synth.SynthVod]) -> dict[str, int]:
    counts: dict[str, int] = {"highlight": 0, "normal": 0}
    for i, vod in enumerate(vods):
        clips = synth.sample_clips(vod, normal_per_event=QUIET_PER_VOD / PER_VOD["highlights"], seed=i)
        for start, end, label in clips:
            labels.add_label(conn, vod.path, start, end, label, "cli")
            counts[label] += 1
    return counts


def make_config(folder: Path, kind: str, seed: int, threads: int, overrides: dict[str, Any]) -> config_mod.Config:
    data: dict[str, Any] = {
        "paths": {"models": f"models-{kind}-s{seed}", "database": "autoclip.db", "cache": "cache",
                  "jobs": "jobs", "inbox": "inbox", "reels": "reels", "failed": "failed", "done": "done"},
        "model": {"kind": kind, "threads": threads},
        "train": {"seed": seed},
    }
    for dotted, value in overrides.items():
        section, key = dotted.split(".", 1)
        data.setdefault(section, {})[key] = value
    return config_mod.from_dict(data, root=folder)


def decode_all(cfg: config_mod.Config, conn: Any) -> float:
    from autoclip.dataset import clip_samples, load_clips
    from autoclip.featcache import FeatureCache

    t0 = time.monotonic()
    cache = FeatureCache(cfg.path("cache"))
    for clip in load_clips(conn):
        clip_samples(clip, cfg, cache)
    return time.monotonic() - t0


def run(folder: Path, *, seeds: list[int], threads: int, kinds: tuple[str, ...] = KINDS,
        overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Generate, label, train every kind for every seed; return the numbers."""
    from autoclip.train import train

    folder.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    vods = make_vods(folder)
    heldout = make_heldout(folder)
    gen_s = time.monotonic() - t0
    base = make_config(folder, "fused", 0, threads, overrides or {})
    conn = store.connect(base.path("database"))
    if not conn.execute("SELECT COUNT(*) FROM labels").fetchone()[0]:
        label_vods(conn, vods)
    counts = {r["label"]: r["n"] for r in conn.execute("SELECT label, COUNT(*) AS n FROM labels GROUP BY label")}
    decode_s = decode_all(base, conn)
    runs = []
    for seed in seeds:
        for kind in kinds:
            cfg = make_config(folder, kind, seed, threads, overrides or {})
            t = time.monotonic()
            result = train(cfg, conn, trigger="manual", pseudo=False, progress=False, force=True)
            wall = time.monotonic() - t
            saved = json.loads((cfg.path("models") / result["model"] / "metrics.json").read_text())
            runs.append({"seed": seed, "kind": kind, "val_ap": result["metrics"]["val"].get("frame_ap"),
                         "test_ap": heldout_ap(cfg, result["model"], heldout),
                         "val_clips": result["metrics"]["val"].get("clips"),
                         "epochs": len(saved["history"]), "best_epoch": saved["best_epoch"],
                         "fit_s": saved["seconds"]["fit"], "wall_s": wall})
    return {"labels": counts, "generate_s": gen_s, "decode_s": decode_s, "runs": runs}


def summary(numbers: dict[str, Any]) -> dict[str, Any]:
    """Mean held-out frame AP per kind (the headline: the unlabelled VOD chose nothing), the
    validation frame AP that chose the epoch beside it, and the "done means" checks on held-out AP."""
    import numpy as np

    kinds = sorted({r["kind"] for r in numbers["runs"]}, key=KINDS.index)

    def mean(key: str) -> dict[str, float]:
        return {k: float(np.mean([r[key] or 0.0 for r in numbers["runs"] if r["kind"] == k])) for k in kinds}

    test, val = mean("test_ap"), mean("val_ap")
    fused = [r for r in numbers["runs"] if r["kind"] == "fused"]
    checks = {}
    if fused:
        checks["fused held-out VOD frame AP >= 0.9 on every seed"] = all((r["test_ap"] or 0) >= 0.9 for r in fused)
        worst = max(numbers["decode_s"] + r["wall_s"] for r in fused)
        checks[f"fused decode + training < 300 s (worst {worst:.0f} s)"] = worst < 300
        for other in ("frames", "audio"):
            if other in test:
                checks[f"fused beats {other}-only (mean held-out AP {test['fused']:.3f} > {test[other]:.3f})"] = \
                    test["fused"] > test[other]
    return {"mean_test_ap": test, "mean_val_ap": val, "checks": checks}


def report(numbers: dict[str, Any]) -> str:
    lines = [f"labels: {numbers['labels']}; VOD generation {numbers['generate_s']:.1f} s, "
             f"feature decoding {numbers['decode_s']:.1f} s (once, cached)",
             f"{'seed':>4} {'kind':<7} {'held AP':>7} {'val AP':>7} {'epochs':>6} {'best':>4} {'fit s':>6} {'wall s':>6}"]
    for r in numbers["runs"]:
        ap = "n/a" if r["val_ap"] is None else f"{r['val_ap']:.3f}"
        tap = "n/a" if r["test_ap"] is None else f"{r['test_ap']:.3f}"
        lines.append(f"{r['seed']:>4} {r['kind']:<7} {tap:>7} {ap:>7} {r['epochs']:>6} {r['best_epoch']:>4} "
                     f"{r['fit_s']:>6.1f} {r['wall_s']:>6.1f}")
    summ = summary(numbers)
    lines.append("mean held-out VOD frame AP (nobody labelled it): " + ", ".join(f"{k} {v:.3f}" for k, v in summ["mean_test_ap"].items()))
    lines.append("(mean validation frame AP, which chose the epoch: "
                 + ", ".join(f"{k} {v:.3f}" for k, v in summ["mean_val_ap"].items()) + ")")
    lines += [f"[{'ok' if ok else 'FAIL'}] {name}" for name, ok in summ["checks"].items()]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, help="working folder (default: a temporary one)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS)
    ap.add_argument("--set", nargs="*", default=[], metavar="SECTION.KEY=JSON", help="config overrides")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    overrides = {k: json.loads(v) for k, v in (s.split("=", 1) for s in args.set)}
    with tempfile.TemporaryDirectory() as tmp:
        numbers = run(args.out or Path(tmp), seeds=args.seeds, threads=args.threads, kinds=tuple(args.kinds),
                      overrides=overrides)
    print(json.dumps({**numbers, **summary(numbers)}, indent=1) if args.json else report(numbers))
    return 0 if all(summary(numbers)["checks"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
