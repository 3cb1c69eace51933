"""The highlight classifier: a ResNet-18 on the frame, a small CNN on the log-mel window, fused late.

With ``dims.context = k > 0`` (``model.context``; 2 by default) each frame is embedded once, and a
temporal layer per branch looks at the k embeddings before and after it (about a second at 4
fps); a small *motion* CNN on frame differences of a grey thumbnail sees shakes, zooms and
flashes that no single frame shows. Each branch also has its own auxiliary head, used only in
training (with modality dropout) so that neither branch can carry the fused head alone.
``context = 0`` is the earlier single-frame network (old checkpoints load as they were).

``ModelDims`` carries everything needed to rebuild the network, and is saved beside the weights
so a checkpoint loads without the config that trained it.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from autoclip.errors import ModelError

if TYPE_CHECKING:
    from autoclip.config import Config

log = logging.getLogger(__name__)

KINDS = ("fused", "frames", "audio")
COMBINE = ("fused", "agree")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: width of each branch's embedding before the fusion head
EMBED = 128
#: width of each branch after its temporal layer
TEMPORAL = 64
#: side of the grey thumbnail the motion branch compares between neighbouring frames
THUMB = 32
#: seconds to wait for the ImageNet download before falling back to random weights
DOWNLOAD_TIMEOUT = 20.0


@dataclass(frozen=True)
class ModelDims:
    """What the network looks like; stored with the weights so ``load`` can rebuild it."""

    kind: str = "fused"
    size: int = 128
    n_mels: int = 64
    mel_frames: int = 101
    dropout: float = 0.3
    #: neighbouring frames on each side seen by the temporal layer (0: single-frame network)
    context: int = 0
    #: with context > 0: the frame-difference (motion) branch beside the ResNet
    motion: bool = False
    #: what a fused temporal model scores: "fused" (its fused head) or "agree" (the geometric mean
    #: of the fused head's and both branch heads' probabilities: either branch can veto)
    combine: str = "fused"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ModelError(f"unknown model kind {self.kind!r}: use one of {', '.join(KINDS)}")
        if self.combine not in COMBINE:
            raise ModelError(f"unknown score combination {self.combine!r}: use one of {', '.join(COMBINE)}")
        if self.combine == "agree" and (self.kind != "fused" or self.context == 0):
            raise ModelError("combine = 'agree' needs a fused model with temporal context (its branch heads)")

    @property
    def uses_frames(self) -> bool:
        return self.kind in ("fused", "frames")

    @property
    def uses_audio(self) -> bool:
        return self.kind in ("fused", "audio")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelDims:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    @classmethod
    def from_config(cls, cfg: Config, kind: str | None = None) -> ModelDims:
        from autoclip import features

        return cls(
            kind=kind or cfg.model.kind,
            size=cfg.frames.size,
            n_mels=cfg.audio.n_mels,
            mel_frames=features.mel_frames(cfg.audio),
            dropout=cfg.model.dropout,
            context=cfg.model.context,
            motion=cfg.model.motion and cfg.model.context > 0,
            # the branch heads exist (context) and learn (auxiliary losses) only in fused temporal models
            combine=cfg.model.combine if (kind or cfg.model.kind) == "fused" and cfg.model.context > 0
            and cfg.train.aux_weight > 0 else "fused",
        )


class AudioNet(nn.Module):
    """Four conv blocks over the (1, n_mels, T) log-mel window; mean+max pooled to a vector."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        chans = [1, width // 2, width, width * 2, width * 4]
        layers: list[nn.Module] = []
        for i in range(4):
            layers += [
                nn.Conv2d(chans[i], chans[i + 1], 3, padding=1, bias=False),
                nn.BatchNorm2d(chans[i + 1]),
                nn.ReLU(inplace=True),
            ]
            if i < 3:
                layers.append(nn.MaxPool2d(2))
        self.body = nn.Sequential(*layers)
        self.out_features = chans[-1] * 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.body(x)
        return torch.cat([h.mean(dim=(2, 3)), h.amax(dim=(2, 3))], dim=1)


