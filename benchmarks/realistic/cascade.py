"""Dense vs cascade scoring on the realistic benchmark's held-out VODs, side by side in one run.

A protocol run's deployment (``--run DIR``, the ``--out`` of ``benchmarks.realistic.protocol``;
``--arm`` picks its queue or random deployment) supplies the configuration (face-cam profiles
included) and the model: its current one, or ``--model ID``. Each held-out VOD in turn gets a
bare ``ffmpeg -i VOD -f null -`` decode, dense scoring, cascade scoring and the bare decode again
(its mean is the baseline). Then, for each mode: wall time against the bare decode, frame AP
pooled over the held-out VODs, and reel precision / recall / F1 of the product's selection over
that mode's scores (matched to the true highlights as the protocol does), with the fraction of
each VOD stage 2 decoded and the model's gate threshold.

Targets (issue 15): cascade frame AP within 0.01 of dense, reel F1 within 0.02.

    .venv/bin/python -m benchmarks.realistic.cascade --run /tmp/run [--arm queue] [--model ID]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import time
from pathlib import Path

import numpy as np

from benchmarks.realistic import evaluate as E
from benchmarks.realistic.build import default_cache, version_dir


def bare_decode(vod: str) -> float:
    t0 = time.perf_counter()
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", vod, "-f", "null", "-"], check=True)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    from autoclip import config, media
    from autoclip.registry import Registry
    from autoclip.scoring import score_range
    from autoclip.selection import select

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, required=True, help="a protocol run folder (its --out)")
    ap.add_argument("--arm", default="queue", choices=("queue", "random"))
    ap.add_argument("--model", help="model id (default: the deployment's current model)")
    ap.add_argument("--cache", type=Path, default=default_cache(), help="benchmark cache")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    deploy = args.run / f"deploy-{args.arm}"
    cfg = config.load(deploy / "config.toml")
    reg = Registry(cfg.path("models"))
    loaded = reg.load(args.model) if args.model else reg.load_current()
    if loaded is None:
        raise SystemExit(f"{deploy} has no current model: run the protocol's round 0 first")
    manifest = json.loads((version_dir(args.cache) / "manifest.json").read_text())
    heldout = {n: v for n, v in manifest["vods"].items() if v.get("split") == "heldout"}
    gate = (loaded.meta.get("gate") or {})
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the start", flush=True)
    print(f"model {loaded.id} of {deploy}: gate threshold {gate.get('threshold', float('nan')):.4f} "
          f"(validation: {gate.get('val_range_recall', float('nan')):.3f} of {gate.get('val_highlight_ranges')} highlight "
          f"ranges found; {gate.get('val_recall', float('nan')):.3f} of {gate.get('val_highlight_frames')} highlight "
          f"frames and {gate.get('val_normal_pass', float('nan')):.0%} of normal ones in stage 2's windows)", flush=True)
    ys: dict[str, list[np.ndarray]] = {"dense": [], "cascade": []}
    ss: dict[str, list[np.ndarray]] = {"dense": [], "cascade": []}
    counts = {"dense": E.Counts(), "cascade": E.Counts()}
    secs = {"dense": 0.0, "cascade": 0.0, "bare": 0.0}
    decoded = total = 0.0
    for name, v in sorted(heldout.items()):
        vod, truth = v["path"], E.highlights(E.load_truth(v["truth"]))
        info = media.probe(vod, cfg.media)
        b1 = bare_decode(vod)
        line = []
        for mode in ("dense", "cascade"):
            t0 = time.perf_counter()
            sc = score_range(vod, cfg, loaded, mode=mode, progress=False, info=info)
            took = time.perf_counter() - t0
            secs[mode] += took
            segs = select(sc.times, sc.scores, cfg.selection, duration=sc.duration, loudness=sc.loudness)
            c = E.match([(s.start, s.end) for s in segs], truth)
            counts[mode] = counts[mode].add(c)
            ys[mode].append(E.frame_labels(sc.times, truth))
            ss[mode].append(sc.scores)
            ap_vod = E.average_precision(ys[mode][-1], sc.scores)
            line.append(f"{mode} {took:.1f} s, AP {ap_vod:.3f}, F1 {c.prf()['f1']:.3f}")
            if mode == "cascade":
                frac = float(sc.stats.get("stage2_fraction", 1.0))
                decoded += frac * info.duration
                total += info.duration
                line.append(f"stage 2 decoded {frac:.1%} ({sc.stats.get('mode')})")
        bare = (b1 + bare_decode(vod)) / 2
        secs["bare"] += bare
        print(f"{name} ({info.duration:.0f} s): bare decode {bare:.1f} s | " + " | ".join(line), flush=True)
    res = {}
    for mode in ("dense", "cascade"):
        res[mode] = {"seconds": secs[mode], "x_bare": secs[mode] / secs["bare"],
                     "frame_ap": E.average_precision(np.concatenate(ys[mode]), np.concatenate(ss[mode])),
                     **counts[mode].prf()}
    print(f"held-out VODs ({len(heldout)}), totals: bare decode {secs['bare']:.1f} s; stage 2 decoded "
          f"{decoded / max(total, 1e-9):.1%} of them")
    print("| mode | wall s | x bare decode | frame AP | P | R | F1 |\n|---|---|---|---|---|---|---|")
    for mode, r in res.items():
        print(f"| {mode} | {r['seconds']:.1f} | {r['x_bare']:.2f} | {r['frame_ap']:.3f} | {r['precision']:.3f} | "
              f"{r['recall']:.3f} | {r['f1']:.3f} |")
    d_ap = res["cascade"]["frame_ap"] - res["dense"]["frame_ap"]
    d_f1 = res["cascade"]["f1"] - res["dense"]["f1"]
    print(f"target: AP diff {d_ap:+.4f} ({'met' if abs(d_ap) <= 0.01 else 'NOT met'}, within 0.01; "
          f"{'met' if d_ap >= -0.01 else 'NOT met'}, no worse than 0.01 below dense); reel F1 diff {d_f1:+.4f} "
          f"({'met' if abs(d_f1) <= 0.02 else 'NOT met'}, within 0.02; {'met' if d_f1 >= -0.02 else 'NOT met'}, "
          "no worse than 0.02 below dense)")
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
