"""One VOD from file to reel: probe -> completeness -> score -> select -> render -> review queue.

A job folder (``cfg.path("jobs")/<job id>`` unless the daemon passes one) keeps what is costly
to recompute: ``scores.npz`` (per-frame scores + loudness track) and ``process.json`` (the VOD,
its fingerprint, probe and model). ``render_job`` re-runs selection and rendering from those
after a config change; a retried job whose scores are already stored (same content, same
model) skips straight to rendering.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autoclip.config import Config
from autoclip.errors import MediaError, UsageError
from autoclip.fsutil import atomic_write_json, fingerprint, locate
from autoclip.runner import Runner, get_runner
from autoclip.selection import Segment, select

if TYPE_CHECKING:
    from autoclip.media import ProbeInfo
    from autoclip.scoring import Scores

log = logging.getLogger(__name__)

SCORES = "scores.npz"
RECORD = "process.json"


def job_id_for(fp: str) -> str:
    """A job id derived from a content fingerprint (same content, same job)."""
    return "vod-" + fp.rsplit("-", 1)[-1][:16]


def resolve_job_dir(job: str | os.PathLike[str], cfg: Config) -> Path:
    """A job given as a folder path or as a job id under cfg.path("jobs")."""
    p = Path(job)
    if p.is_dir() and (p / RECORD).exists():
        return p
    q = cfg.path("jobs") / os.fspath(job)
    if "/" not in os.fspath(job) and (q / RECORD).exists():
        return q
    raise UsageError(f"no processed job at {job}: give a job id under {cfg.path('jobs')} or a job folder "
                     "(run `autoclip process VOD` first)")


def _stored_scores(job_dir: Path, fp: str, model_id: str) -> Scores | None:
    from autoclip.scoring import Scores

    rec, npz = job_dir / RECORD, job_dir / SCORES
    with contextlib.suppress(OSError, ValueError):
        data = json.loads(rec.read_text(encoding="utf-8"))
        if data.get("fingerprint") == fp and data.get("model") == model_id and npz.exists():
            scores = Scores.load(npz)
            log.info("reusing stored scores in %s (model %s)", job_dir, model_id)
            return scores
    return None


@dataclass(frozen=True)
class ScoredJob:
    """A scored VOD: where it is, what it holds, its scores and its job folder."""

    vod: Path
    info: ProbeInfo
    scores: Scores
    job_dir: Path
    fingerprint: str


def score_job(vod: str | os.PathLike[str], cfg: Config, *, job_dir: str | os.PathLike[str] | None = None,
              progress: bool = True, runner: Runner | None = None) -> ScoredJob:
    """Probe, check and score ``vod`` into its job folder (reusing stored scores of the same
    content and model) with ``runner`` (default: the configured backend's)."""
    from autoclip import media
    from autoclip.scoring import load_current_model

    vod = Path(os.path.abspath(os.fspath(vod)))
    info = media.probe(vod, cfg.media)
    media.check_complete(vod, info, cfg.media)
    loaded = load_current_model(cfg)
    fp = fingerprint(vod)
    jdir = Path(job_dir) if job_dir is not None else cfg.path("jobs") / job_id_for(fp)
    jdir.mkdir(parents=True, exist_ok=True)
    own = runner is None
    runner = runner or get_runner(cfg)
    try:
        runner.check_access(vod)  # before any work: every machine doing it must read the VOD
        scores = _stored_scores(jdir, fp, loaded.id)
        if scores is None:
            scores = runner.score(vod, cfg, loaded, progress=progress, info=info)
            scores.save(jdir / SCORES)
            atomic_write_json(jdir / RECORD, {
                "vod": str(vod), "fingerprint": fp, "job": jdir.name, "model": loaded.id,
                "probe": info.to_dict(), "scored": time.time(), "scoring": scores.stats,
            })
    finally:
        if own:
            runner.close()
    return ScoredJob(vod, info, scores, jdir, fp)


def process_vod(vod: str | os.PathLike[str], cfg: Config, *, job_dir: str | os.PathLike[str] | None = None,
                progress: bool = True, conn: sqlite3.Connection | None = None) -> dict[str, Any]:
    """Score, select and render one VOD; queue its review items. Returns the `process --json` dict."""
    from autoclip.render import source_rate

    runner = get_runner(cfg)
    try:
        job = score_job(vod, cfg, job_dir=job_dir, progress=progress, runner=runner)
        info = job.info
        fps = source_rate(info.fps, info.vfr, info.nominal_fps)
        result = _select_and_render(job.vod, job.scores, cfg, job.job_dir, job.fingerprint, fps, info.height,
                                    info.has_audio, info.width, runner=runner)
    finally:
        runner.close()
    _enqueue_review(cfg, conn, result, job.scores, job.fingerprint)
    return result


def _select_and_render(vod: Path, scores: Scores, cfg: Config, jdir: Path, fp: str, fps: float, height: int,
                       has_audio: bool, width: int | None = None, *, runner: Runner) -> dict[str, Any]:
    from autoclip.render import reel_name, render_reel

    segments = select(scores.times, scores.scores, cfg.selection, duration=scores.duration,
                      loudness=scores.loudness)
    log.info("%s: %d segments selected (%.1f s)", vod.name, len(segments), sum(s.length for s in segments))
    rendered = render_reel(vod, segments, cfg, name=reel_name(vod, jdir.name), src_fps=fps, src_height=height,
                           has_audio=has_audio, src_width=width, vod_duration=scores.duration,
                           meta={"job": jdir.name, "model": scores.model_id, "fingerprint": fp},
                           clip_renderer=runner.render_clips)
    return _result(vod, segments, rendered, jdir, scores.model_id)


def _result(vod: Path, segments: list[Segment], rendered, jdir: Path, model_id: str) -> dict[str, Any]:
    return {
        "vod": str(vod),
        "reel": str(rendered.reel) if rendered.reel else None,
        "segments": [{"start": round(s.start, 3), "end": round(s.end, 3), "score": round(s.score, 4)}
                     for s in segments],
        "job": jdir.name,
        "job_dir": str(jdir),
        "model": model_id,
        "segments_file": str(rendered.segments_file),
        "edl": str(rendered.edl) if rendered.edl else None,
        "chapters": str(rendered.chapters) if rendered.chapters else None,
        "clips": [str(c) for c in rendered.clips],
        "exports": {k: str(v) for k, v in rendered.exports.items()},
        "shorts": [str(p) for p in rendered.shorts],
        "shorts_file": str(rendered.shorts_file) if rendered.shorts_file else None,
    }


def _enqueue_review(cfg: Config, conn: sqlite3.Connection | None, result: dict[str, Any], scores: Scores,
                    fp: str) -> None:
    from autoclip.review.queue import enqueue_after_process

    own = conn is None
    if own:
        from autoclip import store

        conn = store.connect(cfg.path("database"))
    try:
        enqueue_after_process(conn, cfg, vod=result["vod"], fingerprint=fp, job=result["job"], model=result["model"],
                times=scores.times, scores=scores.scores, segments=result["segments"])
    finally:
        if own:
            conn.close()


def _find_vod(record: dict[str, Any], cfg: Config) -> Path:
    """The job's VOD where it was, or in the done folder (the daemon moves processed VODs)."""
    original = Path(record["vod"])
    found = locate(original, record.get("fingerprint", ""), cfg.vod_folders())
    if found is not None:
        return found
    raise MediaError(f"the VOD of this job is gone ({original}); put it back there or in {cfg.path('done')} "
                     "to re-render", code="missing")


def render_job(job_dir: str | os.PathLike[str], cfg: Config) -> dict[str, Any]:
    """Re-select and re-render a processed job from its stored scores (e.g. after a config change)."""
    from autoclip.scoring import Scores

    jdir = resolve_job_dir(job_dir, cfg)
    record = json.loads((jdir / RECORD).read_text(encoding="utf-8"))
    scores = Scores.load(jdir / SCORES)
    vod = _find_vod(record, cfg)
    probe = record.get("probe") or {}
    from autoclip.render import source_rate

    fps = source_rate(float(probe.get("fps") or 30.0), bool(probe.get("vfr")), float(probe.get("nominal_fps") or 0.0))
    runner = get_runner(cfg)
    try:
        runner.check_access(vod)
        return _select_and_render(vod, scores, cfg, jdir, record["fingerprint"], fps,
                                  int(probe.get("height") or cfg.render.height or 720),
                                  bool(probe.get("has_audio", True)), int(probe.get("width") or 0) or None,
                                  runner=runner)
    finally:
        runner.close()
