"""Scoring one long VOD on one machine vs on a Ray cluster, measured side by side in one run.

One generated 60-minute 720p30 VOD (six stream-copied copies of a 10-minute one, cached under
$TMPDIR/autoclip-bench, shared with benchmarks/score_render.py) is scored with the default
model shape (untrained weights: speed does not depend on them):

  local     the local backend (this process, [model] threads as configured);
  ray x1    a loopback Ray cluster: a head with no CPUs for tasks and one 1-CPU worker node;
  ray x2    the same cluster with a second 1-CPU worker node.

It prints each latency and the ratios, the largest stitched-vs-local score difference, and
every chunk's time (from which the latency on N machines follows: about the slowest round of
ceil(chunks / N) chunks plus the fixed overhead). All nodes here share this machine's cores,
so on a 2-core box more workers cannot go much faster than one local run that already uses
both cores: expect ratios near 1, not 1/N.

Usage: ``.venv/bin/python benchmarks/cluster.py [--minutes 60] [--chunk 600] [--range-audio]``
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from score_render import CACHE, ensure_long, ensure_vod  # noqa: E402  (the shared media cache)

from autoclip import config, media  # noqa: E402
from autoclip.cluster.loopback import LoopbackCluster  # noqa: E402


def deployment(chunk: float, address: str = "auto", range_audio: bool = False) -> config.Config:
    root = CACHE / "cluster-deploy"
    cfg = config.from_dict({"cluster": {"backend": "ray", "address": address, "chunk": chunk,
                                        "audio_from_start": not range_audio}}, root=root)
    cfg.ensure_dirs()
    return cfg


def model(cfg: config.Config):
    import torch

    from autoclip.model import ModelDims, build_model, prepare_for_inference
    from autoclip.registry import LoadedModel

    torch.manual_seed(0)
    dims = ModelDims.from_config(cfg)
    return LoadedModel(net=prepare_for_inference(build_model(dims, "none")), dims=dims, meta={}, id="bench-untrained")


def score_on_cluster(vod: Path, cfg: config.Config, loaded, info) -> tuple[float, object, list[dict]]:
    from autoclip.cluster.ray_backend import RayRunner

    runner = RayRunner(cfg)
    try:
        t0 = time.perf_counter()
        runner.check_access(vod)
        scores = runner.score(vod, cfg, loaded, info=info, progress=False)
        return time.perf_counter() - t0, scores, runner.last_chunks
    finally:
        runner.close()


def report_chunks(label: str, chunks: list[dict], latency: float) -> None:
    times = [c["total"] for c in chunks]
    print(f"  {label}: {len(chunks)} chunks; seconds per chunk " + ", ".join(f"{t:.0f}" for t in times)
          + f" (mean {np.mean(times):.1f}, model {np.mean([c['model'] for c in chunks]):.1f})")
    overhead = latency - sum(times) / max(1, len({c['node'] for c in chunks}))
    print(f"  {label}: chunk work {sum(times):.0f} s in all; overhead beyond the chunks about {max(0.0, overhead):.0f} s")


def projection(chunks: list[dict], overhead: float) -> None:
    times = sorted((c["total"] for c in chunks), reverse=True)
    print("projected latency with N one-CPU machines of this speed (rounds of ceil(chunks/N) chunks + overhead):")
    for n in (1, 2, 3, 6):
        rounds = math.ceil(len(times) / n)
        print(f"  N={n}: about {rounds * float(np.mean(times)) + overhead:.0f} s")


def _label(key: object) -> str:
    return "ray x2, range-only audio" if key == "range" else f"ray x{key}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=int, default=60, choices=(10, 60), help="VOD length")
    ap.add_argument("--chunk", type=float, default=600.0, help="[cluster] chunk in seconds")
    ap.add_argument("--range-audio", action="store_true", help="also run ray x2 with audio_from_start = false")
    ap.add_argument("--vod", type=Path, help="score this file instead (a quick check of the script)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    CACHE.mkdir(parents=True, exist_ok=True)
    print(f"machine: {os.cpu_count()} cores; media cached in {CACHE}")
    if args.vod:
        vod = args.vod
    else:
        vod = ensure_vod(CACHE / "vod-10min-720p30.mp4", 600)
        if args.minutes == 60:
            vod = ensure_long(CACHE / "vod-60min-720p30.mp4", vod, 6)
    info = media.probe(vod)
    cfg = deployment(args.chunk)
    loaded = model(cfg)

    from autoclip.runner import LocalRunner

    t0 = time.perf_counter()
    local = LocalRunner().score(vod, cfg, loaded, info=info, progress=False)
    t_local = time.perf_counter() - t0
    print(f"local: {t_local:.1f} s for {info.duration / 60:.0f} min ({info.duration / t_local:.1f}x real time), "
          f"{len(local.times)} frames")

    results = {}
    with LoopbackCluster() as c:
        c.start_head(num_cpus=0)
        for workers in (1, 2):
            c.add_node(num_cpus=1)
            c.wait_nodes(workers + 1)
            ccfg = deployment(args.chunk, c.address)
            results[workers] = score_on_cluster(vod, ccfg, loaded, info)
        if args.range_audio:
            results["range"] = score_on_cluster(vod, deployment(args.chunk, c.address, range_audio=True), loaded, info)

    print(f"\n{info.duration / 60:.1f}-minute VOD, chunks of {args.chunk:.0f} s:")
    print(f"  local   {t_local:7.1f} s")
    for key, (lat, scores, _chunks) in results.items():
        label = _label(key)
        same = np.array_equal(scores.times, local.times)
        diff = float(np.abs(scores.scores - local.scores).max()) if same else float("nan")
        print(f"  {label:7} {lat:7.1f} s   ratio to local {lat / t_local:.2f}   frames on the same grid: {same}   "
              f"max |stitched - local| score {diff:.1e}")
    if 1 in results and 2 in results:
        print(f"  ray x2 / ray x1 latency: {results[2][0] / results[1][0]:.2f}")
    print("\nper-chunk timings:")
    for key, (lat, _scores, chunks) in results.items():
        report_chunks(_label(key), chunks, lat)
    lat1, _, chunks1 = results[1]
    overhead = max(0.0, lat1 - sum(c["total"] for c in chunks1))
    projection(chunks1, overhead)
    print("note: every node here shares the same cores; chunk times on separate machines would be those of an idle one-CPU box.")


if __name__ == "__main__":
    main()
