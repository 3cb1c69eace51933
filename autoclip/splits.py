"""Train / validation / test splits that never change once a clip has one.

A clip's split is a function of its own content: clips of one VOD that overlap, touch or lie
within ``gap`` seconds of each other form a *unit* (they share frames and audio, so they must
stay together), and a unit's split comes from a hash of its VOD's fingerprint and its oldest
clip's time range. Labelling more clips, or more VODs, never moves an existing clip, so a model
trained today is never validated tomorrow on clips it trained on (the learning loop compares
teacher and student on the same validation clips; see ``train``).

The one exception is a tiny label set: while training or validation would lack a class, a unit
is lent from another split (the lowest hash first). The lending stops as soon as the data allows,
and the comparison of two models drops any validation clip that the teacher trained on, so a lent
unit can never leak into a promotion decision.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from autoclip.errors import LabelError

if TYPE_CHECKING:
    from autoclip.dataset import Clip

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


def merge_units(clips: Sequence[Clip], gap: float = 0.0) -> list[list[Clip]]:
    """Clips of one VOD that overlap, touch, or lie within ``gap`` seconds, merged into units."""
    units: list[list[Clip]] = []
    by_vod: dict[str, list[Clip]] = {}
    for c in clips:
        by_vod.setdefault(c.fingerprint, []).append(c)
    for fp in sorted(by_vod):
        reach = -math.inf
        for c in sorted(by_vod[fp], key=lambda c: (c.start, c.end, c.label_id)):
            if c.start <= reach + gap + 1e-9:
                units[-1].append(c)
            else:
                units.append([c])
            reach = max(reach, c.end)
    return units


def bucket(fingerprint: str, start: float, end: float, seed: int = 0) -> float:
    """A number in [0, 1) fixed by the VOD's content and a time range (and the split seed)."""
    text = f"{fingerprint}|{start:.3f}|{end:.3f}|{seed}"
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") / 2.0**64


def unit_bucket(unit: Sequence[Clip], seed: int = 0) -> float:
    """A unit's bucket: that of its oldest clip (lowest label id), which later labels never change."""
    anchor = min(unit, key=lambda c: (c.label_id, c.start, c.end))
    return bucket(anchor.fingerprint, anchor.start, anchor.end, seed)


def _check(fractions: Sequence[float]) -> tuple[float, float]:
    if len(fractions) != 3 or min(fractions) < 0 or fractions[0] <= 0:
        raise LabelError(f"split fractions {list(fractions)} must be three numbers >= 0 with train > 0")
    total = float(sum(fractions))
    return fractions[0] / total, (fractions[0] + fractions[1]) / total


def _home(u: float, edges: tuple[float, float]) -> str:
    return "train" if u < edges[0] else "val" if u < edges[1] else "test"


def split_clips(
    clips: Sequence[Clip],
    fractions: Sequence[float] = (0.7, 0.2, 0.1),
    seed: int = 0,
    *,
    gap: float = 0.0,
) -> dict[str, list[Clip]]:
    """Stable splits: each unit goes where its hash falls; see the module docstring."""
    edges = _check(fractions)
    units = merge_units(clips, gap)
    keyed = [(unit_bucket(u, seed), u) for u in units]
    assign: dict[str, list[tuple[float, list[Clip]]]] = {s: [] for s in SPLITS}
    for u, unit in keyed:
        assign[_home(u, edges)].append((u, unit))
    _lend(assign, fractions)
    out = {name: sorted((c for _, unit in assign[name] for c in unit),
                        key=lambda c: (c.fingerprint, c.start, c.end, c.label_id)) for name in SPLITS}
    log.debug("splits: %s", {k: len(v) for k, v in out.items()})
    return out


def _classes(members: list[tuple[float, list[Clip]]]) -> set[int]:
    return {c.label for _, unit in members for c in unit}


def _holders(members: list[tuple[float, list[Clip]]], label: int) -> list[tuple[float, list[Clip]]]:
    return sorted((m for m in members if any(c.label == label for c in m[1])), key=lambda m: m[0])


def _lend(assign: dict[str, list[tuple[float, list[Clip]]]], fractions: Sequence[float]) -> None:
    """Training gets every class there is (from test, then validation); then validation gets
    every class training holds twice or more (the unit nearest validation's hash range moves)."""
    everything = _classes([m for s in SPLITS for m in assign[s]])
    for label in sorted(everything - _classes(assign["train"])):
        for source in ("test", "val"):
            holders = _holders(assign[source], label)
            if holders:
                _move(assign, source, "train", holders[0])
                break
    if fractions[1] <= 0:
        return
    for label in sorted(_classes(assign["train"]) - _classes(assign["val"])):
        holders = _holders(assign["train"], label)
        if len(holders) >= 2:
            _move(assign, "train", "val", holders[-1])  # the highest train hash: nearest val's range
        elif _holders(assign["test"], label):
            _move(assign, "test", "val", _holders(assign["test"], label)[0])


def _move(assign: dict[str, list[tuple[float, list[Clip]]]], source: str, target: str,
          member: tuple[float, list[Clip]]) -> None:
    assign[source].remove(member)
    assign[target].append(member)
    log.debug("split: unit of %d clip(s) lent from %s to %s (too few labels of a class)", len(member[1]), source, target)


def clip_key(clip: Clip) -> tuple[str, float, float, int]:
    """What identifies a clip across databases: VOD content, range, label."""
    return (clip.fingerprint, round(clip.start, 3), round(clip.end, 3), int(clip.label))


def overlapping(clips: Sequence[Clip], ranges: Sequence[tuple[str, float, float]], gap: float = 0.0) -> list[Clip]:
    """The clips that overlap or touch (within ``gap``) any (fingerprint, start, end) of ``ranges``."""
    by_vod: dict[str, list[tuple[float, float]]] = {}
    for fp, a, b in ranges:
        by_vod.setdefault(fp, []).append((a, b))
    return [c for c in clips if any(c.start <= b + gap and a <= c.end + gap for a, b in by_vod.get(c.fingerprint, ()))]
