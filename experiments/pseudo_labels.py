"""Issue 6: do the teacher's pseudo-labels help the student? (Noisy Student, few human labels)

Protocol, fixed before running (no tuning on the test VODs):

1. Generated VODs (``synth``): 2 labelled, ``--unlabelled`` unlabelled, ``--test`` held out.
   Each holds 3 highlights (picture + loud sound) and 2 picture-only and 2 sound-only distractors.
2. Human labels on the 2 labelled VODs only: every planted event (highlight or distractor) plus one
   quiet stretch per VOD -> 16 clips.
3. Teacher: ``train(pseudo=False)`` on those labels; the first model becomes current.
4. The teacher scores every unlabelled VOD through ``pipeline.score_job`` (job folders with
   ``scores.npz`` + ``process.json``, as the daemon leaves them).
5. Two students from the same labels and seed: with pseudo-labels (``pseudo=True``,
   ``train.pseudo_max``, default confidence and weight) and without (``pseudo=False``). Both use
   ``force=True`` (the label set is unchanged). If the first student is promoted, the teacher is
   made current again so the second run sees the same registry state.
6. Every model scores every sampled frame of the held-out VODs (``scoring.score_vod``); truth is
   "frame time inside a planted highlight"; metric: frame-level average precision (sklearn) over
   the frames of all held-out VODs pooled.

    .venv/bin/python experiments/pseudo_labels.py [--out DIR] [--seeds 0 1] [--threads 1]
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

PER_VOD = dict(highlights=3, visual=2, audio=2)


def make_vods(folder: Path, prefix: str, n: int, seed0: int, duration: float) -> list[synth.SynthVod]:
    return [synth.planted_vod(folder / f"{prefix}-{i}.mp4", duration, seed=seed0 + i, **PER_VOD) for i in range(n)]


def make_config(folder: Path, seed: int, threads: int, size: int, pseudo_max: int) -> config_mod.Config:
    data: dict[str, Any] = {
        "paths": {"models": f"models-s{seed}", "database": "autoclip.db", "cache": "cache",
                  "jobs": f"jobs-s{seed}", "inbox": "inbox", "reels": "reels", "failed": "failed", "done": "done"},
        "model": {"threads": threads},
        "frames": {"size": size},
        "train": {"seed": seed, "pseudo_max": pseudo_max, "pseudo_labels": pseudo_max > 0},
    }
    return config_mod.from_dict(data, root=folder)


def frame_ap(cfg: config_mod.Config, model_id: str, tests: list[synth.SynthVod]) -> tuple[float, int]:
    """Frame-level AP over every sampled frame of the held-out VODs, pooled."""
    import numpy as np
    from sklearn.metrics import average_precision_score

    from autoclip.metrics import frames_in
    from autoclip.registry import Registry
    from autoclip.scoring import score_vod

    loaded = Registry(cfg.path("models")).load(model_id)
    ys, ps = [], []
    for vod in tests:
        s = score_vod(vod.path, cfg, loaded, progress=False)
        ys.append(frames_in(s.times, [(e.start, e.end) for e in vod.highlights()]))
        ps.append(s.scores)
    y, p = np.concatenate(ys), np.concatenate(ps)
    return float(average_precision_score(y, p)), int(len(y))


def one_seed(folder: Path, seed: int, args: argparse.Namespace, conn: Any, unlabelled: list[synth.SynthVod],
             tests: list[synth.SynthVod]) -> dict[str, Any]:
    from autoclip.pipeline import score_job
    from autoclip.registry import Registry
    from autoclip.train import train

    cfg = make_config(folder, seed, args.threads, args.size, args.pseudo_max)
    t0 = time.monotonic()
    teacher = train(cfg, conn, trigger="manual", pseudo=False, progress=False, force=True)
    reg = Registry(cfg.path("models"))
    reg.promote(teacher["model"])  # be explicit: the teacher is current
    for vod in unlabelled:
        score_job(vod.path, cfg, progress=False)
    with_pl = train(cfg, conn, trigger="manual", pseudo=True, progress=False, force=True)
    if reg.current_id() != teacher["model"]:
        reg.promote(teacher["model"])
    without = train(cfg, conn, trigger="manual", pseudo=False, progress=False, force=True)
    train_s = time.monotonic() - t0
    row: dict[str, Any] = {"seed": seed, "train_s": train_s,
                           "promoted_with": with_pl["promoted"], "reason_with": with_pl["reason"],
                           "promoted_without": without["promoted"], "reason_without": without["reason"],
                           "val_ap": {"teacher": teacher["metrics"]["val"]["ap"],
                                      "with": with_pl["metrics"]["val"]["ap"],
                                      "without": without["metrics"]["val"]["ap"]}}
    t1 = time.monotonic()
    for name, res in (("teacher", teacher), ("with", with_pl), ("without", without)):
        row[f"{name}_ap"], row["test_frames"] = frame_ap(cfg, res["model"], tests)
    row["eval_s"] = time.monotonic() - t1
    meta = reg.meta(with_pl["model"])
    row["pseudo_n"] = _find_pseudo(meta, json.loads((cfg.path("models") / with_pl["model"] / "metrics.json").read_text()))
    return row


def _find_pseudo(*docs: Any) -> int | None:
    """The 'pseudo' sample count written by train._finish, wherever it sits in model/metrics json."""
    stack = list(docs)
    while stack:
        d = stack.pop()
        if isinstance(d, dict):
            if isinstance(d.get("pseudo"), int):
                return d["pseudo"]
            stack.extend(d.values())
    return None


def run(folder: Path, args: argparse.Namespace) -> dict[str, Any]:
    import torch

    torch.set_num_threads(args.threads)
    folder.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    lab = make_vods(folder, "labelled", 2, 200, args.duration)
    unl = make_vods(folder, "unlabelled", args.unlabelled, 300, args.duration)
    tests = make_vods(folder, "test", args.test, 400, args.duration)
    gen_s = time.monotonic() - t0
    base = make_config(folder, args.seeds[0], args.threads, args.size, args.pseudo_max)
    conn = store.connect(base.path("database"))
    if not conn.execute("SELECT COUNT(*) FROM labels").fetchone()[0]:
        for i, vod in enumerate(lab):
            for start, end, label in synth.sample_clips(vod, normal_per_event=1 / 3, seed=i):
                labels.add_label(conn, vod.path, start, end, label, "cli")
    counts = {r["label"]: r["n"] for r in conn.execute("SELECT label, COUNT(*) AS n FROM labels GROUP BY label")}
    rows = []
    for seed in args.seeds:
        rows.append(one_seed(folder, seed, args, conn, unl, tests))
        logging.info("seed %d done: %s", seed, rows[-1])
        if time.monotonic() - t0 > args.budget:
            logging.warning("time budget spent; skipping remaining seeds")
            break
    return {"labels": counts, "generate_s": gen_s, "rows": rows, "total_s": time.monotonic() - t0}


def report(n: dict[str, Any]) -> str:
    lines = [f"human labels: {n['labels']}; generation {n['generate_s']:.0f} s; total {n['total_s']:.0f} s",
             f"{'seed':>4} {'teacher AP':>10} {'w/ pseudo':>10} {'w/o pseudo':>10} {'pseudo n':>8} "
             f"{'frames':>6}  promoted(with/without)"]
    for r in n["rows"]:
        lines.append(f"{r['seed']:>4} {r['teacher_ap']:>10.3f} {r['with_ap']:>10.3f} {r['without_ap']:>10.3f} "
                     f"{str(r['pseudo_n']):>8} {r['test_frames']:>6}  {r['promoted_with']}/{r['promoted_without']}")
    for r in n["rows"]:
        lines.append(f"seed {r['seed']}: val AP {r['val_ap']}; with: {r['reason_with']}; "
                     f"without: {r['reason_without']}; train {r['train_s']:.0f} s, eval {r['eval_s']:.0f} s")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, help="working folder (default: a temporary one)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--size", type=int, default=64, help="frames.size")
    ap.add_argument("--duration", type=float, default=120.0, help="seconds per generated VOD")
    ap.add_argument("--unlabelled", type=int, default=4)
    ap.add_argument("--test", type=int, default=2)
    ap.add_argument("--pseudo-max", type=int, default=400)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--budget", type=float, default=900.0, help="start no new seed after this many seconds")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    with tempfile.TemporaryDirectory() as tmp:
        numbers = run(args.out or Path(tmp), args)
    print(json.dumps(numbers, indent=1, default=str) if args.json else report(numbers))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
