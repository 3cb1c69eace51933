"""Model inputs from a VOD: sampled frames plus a log-mel window centred on each frame time.

``SampleReader`` pairs the frame stream with the audio stream batch by batch. For each batch one
mel spectrogram is computed over the batch's audio span and each frame's window is a slice of
it, so overlapping windows are not recomputed and memory stays bounded by the batch.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from autoclip import media
from autoclip.config import AudioConfig, Config

log = logging.getLogger(__name__)

#: dB offset/scale that map log-mels to roughly zero mean, unit spread (quiet room ~ -1, shouting ~ +1)
_DB_OFFSET, _DB_SCALE = -20.0, 20.0
_SILENT_DB = -100.0


def _n_fft(audio: AudioConfig) -> int:
    return int(round(0.025 * audio.sample_rate))  # 25 ms analysis window


def _hop(audio: AudioConfig) -> int:
    return max(1, int(round(audio.hop * audio.sample_rate)))


def mel_frames(audio: AudioConfig) -> int:
    """Spectrogram frames per window (T)."""
    win = int(round(audio.window * audio.sample_rate))
    return 1 + (win - _n_fft(audio)) // _hop(audio)


@lru_cache(maxsize=8)
def _mel_basis(sr: int, n_fft: int, n_mels: int, fmax: float) -> np.ndarray:
    """The (n_mels, 1 + n_fft // 2) Slaney-normalised mel filterbank from librosa.

    librosa is imported here, on the first spectrogram, not with this module: its filters module
    loads scipy (about a second of CPU), which only the processes that compute mels (job and
    training children) pay, never ``autoclip --help``, the daemon or the review UI.
    """
    import librosa

    return librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=0.0, fmax=fmax, dtype=np.float32)


@lru_cache(maxsize=8)
def _window(n_fft: int) -> np.ndarray:
    return np.hanning(n_fft + 2)[1:-1].astype(np.float32)


def _mel_columns(samples: np.ndarray, audio: AudioConfig) -> np.ndarray:
    """Log-mel columns (n_mels, K) of ``samples``; column j covers samples [j*hop, j*hop+n_fft).

    The filterbank product is an ``einsum``, not a BLAS call: a multi-threaded BLAS fights the
    ffmpeg decoders for the cores (30x slower on a busy 2-core machine) for no gain at this size.
    """
    n_fft, hop = _n_fft(audio), _hop(audio)
    samples = np.asarray(samples, dtype=np.float32)
    if len(samples) < n_fft:
        samples = np.pad(samples, (0, n_fft - len(samples)))
    frames = np.lib.stride_tricks.sliding_window_view(samples, n_fft)[::hop] * _window(n_fft)
    spec = np.fft.rfft(frames, axis=1)
    power = (spec.real * spec.real + spec.imag * spec.imag).astype(np.float32, copy=False)
    mel = np.einsum("mf,kf->mk", _mel_basis(audio.sample_rate, n_fft, audio.n_mels, audio.fmax), power)
    db = np.log10(np.maximum(mel, 1e-10)) * (10.0 / _DB_SCALE) - (_DB_OFFSET / _DB_SCALE)
    return db.astype(np.float32, copy=False)


def logmel(samples: np.ndarray, audio: AudioConfig) -> np.ndarray:
    """(n_mels, T) log-mel of one window of ``audio.window`` seconds."""
    win = int(round(audio.window * audio.sample_rate))
    samples = np.asarray(samples, dtype=np.float32)[:win]
    if len(samples) < win:
        samples = np.pad(samples, (0, win - len(samples)))
    return _mel_columns(samples, audio)[:, : mel_frames(audio)]


def silent_mels(n: int, audio: AudioConfig) -> np.ndarray:
    col = (10.0 * np.log10(1e-10) - _DB_OFFSET) / _DB_SCALE
    return np.full((n, audio.n_mels, mel_frames(audio)), col, dtype=np.float32)


def aligned_audio_start(t: float, hop: float = 0.05) -> float:
    """``t`` rounded down onto the loudness-track grid (``AudioStream``'s 20 Hz blocks), so the
    loudness of ranges read separately lines up with a whole-VOD read."""
    return max(0.0, math.floor(t / hop + 1e-9) * hop)


def rms_db(samples: np.ndarray) -> float:
    if len(samples) == 0:
        return _SILENT_DB
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))
    return max(_SILENT_DB, 20.0 * np.log10(max(rms, 1e-5)))


@dataclass
class SampleBatch:
    times: np.ndarray  # (N,) float64 seconds
    frames: np.ndarray  # (N, S, S, 3) uint8
    mels: np.ndarray  # (N, n_mels, T) float32
    loudness: np.ndarray  # (N,) float32 dBFS RMS over 0.1 s around each time
    has_audio: bool


class SampleReader:
    """Iterate a VOD (or a range of it) as ``SampleBatch``es for the model.

    After iteration, ``loudness_track`` holds (times, dBFS) at 20 Hz over the range read.
    """

    def __init__(self, path: str | os.PathLike[str], cfg: Config, *, start: float = 0.0,
                 end: float | None = None, info: media.ProbeInfo | None = None,
                 crop: tuple[int, int, int, int] | None | str = "auto",
                 batch: int | None = None, audio_from: float | None = None,
                 audio: media.AudioStream | None = None) -> None:
        self.path = path
        self.cfg = cfg
        self.start, self.end = start, end
        self.info = info or media.probe(path, cfg.media)
        if crop == "auto":  # the box this VOD uses (profile, fixed crop or its detected face cam)
            from autoclip.cropbox import crop_box_for

            crop = crop_box_for(path, cfg)[0]
        self.crop = crop
        self.batch = batch or cfg.frames.batch
        #: where the audio decode starts (None: the window margin before ``start``). 0 gives every
        #: sample exactly as a whole pass decodes it: an AAC decoder's noise substitution depends on
        #: where decoding began, so audio decoded from a seek point differs slightly in places.
        self.audio_from = audio_from
        #: an audio stream of this VOD already open and read forward by the caller (not closed
        #: here; no loudness track is kept): the cascade's stage 2 reads all its windows from one
        self.audio = audio
        self._track: tuple[np.ndarray, np.ndarray] = (np.zeros(0), np.zeros(0, dtype=np.float32))

    @property
    def loudness_track(self) -> tuple[np.ndarray, np.ndarray]:
        return self._track

    def __iter__(self) -> Iterator[SampleBatch]:
        a = self.cfg.audio
        margin = a.window / 2 + 0.05  # a window may start half a hop before its centre - window / 2
        stream = None
        if self.audio is not None:
            stream = self.audio
            _skip_audio(stream, int(round(aligned_audio_start(self.start - margin) * a.sample_rate)))
        elif self.info.has_audio:
            first = aligned_audio_start(self.start - margin)
            begin = first if self.audio_from is None else min(aligned_audio_start(self.audio_from), first)
            stream = media.AudioStream(self.path, a.sample_rate, begin,
                                       None if self.end is None else self.end + margin, self.cfg.media)
            _skip_audio(stream, int(round(first * a.sample_rate)))
        frames = media.iter_frames(self.path, fps=self.cfg.frames.fps, size=self.cfg.frames.size,
                                   crop=self.crop, batch=self.batch, start=self.start, end=self.end,
                                   info=self.info, media=self.cfg.media)
        try:
            for fb in frames:
                yield self._pair(fb, stream)
            if stream is not None and self.audio is None:
                stream.read_to_end()
                self._track = stream.loudness_track
        finally:
            frames.close()  # a consumer that stops early stops both ffmpeg processes at once
            if stream is not None and self.audio is None:
                stream.close()

    def _pair(self, fb: media.FrameBatch, stream: media.AudioStream | None) -> SampleBatch:
        a = self.cfg.audio
        n = len(fb.times)
        if stream is None:
            return SampleBatch(fb.times, fb.frames, silent_mels(n, a), np.full(n, _SILENT_DB, np.float32), False)
        mels, loud = batch_mels(fb.times, stream, a)
        return SampleBatch(fb.times, fb.frames, mels, loud, True)


def _skip_audio(stream: media.AudioStream, upto: int) -> None:
    """Read and drop the stream's samples before absolute index ``upto``, a few seconds at a time
    (memory stays bounded; the loudness track still covers them)."""
    step = 8 * stream.sr
    pos = stream.position
    while pos < upto:
        pos = min(upto, pos + step)
        stream.samples(pos, pos)


def batch_mels(times: np.ndarray, stream: media.AudioStream, audio: AudioConfig) -> tuple[np.ndarray, np.ndarray]:
    """Log-mel windows (N, n_mels, T) and loudness (N,) centred on ``times``.

    Spectrogram columns sit on an absolute grid (column c starts at sample c x hop of the file),
    so a frame's window is the same whether it is read in a full pass or a short clip, and one
    spectrogram over the batch's span serves all its overlapping windows.
    """
    sr, hop, n_fft, T = audio.sample_rate, _hop(audio), _n_fft(audio), mel_frames(audio)
    first = np.rint((times - audio.window / 2) * sr / hop).astype(np.int64)  # first column per frame
    c0, c1 = int(first.min()), int(first.max()) + T
    samples = stream.samples(c0 * hop, (c1 - 1) * hop + n_fft)
    cols = _mel_columns(samples, audio)
    idx = (first - c0)[:, None] + np.arange(T)[None, :]
    mels = np.ascontiguousarray(cols[:, idx].transpose(1, 0, 2))
    centre = np.rint(times * sr).astype(np.int64) - c0 * hop
    half = sr // 20
    loud = np.array([rms_db(samples[max(0, c - half): max(0, c + half)]) for c in centre], dtype=np.float32)
    return mels, loud
