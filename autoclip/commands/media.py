"""`autoclip probe VOD`: what the media layer sees in a file."""

from __future__ import annotations

import argparse

from autoclip.commands import Context, add_command, add_json, add_vod, emit_json


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub, "probe", cmd_probe,
        help="show what autoclip sees in a video file (duration, codecs, size, rotation, fps, audio)",
        summary="what autoclip sees in a video file",
        example="autoclip probe stream.mkv --json",
    )
    add_vod(p)
    p.add_argument("--complete", action="store_true",
                   help="also check the file is complete (its last frames reach the declared duration)")
    add_json(p)


def cmd_probe(args: argparse.Namespace, ctx: Context) -> int:
    from autoclip import media

    cfg = ctx.config
    info = media.probe(args.vod, cfg.media)
    if args.complete:
        media.check_complete(args.vod, info, cfg.media)
    if args.json:
        emit_json(info.to_dict())
        return 0
    rows = [
        ("file", info.path), ("duration", f"{info.duration:.3f} s"), ("container", info.container),
        ("video", f"{info.video_codec} {info.width}x{info.height} (display), rotation {info.rotation}"),
        ("frame rate", f"{info.fps:g} fps" + (" (variable)" if info.vfr else "")),
        ("audio", f"{info.audio_codec}, {info.sample_rate} Hz, {info.channels} ch" if info.has_audio else "none"),
        ("size", f"{info.size / 1e6:.1f} MB"),
    ]
    for k, v in rows:
        print(f"{k:>11}: {v}")
    return 0
