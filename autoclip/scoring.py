"""Scoring a VOD: every sampled frame through the current model, streaming.

``score_vod`` pulls ``features.SampleReader`` batches (frames + log-mel windows) and runs each
batch through the model as it arrives, so memory is bounded by one batch whatever the VOD's
length. The result (``Scores``: per-frame probabilities plus the VOD's loudness track, used to
snap cuts into quiet moments) is saved with the job, so selection and rendering can be redone
after a config change without decoding the VOD again.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from autoclip.config import Config
from autoclip.errors import ModelError
from autoclip.fsutil import atomic_path
from autoclip.progress import Progress

if TYPE_CHECKING:
    from autoclip.media import ProbeInfo
    from autoclip.registry import LoadedModel

log = logging.getLogger(__name__)

#: decoded batches kept ready ahead of the model (memory: this many + 2 batches)
PREFETCH = 2
T = TypeVar("T")


@dataclass
class Scores:
    """Per-frame highlight probabilities of one VOD, with its loudness track."""

    times: np.ndarray  # (N,) float64 seconds
    scores: np.ndarray  # (N,) float32 probabilities
    loudness_times: np.ndarray  # (M,) float64, 20 Hz
    loudness_db: np.ndarray  # (M,) float32 dBFS
    duration: float
    model_id: str
    #: wall-clock breakdown of the scoring run (not saved)
    seconds: dict[str, float] = field(default_factory=dict, repr=False)
    #: how the scores were computed: mode, and for cascade the fraction stage 2 decoded (not in
    #: scores.npz; the job's process.json keeps it)
    stats: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def loudness(self) -> tuple[np.ndarray, np.ndarray] | None:
        return (self.loudness_times, self.loudness_db) if len(self.loudness_times) else None

    def save(self, path: str | os.PathLike[str]) -> Path:
        path = Path(path)
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez_compressed(
                f, times=self.times, scores=self.scores, loudness_times=self.loudness_times,
                loudness_db=self.loudness_db, duration=np.float64(self.duration), model_id=np.str_(self.model_id),
            )
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Scores:
        try:
            with np.load(path, allow_pickle=False) as z:
                return cls(z["times"], z["scores"], z["loudness_times"], z["loudness_db"],
                           float(z["duration"]), str(z["model_id"]))
        except (OSError, KeyError, ValueError) as err:
            raise ModelError(f"stored scores {path} are unreadable ({err}); process the VOD again") from None

    def to_json(self) -> dict[str, Any]:
        """The `score --json` shape (plus duration and model)."""
        return {"times": [round(float(t), 3) for t in self.times],
                "scores": [round(float(s), 4) for s in self.scores],
                "duration": round(self.duration, 3), "model": self.model_id}


def load_current_model(cfg: Config) -> LoadedModel:
    """The current model, or a one-line ModelError saying how to get one."""
    from autoclip.registry import Registry

    loaded = Registry(cfg.path("models")).load_current()
    if loaded is None:
        raise ModelError("no trained model yet: import labels (`autoclip label import FILE.csv`) "
                         "and run `autoclip train` first")
    return loaded


def _scoring_progress(name: str, duration: float, enabled: bool) -> tuple[Progress, Callable[[float], None]]:
    """The bar (position, ETA, speed x real time) and its ``update(position)``."""
    from autoclip.timefmt import hms

    duration = max(duration, 1e-6)
    bar = Progress("scoring {task.description}", total=duration, name=name, enabled=enabled, logger=log,
                   columns=("bar", "{task.fields[pos]}", "eta", "{task.fields[speed]}"), pos="", speed="")

    def update(position: float) -> None:
        elapsed = time.monotonic() - bar.t0
        speed = position / elapsed if elapsed > 0 else 0.0
        bar.update(completed=position, pos=f"{hms(position)}/{hms(duration)}", speed=f"{speed:.1f}x")
        eta = (duration - position) / speed if speed > 0 else float("nan")
        bar.note("scoring %s: %s/%s (%.0f%%), %.1fx real time, ETA %.0f s", name, hms(position), hms(duration),
                 100 * position / duration, speed, eta, every=True)

    return bar, update


def score_vod(path: str | os.PathLike[str], cfg: Config, loaded: LoadedModel, *, progress: bool = True,
              info: ProbeInfo | None = None,
              on_batch: Callable[[float], None] | None = None) -> Scores:
    """Score every sampled frame of ``path`` with ``loaded`` (a registry model), as
    ``[scoring] mode`` says (``score_range`` over the whole VOD)."""
    return score_range(path, cfg, loaded, progress=progress, info=info, on_batch=on_batch)


def score_range(path: str | os.PathLike[str], cfg: Config, loaded: LoadedModel, *, start: float = 0.0,
                end: float | None = None, mode: str | None = None, progress: bool = True,
                info: ProbeInfo | None = None, on_batch: Callable[[float], None] | None = None,
                audio_from: float | None = None) -> Scores:
    """Scores of the sampled frames of ``path`` in [start, end) (``end`` None: to the end).

    The frames are those of a whole-VOD run that fall in the range (the same frame grid: first
    frame of each 1/fps bin of presentation time), and so are their scores: audio windows come
    from an absolute sample grid, and in cascade mode the gate is read ``cascade.context(cfg)``
    seconds beyond the range on both sides, so the candidate windows inside it are the whole
    run's. Scores of contiguous ranges, concatenated, are a whole run's up to float rounding of
    the decoders after a seek. The loudness track of a range covers [start, end) only.
    ``mode``: "dense" or "cascade" (default ``cfg.scoring.mode``); cascade falls back to dense,
    with one log line, for a VOD without audio or a model without an audio gate.
    ``Scores.stats`` records the mode used, and for cascade the fraction of the range stage 2 decoded.
    ``audio_from`` (dense mode): where the audio decode starts (see ``SampleReader``); 0 makes a
    range's audio sample-identical to a whole run's (the cluster backend's chunks use it).
    """
    from autoclip import media

    info = info or media.probe(path, cfg.media)
    mode = _effective_mode(mode or cfg.scoring.mode, path, info, loaded)
    _to_device(loaded, cfg)
    if mode == "cascade":
        return _score_cascade(path, cfg, loaded, info, start, end, progress, on_batch)
    return _score_dense(path, cfg, loaded, info, start, end, progress, on_batch, audio_from)


def _effective_mode(mode: str, path: str | os.PathLike[str], info: ProbeInfo, loaded: LoadedModel) -> str:
    from autoclip import gate

    if mode != "cascade":
        return "dense"
    if not info.has_audio:
        log.info("%s has no audio: cascade scoring needs it, scoring every frame (dense) instead", Path(path).name)
        return "dense"
    if gate.threshold(loaded.meta) is None or not gate.has_gate(loaded.net):
        log.info("model %s has no audio gate (trained before the cascade, or without validation highlights): "
                 "scoring every frame (dense); retrain to get one", loaded.id)
        return "dense"
    return "cascade"


def resolve_device(choice: str) -> str:
    """``[model] device`` -> "cuda" or "cpu" ("auto": CUDA when torch sees a GPU)."""
    import torch

    if choice == "cpu":
        return "cpu"
    if torch.cuda.is_available():
        return "cuda"
    if choice == "cuda":
        raise ModelError("model.device = 'cuda' but torch sees no CUDA GPU; set it to 'auto' or 'cpu'")
    return "cpu"


def _to_device(loaded: LoadedModel, cfg: Config) -> None:
    from autoclip.model import set_threads

    set_threads(cfg.model.threads)
    device = resolve_device(cfg.model.device)
    if next(loaded.net.parameters()).device.type != device:
        loaded.net.to(device)


def _score_dense(path: str | os.PathLike[str], cfg: Config, loaded: LoadedModel, info: ProbeInfo, start: float,
                 end: float | None, progress: bool, on_batch: Callable[[float], None] | None,
                 audio_from: float | None = None) -> Scores:
    from autoclip.features import SampleReader
    from autoclip.temporal import StreamScorer, halo

    # a temporal model's score needs its neighbours: read them beyond the range (then drop them)
    pad = (halo(loaded.net) if loaded.net.dims.context else 0) / cfg.frames.fps
    lo, hi = max(0.0, start - pad), (None if end is None else end + pad)
    reader = SampleReader(path, cfg, start=lo, end=hi, info=info, audio_from=audio_from)
    duration = reader.info.duration
    bar, show = _scoring_progress(Path(path).name, duration, progress)
    times, scores = [], []
    model_s = 0.0
    stream = StreamScorer(loaded.net, batch=cfg.frames.batch)  # a frame's score may wait for its neighbours
    try:
        for batch in prefetch(reader, PREFETCH):
            t0 = time.monotonic()
            scores.append(stream.feed(batch.frames, batch.mels))
            model_s += time.monotonic() - t0
            times.append(batch.times)
            show(float(batch.times[-1]))
            if on_batch is not None:
                on_batch(float(batch.times[-1]))
        t0 = time.monotonic()
        scores.append(stream.flush())
        model_s += time.monotonic() - t0
    finally:
        elapsed = bar.close()
    lt, ldb = _trim_track(reader.loudness_track, start, end)
    all_t = np.concatenate(times) if times else np.zeros(0)
    all_s = np.concatenate(scores).astype(np.float32) if scores else np.zeros(0, np.float32)
    if pad:
        inside = (all_t >= start - 1e-6) & (all_t < (np.inf if end is None else end))
        all_t, all_s = all_t[inside], all_s[inside]
    result = Scores(
        times=all_t,
        scores=all_s,
        loudness_times=np.asarray(lt, dtype=np.float64), loudness_db=np.asarray(ldb, dtype=np.float32),
        duration=duration, model_id=loaded.id,
    )
    result.seconds = {"total": elapsed, "model": model_s}
    result.stats = {"mode": "dense", "frames": len(result.times), "stage2_fraction": 1.0}
    log.info("scored %s: %d frames in %.1f s (%.1fx real time; model %.1f s) with model %s", Path(path).name,
             len(result.times), elapsed, duration / max(elapsed, 1e-6), model_s, loaded.id)
    return result


def _trim_track(track: tuple[np.ndarray, np.ndarray], start: float, end: float | None) -> tuple[np.ndarray, np.ndarray]:
    lt, ldb = track
    if start <= 0 and end is None:
        return lt, ldb
    keep = (lt >= start) & (lt < (np.inf if end is None else end))
    return lt[keep], ldb[keep]


def _score_cascade(path: str | os.PathLike[str], cfg: Config, loaded: LoadedModel, info: ProbeInfo, start: float,
                   end: float | None, progress: bool, on_batch: Callable[[float], None] | None) -> Scores:
    from autoclip import gate
    from autoclip.cascade import score_cascade

    bar, show = _scoring_progress(Path(path).name, info.duration, progress)

    def step(position: float) -> None:
        show(position)
        if on_batch is not None:
            on_batch(position)

    try:
        res = score_cascade(path, cfg, loaded, info, start=start, end=end,
                            threshold=gate.threshold(loaded.meta) or 0.0, on_batch=step, prefetch_depth=PREFETCH)
    finally:
        elapsed = bar.close()
    lt, ldb = res.loudness
    result = Scores(times=res.times, scores=res.scores, loudness_times=np.asarray(lt, dtype=np.float64),
                    loudness_db=np.asarray(ldb, dtype=np.float32), duration=info.duration, model_id=loaded.id)
    result.seconds = {"total": elapsed, "model": float(res.stats["model_s"]), "stage1": float(res.stats["stage1_s"])}
    result.stats = res.stats
    log.info("scored %s (cascade): %d frames in %.1f s (%.1fx real time); stage 2 decoded %.1f%% of it in %d "
             "windows; model %s", Path(path).name, len(result.times), elapsed, info.duration / max(elapsed, 1e-6),
             100 * float(res.stats["stage2_fraction"]), int(res.stats["windows"]), loaded.id)
    return result


_END = object()


def prefetch(items: Iterable[T], depth: int) -> Iterator[T]:
    """Iterate ``items`` in a background thread, at most ``depth`` ahead, so decoding the next
    batch overlaps the model on this one. Errors are re-raised here; stopping early stops it."""
    q: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        it = iter(items)
        try:
            for item in it:
                if not put(item):
                    break
        except BaseException as err:  # handed to the consumer
            put(_Failure(err))
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()
            put(_END)

    thread = threading.Thread(target=work, name="score-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is _END:
                return
            if isinstance(item, _Failure):
                raise item.err
            yield item
    finally:
        stop.set()
        thread.join(timeout=30)


@dataclass
class _Failure:
    err: BaseException
