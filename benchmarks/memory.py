"""Peak memory of a full sample pass (frames at 4 fps + audio + log-mels) over 10-minute and 1-hour VODs.

A worker process runs ``features.SampleReader`` over the whole VOD, keeping only a count (as
scoring keeps only per-frame scores); this script samples the resident memory of the worker and
all its ffmpeg children together (/proc, every 0.1 s) and reports the peak of the sum, plus
each process's own peak (getrusage). Target: under 1 GB, and the same for 1 hour as for 10 min.

The VODs are 1280x720 30 fps H.264 + AAC, generated once and cached under $TMPDIR/autoclip-bench
(shared with the other benchmarks): the 1-hour one is six stream-copied copies of the 10-minute one.

With ``--mode cascade`` (or ``dense``) the worker runs the whole scoring pass in that mode instead,
with the model benchmarks/cascade.py trained.

Usage: ``.venv/bin/python benchmarks/memory.py [--only 10|60] [--mode features|cascade|dense]``
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from autoclip import synth
from autoclip.fsutil import atomic_path

CACHE = Path(tempfile.gettempdir()) / "autoclip-bench"

WORKER = r"""
import json, resource, sys, time
from autoclip import config, media
from autoclip.features import SampleReader
cfg = config.from_dict({})
info = media.probe(sys.argv[1], cfg.media)
n, marks, t0 = 0, [], time.time()
for batch in SampleReader(sys.argv[1], cfg, info=info):
    n += len(batch.times)
    if n % 1600 < len(batch.times):  # every ~400 s of video
        rss = int(open("/proc/self/statm").read().split()[1]) * resource.getpagesize()
        marks.append((round(float(batch.times[-1])), rss))
me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"frames": n, "duration": info.duration, "seconds": time.time() - t0,
                  "python_peak": me.ru_maxrss * 1024, "largest_ffmpeg_peak": kids.ru_maxrss * 1024,
                  "python_rss_marks": marks}))
"""

#: ``--mode cascade|dense``: the whole scoring pass (``scoring.score_range``) with the model that
#: benchmarks/cascade.py trained (its deployment folder is argv[2]), keeping the scores as a job does
SCORE_WORKER = r"""
import json, resource, sys, time
from autoclip import config, media
from autoclip.registry import Registry
from autoclip.scoring import score_range
cfg = config.from_dict({"model": {"threads": 2}}, root=sys.argv[2])
loaded = Registry(cfg.path("models")).load_current()
info = media.probe(sys.argv[1], cfg.media)
t0 = time.time()
scores = score_range(sys.argv[1], cfg, loaded, mode=sys.argv[3], progress=False, info=info)
me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"frames": len(scores.times), "duration": info.duration, "seconds": time.time() - t0,
                  "python_peak": me.ru_maxrss * 1024, "largest_ffmpeg_peak": kids.ru_maxrss * 1024,
                  "python_rss_marks": [], "stage2_fraction": scores.stats.get("stage2_fraction")}))
"""


def ensure_vods() -> tuple[Path, Path]:
    CACHE.mkdir(parents=True, exist_ok=True)
    ten, hour = CACHE / "vod-10min-720p30.mp4", CACHE / "vod-60min-720p30.mp4"
    if not ten.exists():  # same name and recipe as benchmarks/score_render.py and decode.py
        print(f"generating {ten.name}...", flush=True)
        events = synth.plan_events(600, highlights=8, visual=4, audio=4, seed=1)
        with atomic_path(ten) as tmp:
            synth.make_vod(tmp, 600, events, width=1280, height=720, fps=30, seed=1, crf=28)
    if not hour.exists():
        print(f"joining six copies of {ten.name} into {hour.name}...", flush=True)
        listing = hour.with_suffix(".ffconcat")
        listing.write_text("ffconcat version 1.0\n" + f"file '{ten}'\n" * 6)
        with atomic_path(hour) as tmp:
            subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "concat", "-safe", "0", "-i", str(listing),
                            "-c", "copy", "-f", "mp4", str(tmp)], check=True)
        listing.unlink()
    return ten, hour


def tree_rss(pid: int) -> int:
    """Resident bytes of ``pid`` and all its descendants."""
    total, todo = 0, [pid]
    page = os.sysconf("SC_PAGE_SIZE")
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/statm") as f:
                total += int(f.read().split()[1]) * page
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo += [int(c) for c in f.read().split()]
        except (FileNotFoundError, ProcessLookupError, ValueError):
            continue
    return total


def measure(vod: Path, mode: str = "features") -> dict:
    cmd = [sys.executable, "-c", WORKER, str(vod)] if mode == "features" else \
        [sys.executable, "-c", SCORE_WORKER, str(vod), str(CACHE / "cascade-deploy"), mode]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    peak, samples = 0, 0
    while proc.poll() is None:
        peak = max(peak, tree_rss(proc.pid))
        samples += 1
        time.sleep(0.1)
    out = json.loads(proc.stdout.read())
    out.update(tree_peak=peak, samples=samples)
    return out


def mb(n: float) -> str:
    return f"{n / 2**20:.0f} MB"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=["10", "60"], help="measure one VOD only")
    ap.add_argument("--mode", choices=["features", "cascade", "dense"], default="features",
                    help="features: the sample pass alone (default); cascade / dense: the whole scoring pass in "
                         "that mode with the model benchmarks/cascade.py trained (run it first)")
    args = ap.parse_args()
    if args.mode != "features" and not (CACHE / "cascade-deploy" / "data" / "models" / "current.json").exists():
        raise SystemExit("no trained model in the cascade benchmark's deployment: run benchmarks/cascade.py first")
    ten, hour = ensure_vods()
    results = {}
    for label, vod in (("10", ten), ("60", hour)):
        if args.only and args.only != label:
            continue
        r = measure(vod, args.mode)
        results[label] = r
        extra = "" if r.get("stage2_fraction") is None else f" (stage 2 decoded {r['stage2_fraction']:.1%})"
        print(f"{vod.name} [{args.mode}{extra}]: {r['frames']} frames of {r['duration'] / 60:.0f} min in {r['seconds']:.0f} s | "
              f"peak RSS, worker + ffmpeg children together: {mb(r['tree_peak'])} "
              f"(python {mb(r['python_peak'])}, largest ffmpeg {mb(r['largest_ffmpeg_peak'])}) | "
              f"python RSS along the way: " + ", ".join(f"{t}s {mb(b)}" for t, b in r["python_rss_marks"]),
              flush=True)
    if len(results) == 2:
        a, b = results["10"]["tree_peak"], results["60"]["tree_peak"]
        print(f"1-hour / 10-minute peak: {b / a:.2f} (flat means memory does not grow with length); "
              f"1-hour peak {mb(b)} {'<' if b < 2**30 else '>='} 1 GB")


if __name__ == "__main__":
    main()
