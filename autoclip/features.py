"""Model inputs from a VOD: sampled frames plus a log-mel window centred on each frame time.

``SampleReader`` pairs the frame stream with the audio stream batch by batch. For each batch one
mel spectrogram is computed over the batch's audio span and each frame's window is a slice of
it, so overlapping windows are not recomputed and memory stays bounded by the batch.
"""

from __future__ import annotations

import logging
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
    import librosa

    return librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=0.0, fmax=fmax).astype(np.float32)


def _mel_columns(samples: np.ndarray, audio: AudioConfig) -> np.ndarray:
    """Log-mel columns (n_mels, K) of ``samples``; column j covers samples [j*hop, j*hop+n_fft)."""
    n_fft, hop = _n_fft(audio), _hop(audio)
    if len(samples) < n_fft:
        samples = np.pad(samples, (0, n_fft - len(samples)))
    k = 1 + (len(samples) - n_fft) // hop
    idx = np.arange(n_fft)[None, :] + hop * np.arange(k)[:, None]
    frames = samples[idx] * np.hanning(n_fft + 2)[1:-1].astype(np.float32)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    mel = _mel_basis(audio.sample_rate, n_fft, audio.n_mels, audio.fmax) @ power.T.astype(np.float32)
    db = 10.0 * np.log10(np.maximum(mel, 1e-10))
    return ((db - _DB_OFFSET) / _DB_SCALE).astype(np.float32)


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
                 batch: int | None = None) -> None:
        self.path = path
        self.cfg = cfg
        self.start, self.end = start, end
        self.info = info or media.probe(path, cfg.media)
        self.crop = cfg.frames.crop_for(path) if crop == "auto" else crop
        self.batch = batch or cfg.frames.batch
        self._track: tuple[np.ndarray, np.ndarray] = (np.zeros(0), np.zeros(0, dtype=np.float32))

    @property
    def loudness_track(self) -> tuple[np.ndarray, np.ndarray]:
        return self._track

    def __iter__(self) -> Iterator[SampleBatch]:
        a = self.cfg.audio
        half = a.window / 2
        stream = None
        if self.info.has_audio:
            stream = media.AudioStream(self.path, a.sample_rate, max(0.0, self.start - half),
                                       None if self.end is None else self.end + half, self.cfg.media)
        try:
            for fb in media.iter_frames(self.path, fps=self.cfg.frames.fps, size=self.cfg.frames.size,
                                        crop=self.crop, batch=self.batch, start=self.start, end=self.end,
                                        info=self.info, media=self.cfg.media):
                yield self._pair(fb, stream)
            if stream is not None:
                stream.read_to_end()
                self._track = stream.loudness_track
        finally:
            if stream is not None:
                stream.close()

    def _pair(self, fb: media.FrameBatch, stream: media.AudioStream | None) -> SampleBatch:
        a = self.cfg.audio
        n = len(fb.times)
        if stream is None:
            return SampleBatch(fb.times, fb.frames, silent_mels(n, a), np.full(n, _SILENT_DB, np.float32), False)
        half, sr, hop, T = a.window / 2, a.sample_rate, _hop(a), mel_frames(a)
        span_t0 = float(fb.times[0]) - half
        samples = stream.window(span_t0, float(fb.times[-1]) + half + 0.05)
        cols = _mel_columns(samples, a)
        mels = np.empty((n, a.n_mels, T), dtype=np.float32)
        loud = np.empty(n, dtype=np.float32)
        for i, t in enumerate(fb.times):
            j = int(round((t - half - span_t0) * sr / hop))
            block = cols[:, j: j + T]
            if block.shape[1] < T:
                block = np.pad(block, ((0, 0), (0, T - block.shape[1])), mode="edge")
            mels[i] = block
            c = int(round((t - span_t0) * sr))
            loud[i] = rms_db(samples[max(0, c - sr // 20): c + sr // 20])
        return SampleBatch(fb.times, fb.frames, mels, loud, True)
