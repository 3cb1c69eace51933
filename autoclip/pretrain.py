"""Self-supervised pretraining on the user's own VODs (``model.pretrained = "self"``).

ImageNet weights are out of reach on many boxes (this one included), and a few dozen labelled
clips are all a first model gets. The VODs themselves are plentiful and unlabelled: this module
teaches the per-frame parts of the network (the ResNet-18 and the log-mel CNN with their
projections) **audio-visual correspondence**: from a batch of moments, match each face-cam frame
to the audio of the same moment (a symmetric InfoNCE loss over projected embeddings). A face
that reacts goes with a voice that does; a calm face with calm speech; so the embeddings learn
the pairing a highlight is made of, with no label.

* What it reads: short blocks (``[pretrain] block_seconds``, on the pseudo-labels' fixed grid so
  the feature cache is shared) spread evenly over every VOD the deployment knows: the labelled
  ones and the processed ones, cropped to each VOD's face cam as scoring crops it.
* A batch takes at most one moment per block, so the other moments in it (its negatives) are
  seconds to hours away, never a near-copy of the same second. One block in five is held out;
  the audio-to-frame retrieval accuracy on it, before and after, is recorded beside its chance
  level (1 / batch) as a health check.
* Where it goes: ``models/selfsup/weights.safetensors`` with ``pretrain.json`` (the VODs, sample
  count, losses, retrieval, the weights' checksum), each written atomically; a pair whose checksum
  does not match is ignored and pretraining runs again. The registry never lists this folder.
* When it runs: ``autoclip pretrain`` by hand, or inside a (scheduled) retrain whose new model
  starts from these weights, i.e. when there is no current model to warm-start from, if VODs were
  added (or the frame/audio settings changed) since the last pretraining.

Whether it helps is measured on the realistic benchmark (README, ablation table); it is not the
default.
"""

from __future__ import annotations

import hashlib
import logging
import math
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from autoclip import fsutil
from autoclip.config import Config
from autoclip.errors import ModelError

log = logging.getLogger(__name__)

#: ``model.pretrained`` value that selects these weights
SELF = "self"
#: folder under the models directory (no model.json: the registry ignores it)
FOLDER = "selfsup"
WEIGHTS = "weights.safetensors"
META = "pretrain.json"
#: the network's per-frame parts this pretraining trains (``HighlightNet.per_frame_parameters``)
PARTS = ("frames", "frames_proj", "audio", "audio_proj")
#: width of the projections the contrastive loss compares (dropped after pretraining)
PROJECTION = 64
#: every this-many-th block is held out for the retrieval check
HOLD_OUT_EVERY = 5


def folder(cfg: Config) -> Path:
    return cfg.path("models") / FOLDER


# ---- Which VODs, which moments ---------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    vod: str
    fingerprint: str


def sources(cfg: Config, conn: sqlite3.Connection) -> list[Source]:
    """Every VOD the deployment knows (labelled, then processed), one per content fingerprint."""
    from autoclip.trainrun import scored_jobs

    seen: dict[str, Source] = {}
    for row in conn.execute("SELECT vod, fingerprint FROM labels GROUP BY fingerprint ORDER BY MIN(id)"):
        seen.setdefault(row["fingerprint"], Source(row["vod"], row["fingerprint"]))
    for record, _npz in scored_jobs(cfg):
        seen.setdefault(record["fingerprint"], Source(record["vod"], record["fingerprint"]))
    return list(seen.values())[: cfg.pretrain.max_vods]


