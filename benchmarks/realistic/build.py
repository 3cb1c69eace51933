"""Build the realistic benchmark's VODs (deterministic, resumable) into a cache outside the repo.

    python -m benchmarks.realistic.build [--cache DIR] [--jobs 2] [--only NAME ...] [--smoke]

The cache is ``$AUTOCLIP_BENCH_CACHE`` or ``~/.cache/autoclip/realistic``; inside it ``v<VERSION>/``
holds ``vods/NAME.EXT`` with ``NAME.EXT.truth.json`` beside each (written last: a VOD without its
truth is rebuilt), ``manifest.json`` (splits, files) and ``seed_labels.csv`` (the seed VODs'
labels in ``autoclip label import`` form). Sources are fetched once into ``sources/``.
A second run reuses everything already built; ``--smoke`` builds only a 100 s VOD.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchmarks.realistic import plan as P
from benchmarks.realistic import render, sources

log = logging.getLogger("realistic.build")


def default_cache() -> Path:
    env = os.environ.get("AUTOCLIP_BENCH_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "autoclip" / "realistic"


def version_dir(cache: Path) -> Path:
    return cache / f"v{P.VERSION}"


def truth_path(vod: Path) -> Path:
    return Path(str(vod) + ".truth.json")


def _atomic_json(path: Path, data: object) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1))
    tmp.replace(path)


def build_one(spec: P.VodSpec, src: sources.Sources, vods: Path, threads: int) -> tuple[str, float, bool]:
    out = vods / spec.file
    tp = truth_path(out)
    if out.exists() and tp.exists() and json.loads(tp.read_text()).get("version") == P.VERSION:
        return spec.name, 0.0, False
    t0 = time.monotonic()
    plan = P.make_plan(spec)
    work = vods.parent / "work" / spec.name
    plan.extra = render.render(plan, src, out, work, threads=threads)
    _atomic_json(tp, plan.truth())
    shutil.rmtree(work, ignore_errors=True)
    return spec.name, time.monotonic() - t0, True


def write_manifest(root: Path) -> dict:
    """List every VOD of the suite (and the smoke VOD) that is built, whichever run built it."""
    vods = root / "vods"
    manifest = {"version": P.VERSION, "vods": {}, "splits": {}}
    rows = ["vod,start,end,label"]
    for spec in (*P.SUITE, P.SMOKE):
        path = vods / spec.file
        if not (path.exists() and truth_path(path).exists()):
            continue
        manifest["vods"][spec.name] = {"path": str(path), "truth": str(truth_path(path)), "split": spec.split,
                                      "layout": spec.layout, "face": spec.face}
        manifest["splits"].setdefault(spec.split, []).append(spec.name)
        if spec.split == "seed":
            for a, b, label in P.seed_clips(P.make_plan(spec)):
                rows.append(f"{path},{a:.2f},{b:.2f},{label}")
    (root / "seed_labels.csv").write_text("\n".join(rows) + "\n")
    _atomic_json(root / "manifest.json", manifest)
    return manifest


def build(cache: Path, specs: list[P.VodSpec], jobs: int = 2) -> dict:
    """Build ``specs`` (skipping those already built); returns the manifest."""
    root = version_dir(cache)
    vods = root / "vods"
    vods.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    src = sources.fetch(cache)
    log.info("sources ready in %.0f s", time.monotonic() - t0)
    threads = max(1, (os.cpu_count() or 2) // max(1, jobs))
    # longest first so the two workers finish together
    order = sorted(specs, key=lambda s: -s.duration * s.width * s.height * s.fps)
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for name, secs, built in pool.map(lambda s: build_one(s, src, vods, threads), order):
            log.info("%s: %s", name, f"built in {secs:.0f} s" if built else "already built")
    manifest = write_manifest(root)
    manifest["build_seconds"] = round(time.monotonic() - t0, 1)
    return manifest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cache", type=Path, default=default_cache(), help="cache folder (default %(default)s)")
    ap.add_argument("--jobs", type=int, default=2, help="VODs encoded at once")
    ap.add_argument("--only", nargs="*", default=None, help="build only these VOD names")
    ap.add_argument("--smoke", action="store_true", help="build only the smoke test's short VOD")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    specs = [P.SMOKE] if args.smoke else [s for s in P.SUITE if not args.only or s.name in args.only]
    try:
        manifest = build(args.cache, specs, jobs=args.jobs)
    except (sources.SourceError, render.RenderError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({"cache": str(version_dir(args.cache)), "build_seconds": manifest["build_seconds"],
                      "splits": manifest["splits"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
