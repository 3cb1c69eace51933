"""`autoclip crop VOD --at TIME`: one full-resolution frame with a labelled pixel grid and the
face-cam box drawn on it, to choose the ``[frames] crop`` (or a profile's box)."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path

from autoclip.commands import Context, add_command, add_json, add_vod
from autoclip.config import Config
from autoclip.errors import MediaError, UsageError
from autoclip.timefmt import hms, parse_time


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub, "crop", cmd_crop,
        help="save one full-size frame with a labelled pixel grid to choose the [frames] face-cam crop",
        summary="a frame with a pixel grid to choose the face-cam box",
        example="autoclip crop stream.mkv --at 00:12:30 --out frame.png",
    )
    add_vod(p)
    p.add_argument("--at", metavar="TIME", help="time in the VOD: seconds, MM:SS or HH:MM:SS")
    p.add_argument("--detect", action="store_true",
                   help="find the face cam (about 30 frames spread over the VOD) and draw it on a frame")
    p.add_argument("--out", type=Path, metavar="PNG",
                   help="image to write (default: <vod name>.crop.png, with --detect <vod name>.facecam.png, here)")
    add_json(p)


def grid_step(width: int, height: int) -> int:
    """A round grid spacing giving roughly 8-20 lines across the frame."""
    for step in (10, 20, 25, 50, 100, 200, 250, 500):
        if max(width, height) / step <= 20:
            return step
    return 1000


def crop_preview_command(vod: str | os.PathLike[str], at: float, out: str | os.PathLike[str], *,
                         width: int, height: int, box: tuple[int, int, int, int] | None,
                         current: bool, font: str | None, ffmpeg: str = "ffmpeg") -> list[str]:
    """ffmpeg arguments saving the frame at ``at`` as PNG with a labelled grid and ``box`` drawn
    (green: the configured crop; yellow: a suggestion)."""
    from autoclip.media import file_url
    from autoclip.render import escape_value

    step = grid_step(width, height)
    size = max(10, min(width, height) // 45)
    font_opt = f"fontfile={escape_value(font)}:" if font else ""
    label = f"{font_opt}fontsize={size}:fontcolor=yellow:box=1:boxcolor=black@0.6:boxborderw=2"
    parts = [f"drawgrid=w={step}:h={step}:t=1:c=white@0.35"]
    parts += [f"drawtext={label}:text={x}:x={x + 2}:y=2" for x in range(step, width, step)]
    parts += [f"drawtext={label}:text={y}:x=2:y={y + 2}" for y in range(step, height, step)]
    if box is not None:
        x, y, w, h = box
        parts.append(f"drawbox=x={x}:y={y}:w={w}:h={h}:color={'lime' if current else 'yellow'}:t={max(2, size // 4)}")
    return [ffmpeg, "-nostdin", "-hide_banner", "-nostats", "-loglevel", "error", "-y",
            "-protocol_whitelist", "file", "-ss", f"{max(0.0, at):.3f}", "-i", file_url(vod),
            "-frames:v", "1", "-vf", ",".join(parts), "-update", "1", "-f", "image2", "-c:v", "png",
            os.path.abspath(os.fspath(out))]


def save_crop_preview(vod: str | os.PathLike[str], at: float, out: str | os.PathLike[str], *, width: int,
                      height: int, box: tuple[int, int, int, int] | None, current: bool,
                      cfg: Config) -> Path:
    """Write the grid preview PNG atomically to ``out``."""
    from autoclip.fsutil import atomic_path
    from autoclip.render import find_font, run_ffmpeg

    out = Path(out)
    font = find_font(cfg.render.font)
    with atomic_path(out, suffix=".png") as tmp:
        run_ffmpeg(crop_preview_command(vod, at, tmp, width=width, height=height, box=box, current=current,
                                        font=font, ffmpeg=cfg.media.ffmpeg), f"saving a frame at {hms(at)}")
        if tmp.stat().st_size == 0:
            raise MediaError(f"no frame at {hms(at)} in {Path(vod).name}; pick an earlier time", code="render")
    return out


def suggested_box(width: int, height: int) -> tuple[int, int, int, int]:
    """A starting point when no crop is set: the bottom-right corner, where face cams often sit."""
    x, y = round(width * 0.7), round(height * 0.6)
    return (x, y, width - x, height - y)


def cmd_crop(args: argparse.Namespace, ctx: Context) -> int:
    from autoclip import media
    from autoclip.render import safe_name

    if args.detect:
        from autoclip.commands.detect import crop_detect

        return crop_detect(args, ctx)
    if args.at is None:
        raise UsageError("crop: give --at TIME (a frame with a pixel grid) or --detect (find the face cam)")
    try:
        at = parse_time(args.at)
    except ValueError as err:
        raise UsageError(f"--at {args.at!r}: give seconds (75.5), MM:SS or HH:MM:SS ({err})") from None
    cfg = ctx.config
    info = media.probe(args.vod, cfg.media)
    if at >= info.duration:
        raise UsageError(f"--at {args.at}: the VOD is only {hms(info.duration)} long")
    current = cfg.frames.crop_for(args.vod)
    box = current or suggested_box(info.width, info.height)
    out = args.out or Path(f"{safe_name(args.vod.stem)}.crop.png")
    save_crop_preview(args.vod, at, out, width=info.width, height=info.height, box=box,
                      current=current is not None, cfg=cfg)
    what = "the current crop (green)" if current else "a suggested box (yellow) to adjust"
    print(f"saved {out}: {info.width}x{info.height} frame at {hms(at)} with a pixel grid and {what}")
    print("put the face cam's box [x, y, w, h] (display pixels) in config.toml, for every VOD:")
    print(f"  [frames]\n  crop = [{', '.join(map(str, box))}]")
    first_word = re.search(r"[^\W_]+", args.vod.stem)  # the name up to its first word's end
    prefix = args.vod.stem[: first_word.end()] if first_word else args.vod.stem
    print("or only for VODs whose name matches a pattern:")
    key = re.sub(r"[^a-z0-9_-]", "", prefix.lower()).strip("-_")[:30] or "mygame"
    print(f"  [frames.profiles.{key}]\n  match = {json.dumps(prefix + '*', ensure_ascii=False)}\n"
          f"  box = [{', '.join(map(str, box))}]")
    sys.stdout.flush()
    return 0
