"""`autoclip crop VOD --detect`: find the face cam in the VOD's picture, draw it on a frame and
print the config lines that use it (see ``autoclip.facecam`` for how it is found)."""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from autoclip.commands import Context, emit_json
from autoclip.timefmt import hms as _hms


def profile_lines(vod: Path, box: tuple[int, int, int, int]) -> str:
    """A ``[frames.profiles.NAME]`` block for VODs named like ``vod`` using ``box``."""
    first_word = re.search(r"[^\W_]+", vod.stem)  # the name up to its first word's end
    prefix = vod.stem[: first_word.end()] if first_word else vod.stem
    key = re.sub(r"[^a-z0-9_-]", "", prefix.lower()).strip("-_")[:30] or "mygame"
    return (f"  [frames.profiles.{key}]\n  match = {json.dumps(prefix + '*', ensure_ascii=False)}\n"
            f"  box = [{', '.join(map(str, box))}]")


def crop_detect(args: argparse.Namespace, ctx: Context) -> int:
    from autoclip import facecam, media
    from autoclip.render import safe_name

    cfg = ctx.config
    info = media.probe(args.vod, cfg.media)
    det = facecam.detect(args.vod, cfg.media, info=info)
    out = args.out or Path(f"{safe_name(args.vod.stem)}.facecam.png")
    at = det.at if det.at is not None else info.duration / 2
    _preview(args.vod, at, out, info, det.box, cfg)
    if getattr(args, "json", False):
        emit_json({"box": list(det.box) if det.box else None, "confidence": det.confidence, "preview": str(out)})
        return 0
    name = args.vod.name
    if det.box is None:
        print(f"no face cam found in {name}: {det.reason} (confidence {det.confidence:.2f}, {det.seconds:.1f} s)")
        print(f"saved {out}: the frame at {_hms(at)}, no box drawn")
        print('with [frames] crop = "auto" this VOD uses the whole frame; to crop it anyway, pick a box with '
              f"`autoclip crop {name} --at TIME` and put it in a profile")
    else:
        print(f"face cam found in {name}: [{', '.join(map(str, det.box))}] (x, y, w, h in pixels of the "
              f"{info.width}x{info.height} picture); confidence {det.confidence:.2f}, {det.reason}, {det.seconds:.1f} s")
        print(f"saved {out}: the frame at {_hms(at)} with a pixel grid and the detected box (yellow)")
        print("use this box for VODs whose name matches a pattern:")
        print(profile_lines(args.vod, det.box))
        print('or detect the face cam in every VOD by itself (a matching profile still wins):\n'
              '  [frames]\n  crop = "auto"')
    sys.stdout.flush()
    return 0


def _preview(vod: Path, at: float, out: Path, info, box, cfg) -> None:
    from autoclip.commands.crop import save_crop_preview

    save_crop_preview(vod, at, out, width=info.width, height=info.height, box=box, current=False, cfg=cfg)


