"""`autoclip score`, `process`, `render` and `crop`: from a VOD to a reel."""

from __future__ import annotations

import argparse
import csv
import logging
from pathlib import Path

from autoclip.commands import Context, add_command, add_job_dir, add_json, add_vod, emit_json
from autoclip.timefmt import hms

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub, "score", cmd_score,
        help="score every sampled frame of a VOD with the current model (kept in the job folder)",
        summary="score every sampled frame of a VOD",
        example="autoclip score stream.mkv --csv scores.csv",
    )
    add_vod(p)
    p.add_argument("--csv", type=Path, metavar="FILE", help="also write time,score rows to FILE")
    add_job_dir(p)
    add_json(p)

    p = add_command(
        sub, "process", cmd_process,
        help="score, select and render one VOD into a highlight reel, then queue review items",
        summary="one VOD -> reel + segment list + review items",
        example="autoclip process stream.mkv --json",
    )
    add_vod(p)
    add_job_dir(p)
    add_json(p)

    p = add_command(
        sub, "render", cmd_render,
        help="re-select and re-render a processed job from its stored scores (after a config change)",
        summary="re-render a job from its stored scores",
        example="autoclip render vod-1a2b3c4d5e6f7a8b",
    )
    p.add_argument("job", help="job id (a folder name under [paths] jobs) or a job folder")
    add_json(p)


def cmd_score(args: argparse.Namespace, ctx: Context) -> int:
    from autoclip.pipeline import score_job

    cfg = ctx.config
    job = score_job(args.vod, cfg, job_dir=args.job_dir)
    scores, jdir = job.scores, job.job_dir
    if args.csv:
        from autoclip.fsutil import atomic_path

        with atomic_path(args.csv) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["time", "score"])
            w.writerows((f"{t:.3f}", f"{s:.4f}") for t, s in zip(scores.times, scores.scores, strict=True))
    if args.json:
        emit_json(dict(scores.to_json(), job=jdir.name))
        return 0
    n = len(scores.scores)
    top = sorted(zip(scores.scores, scores.times, strict=True), reverse=True)[:5]
    print(f"scored {n} frames of {scores.duration:.1f} s with model {scores.model_id}; kept in {jdir}")
    if n:
        print(f"  mean {scores.scores.mean():.3f}  max {scores.scores.max():.3f}")
        print("  highest: " + ", ".join(f"{hms(t)} ({s:.2f})" for s, t in top))
    print(f"  next: autoclip process {args.vod}  (reuses these scores)")
    return 0


def _print_result(result: dict) -> None:
    segs = result["segments"]
    if not result["reel"]:
        print(f"no highlights found in {result['vod']} (cut list: {result['segments_file']})")
        return
    total = sum(s["end"] - s["start"] for s in segs)
    print(f"reel: {result['reel']}  ({len(segs)} segments, {total:.1f} s, model {result['model']})")
    for i, s in enumerate(segs, 1):
        print(f"  {i:2d}. {hms(s['start'])} - {hms(s['end'])}  score {s['score']:.2f}")
    print(f"  cut list {result['segments_file']}, EDL {result['edl']}, chapters {result['chapters']}")


def cmd_process(args: argparse.Namespace, ctx: Context) -> int:
    from autoclip.pipeline import process_vod

    cfg = ctx.config
    result = process_vod(args.vod, cfg, job_dir=args.job_dir)
    if args.json:
        emit_json(result)
    else:
        _print_result(result)
    return 0


def cmd_render(args: argparse.Namespace, ctx: Context) -> int:
    from autoclip.pipeline import render_job

    result = render_job(args.job, ctx.config)
    if args.json:
        emit_json(result)
    else:
        _print_result(result)
    return 0
