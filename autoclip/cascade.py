"""The audio-first scoring cascade (``[scoring] mode = "cascade"``).

Stage 1 decodes only the audio of the range (no video decode at all), takes every sampled frame
time from the video packets' timestamps (``media.frame_grid``, exactly the times a decode gives),
computes the log-mel window of every other time and runs the model's audio gate (``autoclip.gate``)
on it; a time in between takes the larger of its neighbours' gate values.

Stage 2 decodes frames only inside the candidate windows: every time whose gate probability
reaches the model's stored threshold, widened by ``margin(cfg)`` on each side (so the selection's
smoothing sees full-model scores around anything the model may rate high) and merged across gaps
under ``MERGE_GAP`` (a seek there would decode the gap anyway). Each window's frames are read
with input seeking (``features.SampleReader`` on that range; the audio of all windows comes from
one stream read forward) and scored by the full model, as dense scoring does, in a copy whose
batch-norms are folded into their convolutions (``inference_copy``). Times outside every window
get ``OUTSIDE_CAP x low_threshold x gate / threshold``: far below the selection thresholds, in the
gate's order.

The two stages overlap: stage 1 runs in a thread of its own, STAGE1_BATCH times at a time, and
stage 2 decodes a window as soon as no later gate value can change it (``_windows_as_found``).
Stage 1 alone leaves one of two cores idle (one Python thread beside a cheap audio decoder), and
stage 2's decoder and model fill it; on the 10-min stream-like VOD the overlap took a quiet run
from ~13.0 to ~11.9 s (three paired runs), with the same scores bit for bit.

Whether a time is in a window depends only on gate values within ``context(cfg)`` seconds of
it, so a range scored with that much context on each side gets the windows, and so the scores,
of a whole-VOD run.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from autoclip.config import Config

if TYPE_CHECKING:
    from autoclip.features import SampleBatch
    from autoclip.media import ProbeInfo
    from autoclip.model import HighlightNet
    from autoclip.registry import LoadedModel

log = logging.getLogger(__name__)

#: evaluated frame times per stage-1 batch (bounds its memory: 64 log-mel windows, about 2 MB).
#: Stage 2 starts on the first windows stage 1 finds, so a small batch gets it going sooner:
#: 64 (32 s of a 4 fps VOD) against 256 took the 10-min stream-like VOD from ~11.9 to ~11.1 s
STAGE1_BATCH = 64
#: candidate windows closer than this many seconds are decoded as one
MERGE_GAP = 3.0
#: seconds added around candidates beyond the selection's smoothing half-width (they also hold
#: a temporal model's context, up to this many seconds of it)
EXTRA_MARGIN = 0.5
#: scores outside the windows stay below this fraction of selection.low_threshold: under the
#: selection thresholds and under nearly every score the full model gives inside a window (a
#: cap of 0.5 ranked gate-rejected moments above low-scored highlight frames: held-out frame AP
#: on the realistic benchmark fell 0.905 -> 0.865 on one VOD with every highlight inside a window)
OUTSIDE_CAP = 0.02
#: stage-1 results (groups of final windows) held ready for stage 2; stage 1 is the faster stage
#: and hands out at most one group per STAGE1_BATCH, so this bounds nothing that matters
STAGE1_AHEAD = 64


#: per trained model: its batch-norm-folded copy for the cascade (``inference_copy``)
_FOLDED: weakref.WeakKeyDictionary[HighlightNet, tuple[str, HighlightNet]] = weakref.WeakKeyDictionary()


def inference_copy(net: HighlightNet) -> HighlightNet:
    """A copy of ``net`` for the cascade with every batch-norm folded into the convolution before it
    (torch.fx's ``fuse``, in eval mode): measured here, the log-mel CNN runs 1.45x and the ResNet-18
    1.1x as fast on the CPU, with outputs equal to ~1e-5. The model itself stays as trained (its
    weights warm-start students), and so dense scoring gives exactly the scores it always gave."""
    import copy

    from torch import nn
    from torch.fx.experimental.optimization import fuse

    device = str(next(net.parameters()).device)
    known = _FOLDED.get(net)
    if known is not None and known[0] == device:
        return known[1]
    folded = copy.deepcopy(net).eval()
    for name in ("frames", "audio", "motion"):
        if isinstance(getattr(folded, name, None), nn.Module):
            setattr(folded, name, fuse(getattr(folded, name), inplace=True))
    _FOLDED[net] = (device, folded)
    return folded


def margin(cfg: Config) -> float:
    """Seconds decoded on each side of a candidate frame time."""
    return cfg.selection.smooth / 2 + EXTRA_MARGIN


def margin_frames(cfg: Config) -> int:
    """Sampled frames within ``margin(cfg)`` of a candidate time, on each side (the gate's
    threshold counts a validation frame as decoded when a passing one is this close)."""
    return int(math.floor(margin(cfg) * cfg.frames.fps + 1e-6))


def context(cfg: Config) -> float:
    """Seconds of gate context a range needs on each side to get a whole run's windows."""
    return margin(cfg) + MERGE_GAP + 2.0 / cfg.frames.fps  # one more frame: a strided gate's neighbour


@dataclass
class Stage1:
    """Frame times of the scored range with their gate probabilities and the loudness track."""

    times: np.ndarray
    gate: np.ndarray
    loudness: tuple[np.ndarray, np.ndarray]
    seconds: float = 0.0


@dataclass
class Windows:
    spans: list[tuple[float, float]] = field(default_factory=list)

    def contains(self, times: np.ndarray) -> np.ndarray:
        inside = np.zeros(len(times), dtype=bool)
        for a, b in self.spans:
            inside |= (times >= a) & (times < b)
        return inside

    @property
    def seconds(self) -> float:
        return float(sum(b - a for a, b in self.spans))


def stage1(path: str | os.PathLike[str], cfg: Config, loaded: LoadedModel, info: ProbeInfo, start: float,
           end: float | None) -> Stage1:
    """Audio only: the frame grid of [start, end) and each frame time's gate probability (run on
    every other frame time, ``gate.evaluated``; the times between take ``gate.spread``'s values)."""
    return deque(_stage1_steps(path, cfg, loaded, info, start, end), maxlen=1)[0]


def _stage1_steps(path: str | os.PathLike[str], cfg: Config, loaded: LoadedModel, info: ProbeInfo, start: float,
                  end: float | None) -> Iterator[Stage1]:
    """``stage1`` batch by batch, for stage 2 to start on the windows found so far: after each
    STAGE1_BATCH a Stage1 whose ``gate`` holds the final values of the first ``len(gate)`` times
    (a time between two evaluated ones waits for the later one); the last one has every value,
    the loudness track and the seconds taken."""
    from autoclip import gate, media
    from autoclip.features import aligned_audio_start, batch_mels

    t0 = time.monotonic()
    a = cfg.audio
    half = a.window / 2 + 0.05
    # the audio decoder starts first and runs while ffprobe lists the video packets
    stream = media.AudioStream(path, a.sample_rate, aligned_audio_start(start - half),
                               None if end is None else end + half, cfg.media)
    probs = []
    try:
        times = media.frame_grid(path, fps=cfg.frames.fps, start=start, end=end, info=info, media=cfg.media)
        keep = gate.evaluated(times, cfg.frames.fps)  # every other frame time; the rest take neighbours' values
        at = np.flatnonzero(keep)
        run = times[keep]
        for i in range(0, len(run), STAGE1_BATCH):
            mels, _ = batch_mels(run[i: i + STAGE1_BATCH], stream, a)
            probs.append(gate.probabilities(loaded.net, mels))
            if i + STAGE1_BATCH < len(run):  # final up to the last evaluated time so far
                known = int(at[i + STAGE1_BATCH - 1]) + 1
                yield Stage1(times, gate.spread(np.concatenate(probs), keep[:known]), _NO_TRACK)
        stream.read_to_end()
        track = stream.loudness_track
    finally:
        stream.close()
    g = gate.spread(np.concatenate(probs) if probs else np.zeros(0, dtype=np.float32), keep)
    yield Stage1(times, g, track, time.monotonic() - t0)


_NO_TRACK = (np.zeros(0), np.zeros(0, dtype=np.float32))


def candidate_windows(times: np.ndarray, gate: np.ndarray, threshold: float, cfg: Config,
                      start: float, end: float | None) -> Windows:
    """Spans [a, b) around every time whose gate reaches ``threshold``, merged, clipped to the range."""
    m = margin(cfg)
    spans: list[list[float]] = []
    for c in times[gate >= threshold]:
        a, b = float(c) - m, float(c) + m + 1e-6
        if spans and a - spans[-1][1] < MERGE_GAP:
            spans[-1][1] = max(spans[-1][1], b)
        else:
            spans.append([a, b])
    hi = math.inf if end is None else end
    out = [(max(a, start), min(b, hi)) for a, b in spans if b > start and a < hi]
    return Windows([(a, b) for a, b in out if b > a])


def outside_scores(gate: np.ndarray, threshold: float, cfg: Config) -> np.ndarray:
    """Scores for times outside every window: below the selection thresholds, in the gate's order."""
    cap = OUTSIDE_CAP * min(cfg.selection.low_threshold, cfg.selection.threshold)
    return (cap * np.clip(gate / max(threshold, 1e-9), 0.0, 1.0)).astype(np.float32)


def _windows_as_found(steps: Iterator[Stage1], threshold: float, cfg: Config, start: float,
                      end: float | None) -> Iterator[tuple[list[tuple[float, float]], Stage1 | None]]:
    """Stage 1's windows as soon as they are final, for stage 2 to decode while stage 1 goes on:
    (windows, None) after a stage-1 batch, then ([], the whole Stage1).

    A window ending ``margin + MERGE_GAP`` seconds before the first time whose gate is still
    unknown is final: a window around a later candidate starts ``margin`` before that time at the
    earliest, so it can no longer merge with it. ``candidate_windows`` merges from left to right,
    so the windows before it are those of the whole range, and the groups handed out here,
    concatenated, are ``candidate_windows`` of the whole stage 1 (``_reads`` widens them)."""
    reach = margin(cfg) + MERGE_GAP + 1e-3
    handed = 0
    s1 = None
    for s1 in steps:
        n = len(s1.gate)
        found = candidate_windows(s1.times[:n], s1.gate, threshold, cfg, start, end).spans
        if n < len(s1.times):
            cut = float(s1.times[n]) - reach
            found = [w for w in found if w[1] <= cut]
        if len(found) > handed:
            yield found[handed:], None
            handed = len(found)
    assert s1 is not None
    yield [], s1


def _window_batches(path: str | os.PathLike[str], cfg: Config, info: ProbeInfo, spans: Iterable[tuple[float, float]],
                    batch: int, audio_from: float, audio_to: float | None) -> Iterator[SampleBatch]:
    """The samples of every span (in time order, as they come): frames from one input-seeking
    decode per span, audio from one stream read forward through all of them from the first span
    (or ``audio_from``, if later) up to ``audio_to`` (None: the end), without an audio decoder
    started and seeked per span. The stream's samples do not depend on where it stops, so they
    are the same whether the spans are known in advance or not."""
    from autoclip import media
    from autoclip.features import SampleReader, aligned_audio_start

    # ffmpeg's input -t may stop a frame early (seen on ranges from 0): read one frame interval
    # more and keep the span's own frames
    extra = 1.0 / cfg.frames.fps
    half = cfg.audio.window / 2 + 0.05
    audio: media.AudioStream | None = None
    try:
        for a, b in spans:
            if audio is None and info.has_audio:
                audio = media.AudioStream(path, cfg.audio.sample_rate, aligned_audio_start(max(audio_from, a) - half),
                                          None if audio_to is None else audio_to + extra + half, cfg.media)
            for fb in SampleReader(path, cfg, start=a, end=b + extra, info=info, batch=batch, audio=audio):
                keep = fb.times < b
                if keep.all():
                    yield fb
                elif keep.any():
                    yield dataclasses.replace(fb, times=fb.times[keep], frames=fb.frames[keep], mels=fb.mels[keep],
                                              loudness=fb.loudness[keep])
    finally:
        if audio is not None:
            audio.close()


def _reads(groups: Iterable[list[tuple[float, float]]], pad: float, duration: float) -> Iterator[tuple[float, float]]:
    """``_padded`` of windows that arrive in groups (``_windows_as_found``), handed out as soon as
    the next window cannot reach them: at once when ``2 x pad < MERGE_GAP`` (windows lie at least
    MERGE_GAP apart, so widened ones never meet: the default), else once the next one is known."""
    held: tuple[float, float] | None = None
    for new in groups:
        for a, b in _padded(Windows(new), pad, duration).spans:
            if held is not None and a <= held[1]:
                held = (held[0], max(held[1], b))
                continue
            if held is not None:
                yield held
            held = (a, b)
        if held is not None and 2 * pad < MERGE_GAP:
            yield held
            held = None
    if held is not None:
        yield held


def _padded(windows: Windows, pad: float, duration: float) -> Windows:
    """``windows`` widened by ``pad`` seconds on each side (merged where they meet)."""
    if pad <= 0:
        return windows
    spans: list[list[float]] = []
    for a, b in windows.spans:
        a, b = max(0.0, a - pad), min(duration + pad, b + pad)
        if spans and a <= spans[-1][1]:
            spans[-1][1] = max(spans[-1][1], b)
        else:
            spans.append([a, b])
    return Windows([(a, b) for a, b in spans])


@dataclass
class Result:
    times: np.ndarray
    scores: np.ndarray
    loudness: tuple[np.ndarray, np.ndarray]
    stats: dict[str, float | int | str]


def score_cascade(path: str | os.PathLike[str], cfg: Config, loaded: LoadedModel, info: ProbeInfo, *,
                  start: float = 0.0, end: float | None = None, threshold: float,
                  on_batch: Callable[[float], None] | None = None,
                  prefetch_depth: int = 2, overlap: bool = True) -> Result:
    """Both stages over [start, end) (``end`` None: to the end of the VOD).

    With ``overlap`` stage 1 runs in a thread of its own and stage 2 decodes each window as soon
    as stage 1 has passed it by its reach (``_windows_as_found``), so stage 1's audio decode, log-mels
    and gate use the core that stage 2's decoder and model leave free; without it stage 1 ends
    before stage 2 starts. The windows, and so the scores, are the same either way."""
    from autoclip.scoring import prefetch
    from autoclip.temporal import StreamScorer, halo

    loaded = dataclasses.replace(loaded, net=inference_copy(loaded.net))
    ctx = context(cfg)
    lo, hi = max(0.0, start - ctx), None if end is None else end + ctx
    # one stream per window, read with whatever a temporal model's neighbours need beyond the
    # EXTRA_MARGIN that already lies between a candidate and the window's edge (then dropped):
    # the frames within reach of a candidate's smoothing get their whole context; only the last
    # context frames at a window's edge see an edge (0 extra seconds for 2 frames at 4 fps)
    pad = max(0.0, (halo(loaded.net) if loaded.net.dims.context else 0) / cfg.frames.fps - EXTRA_MARGIN)
    found = _windows_as_found(_stage1_steps(path, cfg, loaded, info, lo, hi), threshold, cfg, start, end)
    spans: list[tuple[float, float]] = []
    done: list[Stage1] = []

    def groups() -> Iterator[list[tuple[float, float]]]:
        """Stage 1's windows as it finds them (``spans`` and ``done`` fill in on the way)."""
        source = prefetch(found, STAGE1_AHEAD) if overlap else iter(list(found))
        try:
            for new, s1 in source:
                if s1 is not None:
                    done.append(s1)
                spans.extend(new)
                yield new
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()  # stage 2 stopped early: stop stage 1 too

    t1 = time.monotonic()
    got_t, got_s, model_s = [], [], 0.0
    stream, last = StreamScorer(loaded.net, batch=cfg.frames.batch), -math.inf
    for fb in prefetch(_window_batches(path, cfg, info, _reads(groups(), pad, info.duration), cfg.frames.batch, lo, hi), prefetch_depth):
        t = time.monotonic()
        if fb.times[0] - last > 1.5 / cfg.frames.fps:
            got_s.append(stream.flush())
            stream = StreamScorer(loaded.net, batch=cfg.frames.batch)
        got_s.append(stream.feed(fb.frames, fb.mels))
        last = float(fb.times[-1])
        model_s += time.monotonic() - t
        got_t.append(fb.times)
        if on_batch is not None:
            on_batch(float(fb.times[-1]))
    got_s.append(stream.flush())
    stage2_s = time.monotonic() - t1
    s1 = done[0]
    windows = Windows(spans)
    if pad > 0 and got_t:
        dec_t, dec_s = np.concatenate(got_t), np.concatenate(got_s)
        own = windows.contains(dec_t)
        got_t, got_s = [dec_t[own]], [dec_s[own]]
    keep = (s1.times >= start - 1e-6) & (s1.times < (math.inf if end is None else end))
    times, g = s1.times[keep], s1.gate[keep]
    outside = ~windows.contains(times)
    all_t = np.concatenate([times[outside], *got_t])
    all_s = np.concatenate([outside_scores(g[outside], threshold, cfg), *got_s]).astype(np.float32)
    order = np.argsort(all_t, kind="stable")
    span = (info.duration if end is None else min(end, info.duration)) - start
    decoded = int(sum(len(t) for t in got_t))
    stats = {
        "mode": "cascade", "gate_threshold": round(threshold, 6), "windows": len(windows.spans),
        "stage2_seconds": round(windows.seconds, 3),
        "stage2_fraction": round(windows.seconds / span, 4) if span > 0 else 0.0,
        "frames": int(len(all_t)), "stage2_frames": decoded,
        # with ``overlap`` stage 2's wall time includes stage 1's, which ran beside it
        "stage1_s": round(s1.seconds, 3), "stage2_s": round(stage2_s, 3), "model_s": round(model_s, 3),
    }
    if decoded != int(np.sum(~outside)):
        log.warning("%s: stage 2 decoded %d frames where the packet grid has %d; scores keep the decoded times",
                    Path(path).name, decoded, int(np.sum(~outside)))
    lt, ldb = s1.loudness
    if start > 0 or end is not None:
        lk = (lt >= start) & (lt < (math.inf if end is None else end))
        lt, ldb = lt[lk], ldb[lk]
    return Result(all_t[order], all_s[order], (lt, ldb), stats)
