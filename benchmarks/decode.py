"""Decoding cost: autoclip's full sample pass against a bare ffmpeg decode, measured in one run.

For a generated 10-minute 720p30 H.264+AAC VOD it times, alternating, best of N:
  bare      ``ffmpeg -i VOD -f null -`` (every video frame and the audio, decoded and dropped)
  autoclip  ``features.SampleReader``: frames at 4 fps (128 px) + audio + a log-mel window per frame
  keyframes ``ffmpeg -skip_frame nokey -i VOD -map 0:v -f null -`` (for orientation only)
and prints autoclip / bare for wall time and for CPU time (user + sys of this process and its
children; steadier than wall time on a shared machine). Target: at most 1.0.

Two encodes are measured: x264 ``ultrafast`` (no deblocking, no B-frames: the worst case for
autoclip, whose decoder skips the loop filter) and ``veryfast`` (B-frames, CABAC, deblocking:
how OBS and Twitch encode). Media is cached under $TMPDIR/autoclip-bench.

Usage: ``.venv/bin/python benchmarks/decode.py [--rounds 3] [--encode ultrafast|veryfast|both] [--vod PATH]``
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from autoclip import config, media, synth
from autoclip.features import SampleReader
from autoclip.fsutil import atomic_path

CACHE = Path(tempfile.gettempdir()) / "autoclip-bench"
VODS = {  # the ultrafast one is shared with benchmarks/score_render.py (same name, same recipe)
    "ultrafast": ("vod-10min-720p30.mp4", {"crf": 28}),
    "veryfast": ("vod-10min-720p30-veryfast.mp4", {"crf": 23, "preset": "veryfast"}),
}


def ensure_vod(encode: str, duration: float = 600.0) -> Path:
    name, kw = VODS[encode]
    path = CACHE / name
    if not path.exists():
        print(f"generating {name} ({duration:.0f} s, 1280x720 30 fps, x264 {kw.get('preset', 'ultrafast')})...",
              flush=True)
        events = synth.plan_events(duration, highlights=8, visual=4, audio=4, seed=1)
        with atomic_path(path) as tmp:
            synth.make_vod(tmp, duration, events, width=1280, height=720, fps=30, seed=1, **kw)
    return path


def cpu() -> float:
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def measure(fn: Callable[[], object]) -> tuple[float, float]:
    c0, t0 = cpu(), time.perf_counter()
    fn()
    return time.perf_counter() - t0, cpu() - c0


def ffmpeg_null(vod: Path, *extra: str) -> Callable[[], None]:
    cmd = ["ffmpeg", "-nostdin", "-v", "error", *extra[:2], "-i", str(vod), *extra[2:], "-f", "null", "-"]
    return lambda: subprocess.run(cmd, check=True)


def sample_pass(vod: Path, cfg: config.Config, info: media.ProbeInfo) -> Callable[[], int]:
    def run() -> int:
        n = 0
        for batch in SampleReader(vod, cfg, info=info, crop=None):
            n += len(batch.times)
        return n

    return run


def bench(vod: Path, rounds: int, threads: list[int]) -> None:
    cfg = config.from_dict({})
    info = media.probe(vod, cfg.media)
    print(f"\n{vod.name}: {info.duration / 60:.1f} min {info.width}x{info.height} {info.video_codec} "
          f"{info.fps:g} fps, {info.size * 8 / info.duration / 1e6:.1f} Mbit/s, audio {info.audio_codec}")
    list(SampleReader(vod, cfg, info=info, end=2.0))  # warm-up: numpy, mel basis, page cache
    tasks: dict[str, Callable[[], object]] = {"bare": ffmpeg_null(vod)}
    for n in threads:
        name = "autoclip" if n == cfg.media.threads else f"autoclip/threads={n}"
        tasks[name] = sample_pass(vod, config.from_dict({"media": {"threads": n}}), info)
    tasks["keyframes"] = ffmpeg_null(vod, "-skip_frame", "nokey", "-map", "0:v:0")
    best = {k: (float("inf"), float("inf")) for k in tasks}
    for r in range(rounds):
        for name, fn in tasks.items():
            wall, used = measure(fn)
            best[name] = (min(best[name][0], wall), min(best[name][1], used))
            print(f"  round {r + 1} {name:>18}: {wall:6.1f} s wall {used:6.1f} s cpu", flush=True)
    bw, bc = best["bare"]
    for name, (wall, used) in best.items():
        print(f"  best {name:>18}: {wall:6.1f} s wall ({info.duration / wall:5.1f}x real time) "
              f"{used:6.1f} s cpu  | vs bare: wall {wall / bw:.2f}  cpu {used / bc:.2f}")
    for name in (k for k in best if k.startswith("autoclip")):
        print(f"  RATIO {name} / bare decode: wall {best[name][0] / bw:.2f}, cpu {best[name][1] / bc:.2f} "
              "(target <= 1.0)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds; the best of each is kept")
    ap.add_argument("--encode", choices=["ultrafast", "veryfast", "both"], default="both")
    ap.add_argument("--vod", type=Path, help="measure this file instead of the generated ones")
    ap.add_argument("--threads", default="0", help="comma-separated media.threads values to measure (default: 0)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    CACHE.mkdir(parents=True, exist_ok=True)
    print(f"machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; media cached in {CACHE}")
    vods = [args.vod] if args.vod else [ensure_vod(e) for e in (["ultrafast", "veryfast"] if args.encode == "both"
                                                                   else [args.encode])]
    for vod in vods:
        bench(vod, args.rounds, [int(n) for n in args.threads.split(",")])


if __name__ == "__main__":
    main()
