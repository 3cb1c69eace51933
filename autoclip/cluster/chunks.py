"""One VOD as chunks: the plan, the worker's side of a chunk, and stitching (no Ray here).

A chunk is a time range [start, end) of the VOD. The worker decodes only that range's frames,
on the same grid a whole-VOD pass picks (the first frame of each 1/fps bin of presentation
time, see ``media.decode``), and the audio its windows need. Audio is decoded from the file's
start by default (``[cluster] audio_from_start``; audio only, a few hundred times real time):
an AAC decoder's noise substitution depends on where decoding began, so audio decoded from a
seek point differs in places from a whole pass and the scores would too. The stitched result
is then the whole-VOD ``Scores``: same times, scores equal up to float rounding (batches are
cut differently), same loudness track.

``score_range`` runs a chunk through the scoring range API (``scoring.score_range``): dense
scoring, or the cascade when ``[scoring] mode = "cascade"`` (whose gate reads its own context
beyond the range; its stage-2 windows seek, as in a whole run).
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from autoclip.config import Config

if TYPE_CHECKING:
    from autoclip.media import ProbeInfo
    from autoclip.scoring import Scores

log = logging.getLogger(__name__)

#: per worker process: model id -> LoadedModel, so a model crosses the object store once per version
_NETS: dict[str, Any] = {}


def plan_chunks(duration: float, chunk: float) -> list[tuple[float, float | None]]:
    """[start, end) ranges covering the VOD; the last one open-ended (end None: to the file's end).

    A tail shorter than a fifth of a chunk joins the chunk before it.
    """
    n = max(1, math.ceil(duration / chunk - 0.2))
    return [(i * chunk, (i + 1) * chunk if i < n - 1 else None) for i in range(n)]


@dataclass
class ChunkScores:
    """What a worker returns for one chunk: arrays only."""

    start: float
    end: float | None
    times: np.ndarray
    scores: np.ndarray
    loudness_times: np.ndarray
    loudness_db: np.ndarray
    seconds: dict[str, float] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)
    node: str = ""


def model_payload(loaded: Any) -> dict[str, Any]:
    """A registry model as plain arrays and its metadata (what goes into the object store)."""
    state = {k: v.detach().cpu().numpy() for k, v in loaded.net.state_dict().items()}
    return {"id": loaded.id, "dims": loaded.dims.to_dict(), "meta": loaded.meta, "state": state}


def cached_model(model_id: str, fetch: Any) -> Any:
    """The ``LoadedModel`` of ``model_id`` in this process, built from ``fetch()`` (a payload) on first use."""
    loaded = _NETS.get(model_id)
    if loaded is None:
        import torch

        from autoclip import gate
        from autoclip.model import ModelDims, build_model, prepare_for_inference
        from autoclip.registry import LoadedModel

        payload = fetch()
        dims = ModelDims.from_dict(payload["dims"])
        net = build_model(dims, "none")
        state = {k: torch.from_numpy(np.array(v)) for k, v in payload["state"].items()}
        gate.attach_for_load(net, state, payload["meta"])  # the cascade's audio gate, if the model has one
        net.load_state_dict(state)
        _NETS.clear()  # one model version at a time per worker
        _NETS[model_id] = loaded = LoadedModel(net=prepare_for_inference(net), dims=dims, meta=payload["meta"],
                                               id=model_id)
    return loaded


def score_range(path: str | os.PathLike[str], cfg: Config, loaded: Any, *, start: float, end: float | None,
                info: ProbeInfo, audio_from_start: bool = True) -> ChunkScores:
    """Scores of the sampled frames in [start, end) of ``path`` (the whole pass's grid), through
    the scoring range API (``[scoring] mode``, dense or cascade)."""
    from autoclip.scoring import score_range as score

    t0 = time.monotonic()
    got = score(path, cfg, loaded, start=start, end=end, info=info, progress=False,
                audio_from=0.0 if audio_from_start else None)
    return ChunkScores(
        start=start, end=end, times=got.times, scores=got.scores.astype(np.float32),
        loudness_times=np.asarray(got.loudness_times, dtype=np.float64),
        loudness_db=np.asarray(got.loudness_db, dtype=np.float32),
        seconds={"total": time.monotonic() - t0, "model": float(got.seconds.get("model", 0.0))},
        stats=dict(got.stats),
    )


def stitch(parts: list[ChunkScores], *, duration: float, model_id: str) -> Scores:
    """The whole VOD's Scores from its chunks (in any order)."""
    from autoclip.scoring import Scores

    parts = sorted(parts, key=lambda p: p.start)
    times = np.concatenate([p.times for p in parts]) if parts else np.zeros(0)
    if len(times) > 1 and np.any(np.diff(times) <= 0):
        raise ValueError("chunk frame times overlap or are out of order")  # a bug, not bad input
    return Scores(
        times=times,
        scores=np.concatenate([p.scores for p in parts]).astype(np.float32) if parts else np.zeros(0, np.float32),
        loudness_times=np.concatenate([p.loudness_times for p in parts]) if parts else np.zeros(0),
        loudness_db=np.concatenate([p.loudness_db for p in parts]).astype(np.float32) if parts else np.zeros(0, np.float32),
        duration=duration, model_id=model_id,
        stats=_stitched_stats(parts),
    )


def _stitched_stats(parts: list[ChunkScores]) -> dict[str, Any]:
    """The whole VOD's scoring stats from its chunks' (frame-weighted stage-2 fraction)."""
    frames = sum(len(p.times) for p in parts)
    modes = sorted({str(p.stats.get("mode", "dense")) for p in parts})
    frac = sum(float(p.stats.get("stage2_fraction", 1.0)) * len(p.times) for p in parts) / max(1, frames)
    return {"mode": "+".join(modes) or "dense", "frames": frames, "stage2_fraction": round(frac, 4),
            "chunks": len(parts)}


def can_read(path: str, size: int) -> str:
    """'' if this machine reads ``path`` as ``size`` bytes, else why not (runs on each node)."""
    try:
        st = os.stat(path)
        with open(path, "rb") as f:
            f.read(4096)
    except OSError as err:
        return err.strerror or type(err).__name__
    if st.st_size != size:
        return f"it is {st.st_size} bytes there, {size} here (not the same file)"
    return ""


def clip_bytes(vod: str, segment: Any, index: int, st: Any, gain: Any = None) -> bytes:
    """Encode one reel clip in a private temp folder and return the file's bytes (runs on a worker)."""
    import tempfile

    from autoclip.render import clip_command, clip_duration, overlay_text, run_ffmpeg
    from autoclip.timefmt import hms

    with tempfile.TemporaryDirectory(prefix="autoclip-clip-") as tmp:
        textfile = None
        if st.overlay:
            textfile = Path(tmp) / "overlay.txt"
            textfile.write_text(overlay_text(st.overlay, vod=vod, segment=segment, index=index), encoding="utf-8")
        out = Path(tmp) / "clip.mp4"
        run_ffmpeg(clip_command(vod, segment, out, st, textfile, gain), f"cutting clip {index} ({hms(segment.start)})",
                   timeout=120 + 30 * clip_duration(segment, st.fps_value))
        return out.read_bytes()
