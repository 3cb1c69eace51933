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
import sys
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

if TYPE_CHECKING:
    from autoclip.media import ProbeInfo
    from autoclip.registry import LoadedModel

log = logging.getLogger(__name__)

#: seconds between progress log lines when stderr is not a terminal
LOG_EVERY = 30.0
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


class _Progress:
    """A rich bar on a terminal (position, ETA, speed x real time); log lines otherwise."""

    def __init__(self, name: str, duration: float, enabled: bool) -> None:
        self.name, self.duration = name, max(duration, 1e-6)
        self.t0 = time.monotonic()
        self._last_log = self.t0
        self._bar: Any = None
        if enabled and sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

            self._bar = Progress(TextColumn("scoring {task.description}"), BarColumn(),
                                 TextColumn("{task.fields[pos]}"), TimeRemainingColumn(),
                                 TextColumn("{task.fields[speed]}"), transient=True,
                                 console=Console(stderr=True))
            self._bar.start()
            self._task = self._bar.add_task(name, total=self.duration, pos="", speed="")

    def update(self, position: float) -> None:
        from autoclip.render import hms

        elapsed = time.monotonic() - self.t0
        speed = position / elapsed if elapsed > 0 else 0.0
        if self._bar is not None:
            self._bar.update(self._task, completed=min(position, self.duration),
                             pos=f"{hms(position)}/{hms(self.duration)}", speed=f"{speed:.1f}x")
        elif time.monotonic() - self._last_log >= LOG_EVERY:
            self._last_log = time.monotonic()
            eta = (self.duration - position) / speed if speed > 0 else float("nan")
            log.info("scoring %s: %s/%s (%.0f%%), %.1fx real time, ETA %.0f s", self.name, hms(position),
                     hms(self.duration), 100 * position / self.duration, speed, eta)

    def close(self) -> float:
        if self._bar is not None:
            self._bar.stop()
        return time.monotonic() - self.t0


def score_vod(path: str | os.PathLike[str], cfg: Config, loaded: LoadedModel, *, progress: bool = True,
              info: ProbeInfo | None = None,
              on_batch: Callable[[float], None] | None = None) -> Scores:
    """Score every sampled frame of ``path`` with ``loaded`` (a registry model)."""
    from autoclip.features import SampleReader
    from autoclip.model import predict, set_threads

    set_threads(cfg.model.threads)
    reader = SampleReader(path, cfg, info=info)
    duration = reader.info.duration
    bar = _Progress(Path(path).name, duration, progress)
    times, scores = [], []
    model_s = 0.0
    try:
        for batch in prefetch(reader, PREFETCH):
            t0 = time.monotonic()
            probs = predict(loaded.net, batch.frames, batch.mels, batch=len(batch.times))
            model_s += time.monotonic() - t0
            times.append(batch.times)
            scores.append(probs)
            bar.update(float(batch.times[-1]))
            if on_batch is not None:
                on_batch(float(batch.times[-1]))
    finally:
        elapsed = bar.close()
    lt, ldb = reader.loudness_track
    result = Scores(
        times=np.concatenate(times) if times else np.zeros(0),
        scores=np.concatenate(scores).astype(np.float32) if scores else np.zeros(0, np.float32),
        loudness_times=np.asarray(lt, dtype=np.float64), loudness_db=np.asarray(ldb, dtype=np.float32),
        duration=duration, model_id=loaded.id,
    )
    result.seconds = {"total": elapsed, "model": model_s}
    log.info("scored %s: %d frames in %.1f s (%.1fx real time; model %.1f s) with model %s", Path(path).name,
             len(result.times), elapsed, duration / max(elapsed, 1e-6), model_s, loaded.id)
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
