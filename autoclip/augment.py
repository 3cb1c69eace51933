"""Training-time augmentation, vectorised over the batch with independent draws per sample.

Frames: colour jitter (brightness, contrast, saturation), a small random zoom-in crop with a
shift, and a small rotation (one affine resample). Spectrograms: SpecAugment-style time and
frequency masks and a small gain change.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

#: colour jitter strength (multipliers drawn from 1 +- this)
JITTER = 0.25
#: crop keeps between this and all of the frame's side
MIN_CROP = 0.85
#: largest rotation, degrees
ROTATE = 7.0
#: largest mask, as a fraction of the mel bands / time frames
MASK = 0.15
#: largest gain change of the log-mel (about +-2.5 dB with features' scaling)
GAIN = 0.1


def _uniform(n: int, lo: float, hi: float, g: torch.Generator) -> torch.Tensor:
    return torch.rand(n, generator=g) * (hi - lo) + lo


def frames(x: torch.Tensor, g: torch.Generator, groups: torch.Tensor | None = None) -> torch.Tensor:
    """(N,3,S,S) floats in [0,1] -> augmented copy. ``groups`` (N,) ids 0..G-1: one draw per
    group (the frames of one segment change together, so their differences stay the video's)."""
    n = x.shape[0]
    pick = torch.arange(n) if groups is None else groups
    k = n if groups is None else int(groups.max()) + 1

    def draw(lo: float, hi: float) -> torch.Tensor:
        return _uniform(k, lo, hi, g)[pick]

    view = (n, 1, 1, 1)
    b = draw(1 - JITTER, 1 + JITTER).view(view)
    c = draw(1 - JITTER, 1 + JITTER).view(view)
    s = draw(1 - JITTER, 1 + JITTER).view(view)
    x = x * b
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * c + mean
    gray = (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])
    x = ((x - gray) * s + gray).clamp_(0, 1)

    scale = draw(MIN_CROP, 1.0)
    angle = draw(-ROTATE, ROTATE) * math.pi / 180
    room = 1 - scale  # shift that keeps the crop inside the frame
    tx = draw(-1, 1) * room
    ty = draw(-1, 1) * room
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    return out.contiguous(memory_format=torch.channels_last)


def _mask(n: int, length: int, g: torch.Generator) -> torch.Tensor:
    """(n, length) bool: one random band per row, up to MASK of the length."""
    width = (torch.rand(n, generator=g) * MASK * length).long()
    start = (torch.rand(n, generator=g) * (length - width + 1).float()).long()
    pos = torch.arange(length).view(1, -1)
    return (pos >= start.view(-1, 1)) & (pos < (start + width).view(-1, 1))


def mels(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """(N,1,M,T) log-mels -> augmented copy (masks filled with each sample's mean)."""
    n, _, m, t = x.shape
    fill = x.mean(dim=(1, 2, 3), keepdim=True)
    fmask = _mask(n, m, g).view(n, 1, m, 1)
    tmask = _mask(n, t, g).view(n, 1, 1, t)
    x = torch.where(fmask | tmask, fill, x)
    return x + _uniform(n, -GAIN, GAIN, g).view(n, 1, 1, 1)
