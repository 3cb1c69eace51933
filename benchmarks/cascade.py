"""Dense vs cascade scoring against a bare decode, measured side by side in one run.

For a 10-minute and a 1-hour 720p30 VOD and a 6-minute 1080p60 one (generated with planted
highlights and one-sense distractors, benchmarks/cascade_media.py, cached under
$TMPDIR/autoclip-bench; the 720p30 ones also re-encoded as a streaming app's x264 writes them,
which decodes at ~20x real time here against ~75x for the generator's own encode), each VOD in turn: a bare ``ffmpeg -i VOD -f null -`` decode, dense
scoring, cascade scoring, and the bare decode again (its mean is the baseline), then
  - dense / bare and cascade / bare wall time (targets: cascade <= 0.35 on the 720p30 VODs),
  - the fraction of the VOD stage 2 decoded,
  - frame AP of dense and of cascade against the planted truth (target: within 0.01), and the
    reel F1 (selected segments vs planted highlights, IoU >= 0.3) of each.
The model is trained once (default config: fused ResNet-18 + log-mel CNN at 128 px, 4 fps) on three
other generated 3-minute 720p30 VODs and kept in $TMPDIR/autoclip-bench/cascade-deploy.

``--wins`` adds the cheap wins on the frame work, each measured alone: torch.inference_mode vs
no_grad, channels_last vs contiguous, the batch size, decode threads x torch threads on a 2-minute
range, and a keyframe-only decode against a full one.

The machine's load average is printed at the start and the end: other work on it slows every
measurement, so compare the ratios, not the seconds.

Usage: ``.venv/bin/python benchmarks/cascade.py [--only 10s,60s,10,60,1080] [--wins] [--threads 2]``
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
from cascade_media import (
    CACHE,
    TRAIN,
    VOD10,
    VOD10_STREAM,
    VOD60,
    VOD60_STREAM,
    VOD1080,
    Recipe,
    ensure,
)

from autoclip import config, media, metrics, store, synth
from autoclip.selection import select

VODS = {"10s": VOD10_STREAM, "60s": VOD60_STREAM, "10": VOD10, "60": VOD60, "1080": VOD1080}


def deployment(threads: int) -> config.Config:
    root = CACHE / "cascade-deploy"
    root.mkdir(parents=True, exist_ok=True)
    cfg = config.from_dict({"model": {"threads": threads}, "train": {"pseudo_max": 0}}, root=root)
    cfg.ensure_dirs()
    return cfg


def trained_model(cfg: config.Config):
    from autoclip import labels
    from autoclip.registry import Registry
    from autoclip.train import train

    reg = Registry(cfg.path("models"))
    from autoclip.model import ModelDims

    # (re)train when there is no model, its gate predates the window-coverage threshold, or the
    # default model's shape (kind, temporal context) changed
    cur = reg.current_id()
    meta = reg.meta(cur) if cur else {}
    if cur is None or "margin_frames" not in (meta.get("gate") or {}) or \
            meta.get("dims") != ModelDims.from_config(cfg).to_dict():
        conn = store.connect(cfg.path("database"))
        for r in TRAIN:
            vod = synth.SynthVod(ensure(r), r.duration, r.events())
            for start, end, label in synth.sample_clips(vod, normal_per_event=1.0, seed=r.seed):
                labels.add_label(conn, vod.path, start, end, label, "import")
        t0 = time.perf_counter()
        out = train(cfg, conn, pseudo=False, progress=False, force=True)
        print(f"trained {out['model']} in {time.perf_counter() - t0:.0f} s: val AP {out['metrics']['val'].get('ap')}, "
              f"test AP {out['metrics']['test'].get('ap')}", flush=True)
        if not out["promoted"]:
            reg.promote(out["model"])
        conn.close()
    loaded = reg.load_current()
    g = loaded.meta["gate"]
    print(f"model {loaded.id}: gate threshold {g['threshold']:.4f} (val recall {g['val_recall']:.3f} of "
          f"{g['val_highlight_frames']} highlight frames, {g['val_normal_pass']:.0%} of normal frames pass)")
    return loaded


def bare_decode(vod: Path, *extra: str) -> float:
    t0 = time.perf_counter()
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", *extra, "-i", str(vod), "-f", "null", "-"], check=True)
    return time.perf_counter() - t0


def truth_labels(times: np.ndarray, events: list[synth.Event]) -> np.ndarray:
    y = np.zeros(len(times), dtype=bool)
    for e in events:
        if e.kind == "highlight":
            y |= (times >= e.start) & (times <= e.end)
    return y


def reel_f1(scores: Any, cfg: config.Config, events: list[synth.Event]) -> float:
    segs = select(scores.times, scores.scores, cfg.selection, duration=scores.duration, loudness=scores.loudness)
    truth = [(e.start, e.end) for e in events if e.kind == "highlight"]

    def iou(a: tuple[float, float], b: tuple[float, float]) -> float:
        inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
        return inter / max(a[1] - a[0] + b[1] - b[0] - inter, 1e-9)

    found = [(s.start, s.end) for s in segs]
    hit = sum(any(iou(t, f) >= 0.3 for f in found) for t in truth)
    correct = sum(any(iou(t, f) >= 0.3 for t in truth) for f in found)
    p, r = correct / max(len(found), 1), hit / max(len(truth), 1)
    return 2 * p * r / max(p + r, 1e-9)


def bench_vod(label: str, recipe: Recipe, cfg: config.Config, loaded: Any) -> dict[str, Any]:
    from autoclip.scoring import score_range

    vod = ensure(recipe)
    info = media.probe(vod)
    out: dict[str, Any] = {"label": label, "desc": f"{info.duration / 60:.0f} min {info.width}x{info.height} "
                                                    f"{info.fps:.0f} fps, {'stream-like' if recipe.stream else 'synthetic'}"
                                                    " encode"}
    bare1 = bare_decode(vod)
    runs = {}
    for mode in ("dense", "cascade"):
        t0 = time.perf_counter()
        runs[mode] = score_range(vod, cfg, loaded, mode=mode, progress=False, info=info)
        out[f"{mode}_s"] = time.perf_counter() - t0
    bare2 = bare_decode(vod)
    out["bare_s"] = (bare1 + bare2) / 2
    out["bare_spread"] = abs(bare1 - bare2) / out["bare_s"]
    events = recipe.events()
    for mode, sc in runs.items():
        out[f"{mode}_ap"] = metrics.average_precision(truth_labels(sc.times, events), sc.scores)
        out[f"{mode}_f1"] = reel_f1(sc, cfg, events)
    out["fraction"] = float(runs["cascade"].stats["stage2_fraction"])
    out["stats"] = runs["cascade"].stats
    out["same_times"] = bool(np.array_equal(runs["dense"].times, runs["cascade"].times))
    return out


def report(r: dict[str, Any]) -> None:
    b = r["bare_s"]
    print(f"{r['desc']}: bare decode {b:.1f} s (two runs {r['bare_spread']:.0%} apart) | dense {r['dense_s']:.1f} s "
          f"= {r['dense_s'] / b:.2f}x | cascade {r['cascade_s']:.1f} s = {r['cascade_s'] / b:.2f}x bare, "
          f"{r['cascade_s'] / r['dense_s']:.2f}x dense", flush=True)
    s = r["stats"]
    print(f"    stage 2 decoded {r['fraction']:.1%} of the VOD in {s['windows']} windows (stage 1 {s['stage1_s']:.1f} s, "
          f"stage 2 {s['stage2_s']:.1f} s of which model {s['model_s']:.1f} s) | frame AP dense {r['dense_ap']:.4f} "
          f"cascade {r['cascade_ap']:.4f} (diff {r['cascade_ap'] - r['dense_ap']:+.4f}) | reel F1 dense "
          f"{r['dense_f1']:.3f} cascade {r['cascade_f1']:.3f} | same frame times: {r['same_times']}", flush=True)


def bench_wins(cfg: config.Config, loaded: Any) -> None:
    """The cheap wins on the frame work, each measured on its own."""
    import torch

    from autoclip.model import frames_to_tensor, set_threads
    from autoclip.scoring import score_range

    set_threads(cfg.model.threads)
    net = loaded.net
    rng = np.random.default_rng(0)
    n = 256
    frames = rng.integers(0, 256, (n, cfg.frames.size, cfg.frames.size, 3), dtype=np.uint8)
    mels = rng.standard_normal((n, loaded.dims.n_mels, loaded.dims.mel_frames)).astype(np.float32)
    mt = torch.from_numpy(mels).unsqueeze(1)

    def forward(batch: int, ctx: Any, channels_last: bool) -> float:
        net.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
        t0 = time.perf_counter()
        with ctx():
            for i in range(0, n, batch):
                f = frames_to_tensor(frames[i: i + batch], cfg.frames.size)
                f = f if channels_last else f.contiguous()
                net(f, mt[i: i + batch])
        return n / (time.perf_counter() - t0)

    net.eval()
    forward(64, torch.inference_mode, True)  # warm-up
    rows = [("inference_mode, channels_last, batch 64", forward(64, torch.inference_mode, True)),
            ("no_grad,        channels_last, batch 64", forward(64, torch.no_grad, True)),
            ("inference_mode, contiguous,    batch 64", forward(64, torch.inference_mode, False))]
    rows += [(f"inference_mode, channels_last, batch {b}", forward(b, torch.inference_mode, True))
             for b in (16, 32, 128)]
    net.to(memory_format=torch.channels_last)
    print(f"(wins) model forward, {cfg.model.threads} torch threads, {cfg.frames.size} px fused:")
    for name, speed in rows:
        print(f"    {name}: {speed:.0f} frames/s")
    vod = ensure(VOD10)
    info = media.probe(vod)
    print("(wins) dense scoring of a 2-minute range, decode threads x torch threads (wall s):")
    for torch_threads in (1, 2):
        line = []
        for dec in (0, 1, 2):
            c = config.from_dict({**cfg.model_dump(mode="json"), "media": {**cfg.media.model_dump(mode="json"),
                                  "threads": dec}, "model": {**cfg.model.model_dump(), "threads": torch_threads}},
                                 root=cfg.root)
            t0 = time.perf_counter()
            score_range(vod, c, loaded, start=120.0, end=240.0, mode="dense", progress=False, info=info)
            line.append(f"decode threads {dec or 'auto'}: {time.perf_counter() - t0:.1f}")
        print(f"    torch threads {torch_threads}: " + ", ".join(line))
    full, key = bare_decode(vod), bare_decode(vod, "-skip_frame", "nokey")
    print(f"(wins) bare decode {full:.1f} s vs keyframe-only (-skip_frame nokey) {key:.1f} s = {key / full:.2f}x; "
          "keyframes come every 2 s here, the grid needs a frame every 0.25 s, so keyframes alone are not enough")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="10s,60s,10,1080",
                    help="comma-separated VODs: 10s, 60s (720p30, stream-like encode), 10, 60 (720p30, synthetic "
                         "encode), 1080 (1080p60, synthetic)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    ap.add_argument("--wins", action="store_true", help="also measure the cheap wins")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the start; media in {CACHE}",
          flush=True)
    cfg = deployment(args.threads)
    loaded = trained_model(cfg)
    results = []
    for key in args.only.split(","):
        results.append(bench_vod(key, VODS[key], cfg, loaded))
        report(results[-1])
    if args.wins:
        bench_wins(cfg, loaded)
    print(f"load average at the end: {os.getloadavg()[0]:.1f} (1 min), {os.getloadavg()[1]:.1f} (5 min)")
    for r in results:
        if r["label"] in ("10", "60", "10s", "60s"):
            ok = r["cascade_s"] / r["bare_s"] <= 0.35
            print(f"target {r['desc']}: cascade {r['cascade_s'] / r['bare_s']:.2f}x bare decode "
                  f"({'met' if ok else 'NOT met'}, <= 0.35)")
        print(f"target {r['desc']}: AP diff {r['cascade_ap'] - r['dense_ap']:+.4f} "
              f"({'met' if abs(r['cascade_ap'] - r['dense_ap']) <= 0.01 else 'NOT met'}, within 0.01)")


if __name__ == "__main__":
    main()