def block_starts(duration: float, n: int, block: float) -> list[float]:
    """Start times of ``n`` blocks of ``block`` seconds on the fixed grid, spread evenly."""
    from autoclip.dataset import _middle_indices

    grid = int(duration // block)
    return [float(i * block) for i in _middle_indices(grid, n)]


@dataclass
class Pool:
    """Decoded moments: frames (N,S,S,3) uint8, mels (N,M,T), the block each came from."""

    frames: np.ndarray
    mels: np.ndarray
    block: np.ndarray
    vods: list[str]

    def __len__(self) -> int:
        return len(self.block)


def gather(cfg: Config, srcs: list[Source]) -> Pool:
    """Decode (or fetch from the feature cache) ``blocks_per_vod`` blocks of each source."""
    from autoclip.dataset import PSEUDO_BLOCK, BlockSource
    from autoclip.featcache import FeatureCache, decode_settings

    cache = FeatureCache(cfg.path("cache"))
    p = cfg.pretrain
    span = max(1, round(p.block_seconds / PSEUDO_BLOCK))  # grid blocks per pretraining block
    frames, mels, block, used = [], [], [], []
    for src in srcs:
        settings = decode_settings(cfg, src.vod, src.fingerprint)
        source = BlockSource(src.vod, src.fingerprint, cfg, tuple(settings["crop"]) if settings["crop"] else None,
                             purpose="self-supervised pretraining")
        duration = source.duration()
        if duration is None:
            continue
        got = 0
        for start in block_starts(duration, p.blocks_per_vod, span * PSEUDO_BLOCK):
            parts = []
            for k in range(span):  # the pseudo-labels' cache entries, one grid block each
                lo = start + k * PSEUDO_BLOCK
                arrays = source.block(cache, {**settings, "block": [lo, lo + PSEUDO_BLOCK]}, lo, lo + PSEUDO_BLOCK)
                if arrays is not None and len(arrays["times"]):
                    parts.append(arrays)
            if not parts:
                continue
            frames.append(np.concatenate([a["frames"] for a in parts]))
            mels.append(np.concatenate([a["mels"] for a in parts]))
            block.append(np.full(len(frames[-1]), len(block), dtype=np.int64))
            got += 1
        if got:
            used.append(src.fingerprint)
        if sum(len(b) for b in block) >= p.max_samples:
            break
    if not block:
        raise ModelError("self-supervised pretraining found no readable VOD: label or process a VOD first "
                         "(or set model.pretrained = 'none')")
    pool = Pool(np.concatenate(frames), np.concatenate(mels), np.concatenate(block), used)
    if len(pool) > p.max_samples:  # evenly thinned, every block keeps some moments
        keep = np.unique(np.floor(np.arange(p.max_samples) * len(pool) / p.max_samples).astype(int))
        pool = Pool(pool.frames[keep], pool.mels[keep], pool.block[keep], used)
    log.info("self-supervised pretraining: %d moments in %d blocks of %d VOD(s) (cache hits %d, misses %d)",
             len(pool), len(np.unique(pool.block)), len(used), cache.hits, cache.misses)
    return pool


def batches(block: np.ndarray, batch: int, rng: np.random.Generator) -> list[np.ndarray]:
    """One epoch: every moment once, each batch holding at most one moment per block."""
    ids = np.unique(block)
    queues = {int(b): list(rng.permutation(np.flatnonzero(block == b))) for b in ids}
    out: list[np.ndarray] = []
    while queues:
        order = rng.permutation(list(queues)).tolist()
        this_round = [queues[b].pop() for b in order]
        queues = {b: q for b, q in queues.items() if q}
        for i in range(0, len(this_round), batch):
            chunk = this_round[i : i + batch]
            if len(chunk) >= 2:
                out.append(np.asarray(chunk))
    return [out[i] for i in rng.permutation(len(out))]


# ---- The contrastive task --------------------------------------------------------------------


class Projector(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(width, width), nn.ReLU(inplace=True), nn.Linear(width, PROJECTION))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.body(x), dim=1)


def info_nce(zv: torch.Tensor, za: torch.Tensor, temperature: float) -> torch.Tensor:
    """Symmetric InfoNCE: row i of each side should pick row i of the other among the batch."""
    sim = zv @ za.T / temperature
    target = torch.arange(len(zv))
    return 0.5 * (F.cross_entropy(sim, target) + F.cross_entropy(sim.T, target))


