"""Retraining cost as labels grow: a retrain on about 5,000 labelled training frames (target <= 300 s).

A deployment is built from generated VODs (cached under $TMPDIR/autoclip-bench/retrain), with
labelled clips tiling them so that the training split holds about ``--frames`` frames after the
per-clip cap. Then, in one run:

  first    ``train`` from random weights, decoding every clip into the feature cache (the
           teacher; ``--first-epochs`` passes: its quality does not matter here)
  retrain  ``--answers`` more labels, then ``train`` again: warm-started from the teacher,
           ``train.warm_epochs`` passes, every earlier clip read from the feature cache

and prints each run's wall time broken down (decode / fit / total), its training frames and
images/s, and retrain seconds / 300 (target: at most 1.0). On a shared machine the load average
is printed beside it: the absolute seconds scale with it.

Usage: ``.venv/bin/python benchmarks/retrain.py [--frames 5000] [--threads 2] [--answers 20]``
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from pathlib import Path

from autoclip import config, labels, store, synth
from autoclip.registry import Registry
from autoclip.train import train

CACHE = Path(tempfile.gettempdir()) / "autoclip-bench" / "retrain"
TARGET_S = 300.0
VOD_SECONDS = 400.0
CLIP = (4.0, 1.0)  # seconds of each labelled clip, seconds between clips


def vods(n: int) -> list[synth.SynthVod]:
    CACHE.mkdir(parents=True, exist_ok=True)
    return [synth.planted_vod(CACHE / f"vod{i}.mp4", VOD_SECONDS, seed=40 + i, highlights=12, visual=6, audio=6)
            for i in range(n)]


def tile_labels(vod: synth.SynthVod, start: float = 1.0) -> list[tuple[float, float, str]]:
    """Clips of CLIP[0] s every CLIP[0] + CLIP[1] s; highlight when it overlaps a planted highlight."""
    out, t = [], start
    while t + CLIP[0] < vod.duration - 1:
        a, b = round(t, 2), round(t + CLIP[0], 2)
        hot = any(e.start < b and a < e.end for e in vod.highlights())
        out.append((a, b, "highlight" if hot else "normal"))
        t += CLIP[0] + CLIP[1]
    return out


def deployment(root: Path, threads: int, first_epochs: int | None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    cfg_path = root / "config.toml"
    epochs = f"[train]\nepochs = {first_epochs}\n" if first_epochs else ""
    cfg_path.write_text(f'[paths]\ncache = "{CACHE / "features"}"\n[model]\nthreads = {threads}\n{epochs}')
    return cfg_path


def run(args: argparse.Namespace) -> dict:
    cfg0 = config.from_dict({}, root=CACHE)
    per_clip = min(cfg0.train.frames_per_clip, int(CLIP[0] * cfg0.frames.fps))
    train_share = cfg0.train.split[0] / sum(cfg0.train.split)
    clips_needed = int(args.frames / (per_clip * train_share)) + 1
    per_vod = len(tile_labels(synth.SynthVod(Path("x"), VOD_SECONDS, [])))
    media = vods(-(-clips_needed // per_vod))
    root = Path(tempfile.mkdtemp(prefix="autoclip-retrain-"))
    cfg_path = deployment(root, args.threads, args.first_epochs)
    cfg = config.load(cfg_path)
    conn = store.connect(cfg.path("database"))
    all_clips = [(v, c) for v in media for c in tile_labels(v)]
    seed, extra = all_clips[:clips_needed], all_clips[clips_needed:clips_needed + args.answers]
    for v, (a, b, lab) in seed:
        labels.add_label(conn, v.path, a, b, lab, "import")
    out = {}
    for name, added in (("first", []), ("retrain", extra)):
        if name == "retrain":  # the retrain runs with the default epochs (a warm start takes warm_epochs)
            cfg = config.load(deployment(root, args.threads, None))
        for v, (a, b, lab) in added:
            labels.add_label(conn, v.path, a, b, lab, "review")
        t0 = time.monotonic()
        result = train(cfg, conn, trigger="manual", progress=False, threads=args.threads)
        wall = time.monotonic() - t0
        m = Registry(cfg.path("models")).metrics(result["model"])
        fit = m["seconds"]["fit"]
        speeds = [h["images_per_s"] for h in m["history"]]
        out[name] = {"wall": wall, "fit": fit, "other": wall - fit, "frames": m["train"]["samples"],
                     "epochs": len(m["history"]), "images_per_s": sum(speeds) / len(speeds), "start": m["start"],
                     "promoted": result["promoted"]}
    out["load"] = os.getloadavg()
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=5000, help="labelled training frames (after the per-clip cap)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--answers", type=int, default=20, help="labels added before the timed retrain")
    p.add_argument("--first-epochs", type=int, default=1, help="epochs of the teacher (untimed quality)")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    got = run(args)
    for name in ("first", "retrain"):
        r = got[name]
        print(f"{name:<8} {r['frames']:>5} training frames, {r['epochs']} epochs from {r['start']}: "
              f"wall {r['wall']:.0f} s (fit {r['fit']:.0f} s, decode/eval/save {r['other']:.0f} s), "
              f"{r['images_per_s']:.1f} images/s")
    ratio = got["retrain"]["wall"] / TARGET_S
    print(f"retrain seconds / {TARGET_S:.0f} = {ratio:.2f} (target <= 1.0) "
          f"[load average {got['load'][0]:.1f} on {os.cpu_count()} cores]")


if __name__ == "__main__":
    main()