class MotionNet(nn.Module):
    """Three conv blocks over [thumbnail, change since the previous frame, change until the next]."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        chans = [3, width, width * 2, width * 4]
        layers: list[nn.Module] = []
        for i in range(3):
            layers += [nn.Conv2d(chans[i], chans[i + 1], 3, padding=1, bias=False), nn.BatchNorm2d(chans[i + 1]),
                       nn.ReLU(inplace=True), nn.MaxPool2d(2)]
        self.body = nn.Sequential(*layers)
        self.out_features = chans[-1] * 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.body(x)
        return torch.cat([h.mean(dim=(2, 3)), h.amax(dim=(2, 3))], dim=1)


def agreement(*logits: torch.Tensor) -> torch.Tensor:
    """The logit of the geometric mean of the probabilities ``sigmoid(logits)``: high only when
    every head is, so one branch that sees nothing (a calm face, a calm voice) pulls it down."""
    g = torch.stack([F.logsigmoid(z) for z in logits]).mean(dim=0).clamp(max=-1e-12)  # log p
    return g - torch.log(-torch.expm1(g))  # log p - log(1 - p)


def thumbnails(frames: torch.Tensor) -> torch.Tensor:
    """(N,3,S,S) in [0,1] -> (N,1,THUMB,THUMB) grey, scaled so a full black-white change is ~4."""
    grey = (0.299 * frames[:, 0:1] + 0.587 * frames[:, 1:2] + 0.114 * frames[:, 2:3]).contiguous()
    return nn.functional.adaptive_avg_pool2d(grey, THUMB) * 4.0


def _resnet18() -> nn.Module:
    from torchvision.models import resnet18

    net = resnet18(weights=None)
    net.fc = nn.Identity()
    return net


class HighlightNet(nn.Module):
    """Frame branch (ResNet-18) and/or audio branch (small CNN) -> one highlight logit."""

    def __init__(self, dims: ModelDims) -> None:
        super().__init__()
        self.dims = dims
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        width = 0
        window = 2 * dims.context + 1
        if dims.uses_frames:
            self.frames = _resnet18()
            self.frames_proj = nn.Sequential(nn.Linear(512, EMBED), nn.ReLU(inplace=True))
            width += EMBED
            if dims.context > 0:
                vis = EMBED
                if dims.motion:
                    self.motion = MotionNet()
                    vis += self.motion.out_features
                self.tv = nn.Sequential(nn.Linear(window * vis, TEMPORAL), nn.ReLU(inplace=True))
                self.aux_v = nn.Linear(TEMPORAL, 1)
        if dims.uses_audio:
            self.audio = AudioNet()
            self.audio_proj = nn.Sequential(nn.Linear(self.audio.out_features, EMBED), nn.ReLU(inplace=True))
            width += EMBED
            if dims.context > 0:
                self.ta = nn.Sequential(nn.Linear(window * EMBED, TEMPORAL), nn.ReLU(inplace=True))
                self.aux_a = nn.Linear(TEMPORAL, 1)
        if dims.context > 0:
            width = TEMPORAL * (int(dims.uses_frames) + int(dims.uses_audio))
            self.register_buffer("offsets", torch.arange(-dims.context, dims.context + 1), persistent=False)
        self.head = nn.Sequential(
            nn.Dropout(dims.dropout),
            nn.Linear(width, 64),
            nn.ReLU(inplace=True),
            nn.Dropout(dims.dropout / 2),
            nn.Linear(64, 1),
        )

    def base(self, frames: torch.Tensor | None, mels: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """Per-frame embeddings (each frame on its own): "v" (ResNet), "thumb", "a" (audio)."""
        parts: dict[str, torch.Tensor] = {}
        if self.dims.uses_frames:
            if frames is None:
                raise ModelError(f"a {self.dims.kind} model needs frames")
            parts["v"] = self.frames_proj(self.frames((frames - self.mean) / self.std))
            if self.dims.context > 0 and self.dims.motion:
                parts["thumb"] = thumbnails(frames)
        if self.dims.uses_audio:
            if mels is None:
                raise ModelError(f"a {self.dims.kind} model needs spectrograms")
            parts["a"] = self.audio_proj(self.audio(mels))
        return parts

    def temporal(self, parts: dict[str, torch.Tensor], seg: torch.Tensor,
                 drop_v: torch.Tensor | None = None, drop_a: torch.Tensor | None = None,
                 detach: bool = False) -> dict[str, torch.Tensor]:
        """Logits from base parts with each frame's neighbours in its segment: "fused", the
        branches' auxiliary "v" / "a", and "score", what the model scores (``dims.combine``).
        ``drop_v`` / ``drop_a`` (N,) bool hide a branch from the fused head for those frames
        (modality dropout, training only). ``detach`` (training): the fused head reads the
        branches' features without its loss reaching them, so only the branch heads shape them."""
        from autoclip.temporal import neighbours

        idx = neighbours(seg, self.offsets)
        n = idx.shape[0]
        out: dict[str, torch.Tensor] = {}
        fused = []

        def to_fused(x: torch.Tensor, drop: torch.Tensor | None) -> torch.Tensor:
            x = x.detach() if detach else x
            return x if drop is None else x * (~drop).to(x.dtype)[:, None]

        if self.dims.uses_frames:
            vis = parts["v"]
            if self.dims.motion:
                th = parts["thumb"]
                prev, nxt = th[idx[:, self.dims.context - 1]], th[idx[:, self.dims.context + 1]]
                vis = torch.cat([vis, self.motion(torch.cat([th, th - prev, nxt - th], dim=1))], dim=1)
            tv = self.tv(vis[idx].reshape(n, -1))
            out["v"] = self.aux_v(tv).squeeze(1)
            fused.append(to_fused(tv, drop_v))
        if self.dims.uses_audio:
            ta = self.ta(parts["a"][idx].reshape(n, -1))
            out["a"] = self.aux_a(ta).squeeze(1)
            fused.append(to_fused(ta, drop_a))
        out["fused"] = self.head(torch.cat(fused, dim=1)).squeeze(1)
        out["score"] = agreement(out["fused"], out["v"], out["a"]) if self.dims.combine == "agree" else out["fused"]
        return out

    def forward(self, frames: torch.Tensor | None, mels: torch.Tensor | None,
                seg: torch.Tensor | None = None) -> torch.Tensor:
        """frames: (N,3,S,S) floats in [0,1]; mels: (N,1,n_mels,T); seg: (N,) segment ids of
        time-ordered frames (None: one segment). Returns (N,) logits."""
        parts = self.base(frames, mels)
        if self.dims.context > 0:
            n = next(iter(parts.values())).shape[0]
            return self.temporal(parts, torch.zeros(n, dtype=torch.long) if seg is None else seg)["score"]
        flat = [parts[k] for k in ("v", "a") if k in parts]
        return self.head(torch.cat(flat, dim=1)).squeeze(1)

    def backbone_parameters(self) -> list[nn.Parameter]:
        """Parameters of the (possibly pretrained) frame backbone."""
        return list(self.frames.parameters()) if self.dims.uses_frames else []

    def head_parameters(self) -> list[nn.Parameter]:
        ids = {id(p) for p in self.backbone_parameters()}
        return [p for p in self.parameters() if id(p) not in ids]

    def set_backbone_trainable(self, trainable: bool) -> None:
        for p in self.backbone_parameters():
            p.requires_grad_(trainable)

    def per_frame_parameters(self) -> list[nn.Parameter]:
        """Parameters of the parts that see one frame at a time (``base``: the ResNet, the audio
        CNN and their projections), not the temporal layers, the motion branch or the heads."""
        names = ("frames", "frames_proj", "audio", "audio_proj")
        return [p for name in names if hasattr(self, name) for p in getattr(self, name).parameters()]