def _embed(net: Any, pool: Pool, idx: np.ndarray, gen: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
    from autoclip import augment
    from autoclip.model import frames_to_tensor, mels_to_tensor

    f = frames_to_tensor(pool.frames[idx], net.dims.size)
    m = mels_to_tensor(pool.mels[idx])
    if gen is not None:
        f, m = augment.frames(f, gen), augment.mels(m, gen)
    parts = net.base(f, m)
    return parts["v"], parts["a"]


def retrieval(net: Any, pv: Projector, pa: Projector, pool: Pool, groups: list[np.ndarray]) -> float:
    """Share of held-out batches' audio windows whose nearest frame (cosine) is their own."""
    hits = total = 0
    net.eval()
    with torch.inference_mode():
        for idx in groups:
            v, a = _embed(net, pool, idx, None)
            sim = pa(a) @ pv(v).T
            hits += int((sim.argmax(dim=1) == torch.arange(len(idx))).sum())
            total += len(idx)
    return hits / max(total, 1)


def run(cfg: Config, conn: sqlite3.Connection, *, progress: bool = False) -> dict[str, Any]:
    """Pretrain on every known VOD now and save the weights; return what ``pretrain.json`` holds."""
    from autoclip.model import ModelDims, build_model

    p = cfg.pretrain  # torch threads are the caller's (a retrain child runs with retrain.threads)
    t0 = time.monotonic()
    srcs = sources(cfg, conn)
    pool = gather(cfg, srcs)
    blocks = np.unique(pool.block)
    held = np.isin(pool.block, blocks[HOLD_OUT_EVERY - 1 :: HOLD_OUT_EVERY]) if len(blocks) >= 2 * HOLD_OUT_EVERY \
        else np.zeros(len(pool), dtype=bool)
    train_idx, held_idx = np.flatnonzero(~held), np.flatnonzero(held)
    rng = np.random.default_rng(p.seed)
    held_groups = [held_idx[g] for g in batches(pool.block[held_idx], p.batch_size, rng)] if len(held_idx) else []

    torch.manual_seed(p.seed)
    dims = ModelDims.from_config(cfg, "fused")
    net = build_model(dims, "none")
    pv, pa = Projector(net.frames_proj[0].out_features), Projector(net.audio_proj[0].out_features)
    params = [q for name in PARTS for q in getattr(net, name).parameters()] + list(pv.parameters()) + list(pa.parameters())
    opt = torch.optim.AdamW(params, lr=p.lr, weight_decay=cfg.train.weight_decay)
    before = retrieval(net, pv, pa, pool, held_groups) if held_groups else None
    gen = torch.Generator().manual_seed(p.seed)
    losses: list[float] = []
    for epoch in range(p.epochs):
        net.train()
        total, n = 0.0, 0
        for local in batches(pool.block[train_idx], p.batch_size, rng):
            idx = train_idx[local]
            v, a = _embed(net, pool, idx, gen)
            loss = info_nce(pv(v), pa(a), p.temperature)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total, n = total + float(loss.detach()) * len(idx), n + len(idx)
        losses.append(total / max(n, 1))
        if progress:
            log.info("pretraining epoch %d/%d: contrastive loss %.3f", epoch + 1, p.epochs, losses[-1])
    after = retrieval(net, pv, pa, pool, held_groups) if held_groups else None
    chance = float(np.mean([1.0 / len(g) for g in held_groups])) if held_groups else None
    state = {k: v.detach().contiguous() for k, v in net.state_dict().items() if k.split(".")[0] in PARTS}
    meta = save(cfg, state, {
        "created": time.time(),
        "vods": sorted(pool.vods),
        # every VOD considered (one unreadable, or past max_samples, is not new next time)
        "sources": sorted(src.fingerprint for src in srcs),
        "samples": int(len(pool)),
        "blocks": int(len(blocks)),
        "held_out_blocks": int(len(np.unique(pool.block[held_idx]))),
        "epochs": p.epochs,
        "loss": [round(x, 4) for x in losses],
        "chance_loss": round(math.log(p.batch_size), 4),
        "retrieval_before": before,
        "retrieval_after": after,
        "retrieval_chance": chance,
        "settings": _settings(cfg),
        "seconds": round(time.monotonic() - t0, 1),
    })
    log.info("self-supervised pretraining done in %.0f s: loss %.3f -> %.3f; held-out retrieval %s -> %s (chance %s)",
             meta["seconds"], losses[0], losses[-1], _pct(before), _pct(after), _pct(chance))
    return meta


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.0f} %"


