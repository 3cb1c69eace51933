"""Temporal context over per-frame embeddings, without running the ResNet more than once a frame.

A model with ``dims.context = k`` embeds every frame on its own (``HighlightNet.base``), then
looks at the embeddings of the k frames before and after it (``HighlightNet.temporal``). Frames
are grouped in *segments* (one labelled clip, one run of consecutive decoded frames, one VOD):
a frame's neighbours never come from another segment; at a segment's ends the edge frame is
repeated.

* ``neighbours`` turns segment ids into the index of each frame's neighbours.
* ``temporal_logits`` runs the temporal part over any number of frames in bounded chunks.
* ``StreamScorer`` does the same over a VOD arriving batch by batch (scoring): it holds back the
  last few frames of a batch until their right-hand neighbours arrive, so the result equals one
  pass over the whole VOD while memory stays bounded by the batch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from autoclip.model import HighlightNet

Parts = dict[str, torch.Tensor]
#: frames per chunk of the temporal part (bounds the motion branch's activations)
CHUNK = 512


def neighbours(seg: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """(N, len(offsets)) index of frame i + offset, clamped to i's segment (runs of equal ``seg``)."""
    n = int(seg.shape[0])
    pos = torch.arange(n, device=seg.device)
    if n == 0:
        return torch.zeros((0, len(offsets)), dtype=torch.long, device=seg.device)
    first = torch.ones(n, dtype=torch.bool, device=seg.device)
    first[1:] = seg[1:] != seg[:-1]
    start = torch.cummax(torch.where(first, pos, torch.zeros_like(pos)), 0).values
    last = torch.ones(n, dtype=torch.bool, device=seg.device)
    last[:-1] = first[1:]
    ends = torch.where(last, pos, torch.full_like(pos, n))
    end = torch.flip(torch.cummin(torch.flip(ends, [0]), 0).values, [0])
    idx = pos[:, None] + offsets[None, :]
    return torch.maximum(torch.minimum(idx, end[:, None]), start[:, None])


def halo(net: HighlightNet) -> int:
    """Frames on each side a frame's output depends on (the window, plus one for motion)."""
    return net.dims.context + int(net.dims.uses_frames and net.dims.motion)


def _slice(parts: Parts, a: int, b: int) -> Parts:
    return {k: v[a:b] for k, v in parts.items()}


def temporal_logits(net: HighlightNet, parts: Parts, seg: torch.Tensor) -> torch.Tensor:
    """Score logits (N,) from base parts, in chunks of ``CHUNK`` with a halo on each side."""
    n = int(seg.shape[0])
    k = halo(net)
    out = []
    for a in range(0, n, CHUNK):
        b = min(n, a + CHUNK)
        lo, hi = max(0, a - k), min(n, b + k)
        z = net.temporal(_slice(parts, lo, hi), seg[lo:hi])["score"]
        out.append(z[a - lo: a - lo + (b - a)])
    return torch.cat(out) if out else torch.zeros(0, device=seg.device)


class StreamScorer:
    """Probabilities for a VOD fed batch by batch; see the module docstring."""

    def __init__(self, net: HighlightNet, batch: int = 64) -> None:
        self.net, self.batch = net, batch
        self.k = halo(net) if net.dims.context > 0 else 0
        self.buf: Parts | None = None
        self.start = 0  # absolute index of the buffer's first frame
        self.emitted = 0  # absolute index of the next frame to emit

    def feed(self, frames: np.ndarray | None, mels: np.ndarray | None) -> np.ndarray:
        """Probabilities of the frames now complete (possibly fewer than given, in order)."""
        from autoclip.model import base_parts, predict

        if self.k == 0 and self.net.dims.context == 0:
            return predict(self.net, frames, mels, batch=self.batch)
        new = base_parts(self.net, frames, mels, batch=self.batch)
        self.buf = new if self.buf is None else {key: torch.cat([self.buf[key], new[key]]) for key in new}
        return self._emit(final=False)

    def flush(self) -> np.ndarray:
        """Probabilities of the frames still held back (the VOD's last few)."""
        if self.buf is None:
            return np.zeros(0, dtype=np.float32)
        return self._emit(final=True)

    def _emit(self, final: bool) -> np.ndarray:
        assert self.buf is not None
        n = next(iter(self.buf.values())).shape[0]
        end = self.start + n
        upto = end if final else end - self.k
        if upto <= self.emitted:
            return np.zeros(0, dtype=np.float32)
        with torch.inference_mode():
            z = temporal_logits(self.net, self.buf, torch.zeros(n, dtype=torch.long, device=self.net.mean.device))
        probs = torch.sigmoid(z[self.emitted - self.start: upto - self.start].double()).float().cpu().numpy()
        self.emitted = upto
        keep_from = max(self.start, self.emitted - self.k)
        self.buf = _slice(self.buf, keep_from - self.start, n)
        self.start = keep_from
        return probs