# ---------------------------------------------------------------------------------------------
# Building and initialising
# ---------------------------------------------------------------------------------------------


def set_threads(n: int) -> None:
    """Torch CPU threads for this process (``cfg.model.threads``)."""
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)


def build_model(dims: ModelDims, pretrained: str = "none", *, download: bool = True) -> HighlightNet:
    """A new network. ``pretrained``: 'imagenet', 'none', or a path to a state dict.

    ImageNet weights come from torchvision's cache (or a download when ``download``); when they
    cannot be had, one warning is logged and the frame branch starts from random weights.
    """
    net = HighlightNet(dims)
    choice = (pretrained or "none").strip()
    if choice.lower() == "none":
        return net
    if choice.lower() == "imagenet":
        if dims.uses_frames:
            state = _imagenet_state(download)
            if state is not None:
                _load_backbone(net, state, "ImageNet")
        return net
    if choice.lower() == "self":  # needs the deployment: training resolves it (autoclip.pretrain)
        raise ModelError("model.pretrained = 'self' is applied by `autoclip train`, which pretrains first when needed")
    _load_pretrained_path(net, Path(choice).expanduser())
    return net


def _imagenet_state(download: bool) -> dict[str, torch.Tensor] | None:
    from torchvision.models import ResNet18_Weights

    weights = ResNet18_Weights.IMAGENET1K_V1
    cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights.url)
    try:
        if cached.is_file():
            return torch.load(cached, map_location="cpu", weights_only=True)
        if not download:
            raise FileNotFoundError(f"{cached} not cached")
        old = socket.getdefaulttimeout()
        socket.setdefaulttimeout(DOWNLOAD_TIMEOUT)
        try:
            return weights.get_state_dict(progress=False, check_hash=True)
        finally:
            socket.setdefaulttimeout(old)
    except Exception as err:  # noqa: BLE001 - any failure means: train from scratch
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        log.warning(
            "ImageNet weights for ResNet-18 are not available (%s); the frame branch starts from "
            "random weights. Put %s in place (or allow the download) to use them.",
            reason[:160], cached,
        )
        return None