def _settings(cfg: Config) -> dict[str, Any]:
    """What the weights' shapes and meaning depend on: a change means pretraining again."""
    from autoclip.features import mel_frames

    return {"size": cfg.frames.size, "fps": cfg.frames.fps, "n_mels": cfg.audio.n_mels,
            "mel_frames": mel_frames(cfg.audio), "audio": cfg.audio.model_dump()}


# ---- Saving, checking, loading ---------------------------------------------------------------


def save(cfg: Config, state: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    """Weights, then ``pretrain.json`` with their checksum, each written atomically: a reader sees
    the old pair, the new pair, or new weights with the old checksum (ignored as a mismatch)."""
    from safetensors.torch import save_file

    out = folder(cfg)
    out.mkdir(parents=True, exist_ok=True)
    with fsutil.atomic_path(out / WEIGHTS) as tmp:
        save_file(state, str(tmp))
        digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
    meta = {**meta, "sha256": digest}
    fsutil.atomic_write_json(out / META, meta)
    return meta


def current(cfg: Config) -> dict[str, Any] | None:
    """The saved pretraining's record when its weights are there and match their checksum."""
    import json

    out = folder(cfg)
    try:
        meta = json.loads((out / META).read_text(encoding="utf-8"))
        digest = hashlib.sha256((out / WEIGHTS).read_bytes()).hexdigest()
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or meta.get("sha256") != digest:
        log.warning("self-supervised weights in %s do not match their record; they will be made again", out)
        return None
    return meta


def stale(cfg: Config, conn: sqlite3.Connection) -> str | None:
    """Why pretraining should run again (None: the saved weights are up to date)."""
    return stale_reason(cfg, conn, current(cfg))


def stale_reason(cfg: Config, conn: sqlite3.Connection, meta: dict[str, Any] | None) -> str | None:
    """``stale`` for a record already read with ``current`` (each read hashes the weights file)."""
    if meta is None:
        return "no self-supervised weights yet"
    if meta.get("settings") != _settings(cfg):
        return "the frame or audio settings changed since the last pretraining"
    known = {s.fingerprint for s in sources(cfg, conn)}
    new = known - set(meta.get("sources", meta.get("vods", [])))
    if new:
        return f"{len(new)} VOD(s) added since the last pretraining"
    return None


def ensure(cfg: Config, conn: sqlite3.Connection, *, progress: bool = False) -> dict[str, Any]:
    """Up-to-date weights: the saved ones, else pretrain now."""
    meta = current(cfg)
    why = stale_reason(cfg, conn, meta)
    if why is None:
        assert meta is not None
        return meta
    log.info("self-supervised pretraining runs first: %s", why)
    return run(cfg, conn, progress=progress)


def load_into(net: Any, cfg: Config, meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """Copy the saved per-frame weights into ``net`` (the parts it has); return their record
    (``meta``: the record ``ensure`` just returned, so the weights are not hashed again)."""
    from autoclip.model import read_state_dict

    meta = meta or current(cfg)
    if meta is None:
        raise ModelError("no self-supervised weights: run `autoclip pretrain` (or set model.pretrained = 'none')")
    state = read_state_dict(folder(cfg) / WEIGHTS)
    own = net.state_dict()
    take = {k: v for k, v in state.items() if k in own}
    if not take or any(own[k].shape != v.shape for k, v in take.items()):
        raise ModelError("the self-supervised weights do not fit this model: run `autoclip pretrain` again")
    missing = [k for k in own if k.split(".")[0] in PARTS and hasattr(net, k.split(".")[0]) and k not in take]
    if missing:
        raise ModelError(f"the self-supervised weights lack {len(missing)} tensors of this model: run `autoclip pretrain` again")
    net.load_state_dict(take, strict=False)
    log.info("per-frame parts initialised from self-supervised weights (%d VODs, %d moments)",
             len(meta.get("vods", [])), meta.get("samples", 0))
    return meta
