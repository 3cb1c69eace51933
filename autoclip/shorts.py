"""Vertical shorts: the best segments of a reel as 9:16 videos, face cam stacked over the game.

``[shorts] count`` segments (best score first) are each encoded straight from the VOD (input
seeking, one encode per short) at ``[shorts] size``: with ``layout = "stacked"`` the VOD's face
cam (its crop box) fills the top, as wide as the short, and ``game_box`` (default: the centre
of the frame, full height) fills the rest; ``layout = "game"`` is the game box alone. Boxes are
trimmed around their centre to the aspect of the region they fill, so nothing is stretched.
Each short gets the reel's overlay template, the same loudness treatment, a JPEG of its peak
frame, and a line in ``shorts.json``. They are published together as ``NAME.shorts/``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autoclip.config import Config, ShortsConfig
from autoclip.graphs import Box, Gain, ShortLayout, compile_args, frame_graph, short_graph
from autoclip.selection import Segment

log = logging.getLogger(__name__)

#: the face cam takes at most this share of a stacked short's height
MAX_FACE_SHARE = 0.4


def _even(v: float) -> int:
    return max(2, int(v) - int(v) % 2)


def fit_box(box: Box, aspect: float, frame: tuple[int, int]) -> Box:
    """``box`` clamped to the frame and trimmed around its centre to ``aspect`` (w / h); even sizes."""
    fw, fh = frame
    x, y, w, h = box
    x, y = max(0, min(x, fw - 2)), max(0, min(y, fh - 2))
    w, h = max(2, min(w, fw - x)), max(2, min(h, fh - y))
    if w / h > aspect:
        nw, nh = h * aspect, h
    else:
        nw, nh = w, w / aspect
    nw, nh = _even(min(nw, w)), _even(min(nh, h))
    return (x + (w - nw) // 2, y + (h - nh) // 2, nw, nh)


def layout_for(cfg: ShortsConfig, face: Box | None, frame: tuple[int, int]) -> ShortLayout:
    """Where each part of a short comes from, for a source frame of ``frame`` (w, h) pixels."""
    width, height = cfg.dimensions
    game_box = tuple(cfg.game_box) if cfg.game_box else (0, 0, frame[0], frame[1])
    if cfg.layout == "stacked" and face is not None:
        top = _even(min(width * face[3] / max(1, face[2]), height * MAX_FACE_SHARE))
        game = fit_box(game_box, width / (height - top), frame)  # type: ignore[arg-type]
        return ShortLayout(width, height, game, fit_box(face, width / top, frame), top)
    return ShortLayout(width, height, fit_box(game_box, width / height, frame))  # type: ignore[arg-type]


def facecam_box(vod: str | os.PathLike[str], cfg: Config) -> Box | None:
    """The VOD's face-cam box: a matching crop profile, else ``[frames] crop`` (a fixed box, or
    with "auto" the box detected in this VOD; see ``cropbox.crop_box_for``)."""
    from autoclip.cropbox import crop_box_for

    box = crop_box_for(Path(os.fspath(vod)), cfg)[0]
    if isinstance(box, (tuple, list)) and len(box) == 4 and box[2] > 0 and box[3] > 0:
        return tuple(int(v) for v in box)  # type: ignore[return-value]
    return None


def pick(segments: Sequence[Segment], count: int) -> list[tuple[int, Segment]]:
    """The ``count`` best segments (1-based reel index, segment), best first (ties: earlier first)."""
    ranked = sorted(enumerate(segments, 1), key=lambda p: (-p[1].score, p[1].start))
    return ranked[:count]


@dataclass
class ShortsPlan:
    """What ``render_shorts`` makes: the layout used and the picked segments."""

    layout: ShortLayout
    picked: list[tuple[int, Segment]]
    font_size: int


def plan(vod: str | os.PathLike[str], segments: Sequence[Segment], cfg: Config,
         frame: tuple[int, int]) -> ShortsPlan | None:
    scfg = cfg.shorts
    if scfg.count == 0 or not segments:
        return None
    face = facecam_box(vod, cfg) if scfg.layout == "stacked" else None
    if scfg.layout == "stacked" and face is None:
        log.warning("shorts of %s: no face-cam crop set for this VOD ([frames] crop or a profile): "
                    "using the game layout", Path(os.fspath(vod)).name)
    layout = layout_for(scfg, face, frame)
    font = max(8, round(cfg.render.font_size * layout.width / 720))
    return ShortsPlan(layout, pick(segments, scfg.count), font)


def render_shorts(vod: str | os.PathLike[str], shorts: ShortsPlan, st: Any, cfg: Config, work: Path,
                  gains: dict[int, Gain] | None) -> tuple[list[dict[str, Any]], list[Path]]:
    """Encode each planned short and its thumbnail into ``work``; (shorts.json entries, files)."""
    from autoclip.render import clip_duration, hms, overlay_text, run_ffmpeg

    entries, files = [], []
    for n, (index, seg) in enumerate(shorts.picked, 1):
        dur = clip_duration(seg, st.fps_value)
        textfile = None
        if st.overlay:
            textfile = work / f"short-overlay-{n:02d}.txt"
            textfile.write_text(overlay_text(st.overlay, vod=os.fspath(vod), segment=seg, index=index), encoding="utf-8")
        out, thumb = work / f"{n:02d}.mp4", work / f"{n:02d}.jpg"
        log.info("short %d/%d: %s-%s (score %.2f)", n, len(shorts.picked), hms(seg.start), hms(seg.end), seg.score)
        graph = short_graph(vod, seg, out, st, dur, shorts.layout, shorts.font_size, textfile,
                            (gains or {}).get(index))
        run_ffmpeg(compile_args(graph, st.ffmpeg), f"encoding short {n} ({hms(seg.start)})", timeout=120 + 30 * dur)
        at = min(max(0.0, seg.peak - seg.start), max(0.0, dur - 2 / st.fps_value))
        run_ffmpeg(compile_args(frame_graph(out, at, thumb), st.ffmpeg), f"saving the thumbnail of short {n}",
                   timeout=60)
        entries.append({"index": n, "file": out.name, "thumbnail": thumb.name, "reel_index": index,
                        "start": round(seg.start, 3), "end": round(seg.start + dur, 3), "peak": round(seg.peak, 3),
                        "score": round(seg.score, 4), "duration": round(dur, 3)})
        files += [out, thumb]
    return entries, files


def shorts_doc(vod: str | os.PathLike[str], name: str, shorts: ShortsPlan, entries: list[dict[str, Any]]) -> dict:
    lay = shorts.layout
    return {"vod": os.fsdecode(os.fspath(vod)), "reel": name,
            "layout": "stacked" if lay.face is not None else "game", "size": [lay.width, lay.height],
            "face_box": list(lay.face) if lay.face else None, "game_box": list(lay.game),
            "face_height": lay.face_height, "shorts": entries}