def _load_backbone(net: HighlightNet, state: dict[str, torch.Tensor], what: str) -> None:
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    missing, unexpected = net.frames.load_state_dict(state, strict=False)
    if unexpected or len(missing) > 0:
        raise ModelError(f"{what} weights do not fit ResNet-18 (missing {len(missing)}, unexpected {len(unexpected)} keys)")
    log.info("frame branch initialised from %s weights", what)


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Load tensors from a .safetensors file or a state dict with ``weights_only=True`` (no code runs)."""
    if not path.is_file():
        raise ModelError(f"pretrained weights {path} not found: set model.pretrained to 'imagenet', 'none' or an existing file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - translated at the boundary
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelError(f"refusing {path}: not a plain tensor state dict ({first[:120]}); use safetensors or a weights-only state dict") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"{path} is not a state dict of tensors: export one with torch.save(model.state_dict(), PATH)")
    return state


def _load_pretrained_path(net: HighlightNet, path: Path) -> None:
    # a registry model's audio gate (gate.*) belongs to that model's scoring, not to a new one
    state = {k: v for k, v in read_state_dict(path).items() if not k.startswith("gate.")}
    own = net.state_dict()
    if set(state) == set(own):
        try:
            net.load_state_dict(state)
        except RuntimeError as err:
            raise ModelError(f"{path} does not fit this model's dimensions ({str(err).splitlines()[0][:120]})") from None
        log.info("model initialised from %s", path)
    elif net.dims.uses_frames and "conv1.weight" in state:
        _load_backbone(net, state, str(path))
    else:
        raise ModelError(f"{path} is neither a HighlightNet nor a ResNet-18 state dict")


# ---------------------------------------------------------------------------------------------
# Arrays -> tensors -> probabilities
# ---------------------------------------------------------------------------------------------


def frames_to_tensor(frames_uint8: np.ndarray | torch.Tensor, size: int | None = None) -> torch.Tensor:
    """(N,S,S,3) uint8 RGB -> (N,3,S,S) float32 in [0,1], channels_last; resized to ``size`` if given."""
    t = torch.as_tensor(frames_uint8)
    if t.ndim != 4 or t.shape[-1] != 3:
        raise ModelError(f"frames must be (N,S,S,3) RGB, got shape {tuple(t.shape)}")
    t = t.permute(0, 3, 1, 2).float().div_(255.0)
    if size is not None and (t.shape[2] != size or t.shape[3] != size):
        t = nn.functional.interpolate(t, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return t.contiguous(memory_format=torch.channels_last)


def mels_to_tensor(mels: np.ndarray | torch.Tensor) -> torch.Tensor:
    """(N,n_mels,T) float32 -> (N,1,n_mels,T)."""
    t = torch.as_tensor(mels, dtype=torch.float32)
    if t.ndim != 3:
        raise ModelError(f"spectrograms must be (N,n_mels,T), got shape {tuple(t.shape)}")
    return t.unsqueeze(1).contiguous()


def _check_mels(dims: ModelDims, mels: np.ndarray | None) -> None:
    if dims.uses_audio and mels is not None and tuple(mels.shape[1:]) != (dims.n_mels, dims.mel_frames):
        raise ModelError(
            f"spectrograms are {tuple(mels.shape[1:])} but model expects ({dims.n_mels}, {dims.mel_frames}): "
            "the [audio] settings changed since this model was trained; retrain it"
        )


def base_parts(net: HighlightNet, frames_uint8: np.ndarray | None, mels: np.ndarray | None, *,
               batch: int = 64) -> dict[str, torch.Tensor]:
    """Per-frame embeddings of N frames (``HighlightNet.base``), in batches, eval mode, no autograd."""
    dims = net.dims
    _check_mels(dims, mels)
    n = len(frames_uint8) if frames_uint8 is not None else len(mels)  # type: ignore[arg-type]
    was_training = net.training
    net.eval()
    chunks: list[dict[str, torch.Tensor]] = []
    device = net.mean.device  # [model] device: the net was moved there
    try:
        with torch.inference_mode():
            for i in range(0, n, batch):
                f = frames_to_tensor(frames_uint8[i : i + batch], dims.size) if dims.uses_frames else None
                m = mels_to_tensor(mels[i : i + batch]) if dims.uses_audio else None
                if device.type != "cpu":
                    f = None if f is None else f.to(device)
                    m = None if m is None else m.to(device)
                chunks.append(net.base(f, m))
    finally:
        net.train(was_training)
    if not chunks:
        return {}
    return {k: torch.cat([c[k] for c in chunks]) for k in chunks[0]}


def logits(net: HighlightNet, frames_uint8: np.ndarray | None, mels: np.ndarray | None, *, batch: int = 64,
           seg: np.ndarray | None = None) -> np.ndarray:
    """Raw logits for N time-ordered samples (``seg``: segment id per sample; None: one segment)."""
    from autoclip.temporal import temporal_logits

    n = len(frames_uint8) if frames_uint8 is not None else len(mels)  # type: ignore[arg-type]
    if n == 0:
        return np.zeros(0, dtype=np.float32)
    parts = base_parts(net, frames_uint8, mels, batch=batch)
    was_training = net.training
    net.eval()
    try:
        with torch.inference_mode():
            if net.dims.context == 0:
                flat = [parts[k] for k in ("v", "a") if k in parts]
                z = torch.cat([net.head(torch.cat([p[i : i + batch] for p in flat], dim=1)).squeeze(1)
                               for i in range(0, n, batch)])
            else:
                s = torch.zeros(n, dtype=torch.long) if seg is None else torch.as_tensor(seg, dtype=torch.long)
                s = s.to(net.mean.device)
                z = temporal_logits(net, parts, s)
    finally:
        net.train(was_training)
    return z.float().cpu().numpy()


def predict(net: HighlightNet, frames_uint8: np.ndarray | None, mels: np.ndarray | None, *, batch: int = 64,
            seg: np.ndarray | None = None) -> np.ndarray:
    """Highlight probabilities (N,) float32 for frames (N,S,S,3) uint8 and mels (N,n_mels,T)
    in time order (``seg``: segment ids; None: one run of consecutive frames)."""
    z = logits(net, frames_uint8, mels, batch=batch, seg=seg)
    return (1.0 / (1.0 + np.exp(-z.astype(np.float64)))).astype(np.float32)


def prepare_for_inference(net: HighlightNet) -> HighlightNet:
    """Eval mode and channels_last memory (faster convolutions on CPU)."""
    net.eval()
    return net.to(memory_format=torch.channels_last)
