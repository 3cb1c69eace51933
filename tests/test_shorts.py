"""Vertical shorts from a real VOD: the face cam on top, the game box below, thumbnails, shorts.json."""

from __future__ import annotations

import json
import logging
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from autoclip import config, media, render
from autoclip.selection import Segment

W, H = 640, 360
FACE = (432, 210, 192, 136)  # where the face cam sits in the generated VOD
SEGS = [Segment(2.0, 6.0, 0.7, 4.0), Segment(8.0, 11.0, 0.95, 9.5), Segment(12.0, 14.0, 0.5, 13.0)]


@pytest.fixture(scope="module")
def vod(tmp_path_factory, run_ffmpeg) -> Path:
    """A "game" (testsrc2) with a face cam that changes every frame (the game of life, 8x8-pixel cells)."""
    path = tmp_path_factory.mktemp("shorts") / "stream ストリーム.mp4"
    x, y, w, h = FACE
    run_ffmpeg("-f", "lavfi", "-i", f"testsrc2=size={W}x{H}:rate=30:duration=16",
               "-f", "lavfi", "-i", f"life=size={w // 8}x{h // 8}:rate=30:seed=7:ratio=0.3:mold=0,scale={w}:{h}:flags=neighbor",
               "-f", "lavfi", "-i", "sine=frequency=300:duration=16",
               "-filter_complex", f"[1:v]format=yuv420p[f];[0:v][f]overlay=x={x}:y={y}:shortest=1[v]", "-map", "[v]", "-map", "2:a",
               "-c:v", "libx264", "-preset", "ultrafast", "-crf", "18", "-c:a", "aac", str(path))
    return path


def deployment(tmp_path: Path, **frames) -> config.Config:
    cfg = config.from_dict({"render": {"height": 180, "preset": "ultrafast", "overlay": "", "loudness": "none",
                                       "exports": ["otio"]},
                            "shorts": {"count": 2, "size": "270x480"}, "frames": frames}, root=tmp_path)
    cfg.ensure_dirs()
    return cfg


def frame(path: Path, at: float, size: tuple[int, int] | None = None) -> np.ndarray:
    vf = ["-vf", f"scale={size[0]}:{size[1]}"] if size else []
    out = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-ss", f"{at:.3f}", "-i", str(path), "-frames:v", "1",
                          *vf, "-f", "image2pipe", "-c:v", "png", "-"], capture_output=True, check=True).stdout
    from io import BytesIO

    return np.asarray(Image.open(BytesIO(out)).convert("L"), dtype=np.float64)


def region(img: np.ndarray, box: tuple[int, int, int, int], size: tuple[int, int]) -> np.ndarray:
    x, y, w, h = box
    crop = Image.fromarray(img[y:y + h, x:x + w].astype(np.uint8)).resize(size, Image.BILINEAR)
    return np.asarray(crop, dtype=np.float64)


def similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two grey images (1: the same picture)."""
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


def render_with(vod: Path, cfg: config.Config) -> render.RenderResult:
    info = media.probe(vod)
    return render.render_reel(vod, SEGS, cfg, name="reel", src_fps=info.fps, src_height=info.height,
                              has_audio=info.has_audio, src_width=info.width)


def test_stacked_short_shows_face_cam_over_game(vod, tmp_path):
    res = render_with(vod, deployment(tmp_path, crop=list(FACE)))
    doc = json.loads(res.shorts_file.read_text())
    assert doc["layout"] == "stacked" and doc["size"] == [270, 480]
    assert [(s["file"], s["start"], s["score"]) for s in doc["shorts"]] == [("01.mp4", 8.0, 0.95), ("02.mp4", 2.0, 0.7)]
    assert [p.name for p in res.shorts] == ["01.mp4", "02.mp4"]
    fh, face, game = doc["face_height"], tuple(doc["face_box"]), tuple(doc["game_box"])
    for entry, seg in zip(doc["shorts"], (SEGS[1], SEGS[0]), strict=True):
        short = res.shorts_file.parent / entry["file"]
        info = media.probe(short)
        assert (info.width, info.height) == (270, 480)
        assert abs(info.duration - seg.length) <= 0.05 and entry["duration"] == pytest.approx(seg.length, abs=0.04)
        at = 1.5
        out, src = frame(short, at), frame(vod, seg.start + at)
        top, bottom = out[:fh], out[fh:]
        face_sim = similarity(top, region(src, face, (270, fh)))
        game_sim = similarity(bottom, region(src, game, (270, 480 - fh)))
        assert face_sim > 0.9 and game_sim > 0.9, (face_sim, game_sim)
        # and not merely any picture: the top is not the game, nor the same face cam a second later
        assert similarity(top, region(src, game, (270, fh))) < 0.5
        later = frame(vod, seg.start + at + 1.0)
        assert similarity(top, region(later, face, (270, fh))) < face_sim - 0.1
        with Image.open(short.with_suffix(".jpg")) as thumb:
            assert thumb.format == "JPEG" and thumb.size == (270, 480)
            peak = np.asarray(thumb.convert("L"), dtype=np.float64)
        assert similarity(peak, frame(short, seg.peak - seg.start)) > 0.95  # the peak frame


def test_no_crop_gives_game_layout_with_one_warning(vod, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="autoclip.shorts"):
        res = render_with(vod, deployment(tmp_path))
    warnings = [r for r in caplog.records if r.name == "autoclip.shorts"]
    assert len(warnings) == 1 and "\n" not in warnings[0].getMessage() and "game layout" in warnings[0].getMessage()
    doc = json.loads(res.shorts_file.read_text())
    assert doc["layout"] == "game" and doc["face_box"] is None
    game = tuple(doc["game_box"])
    assert game == (219, 0, 202, 360)  # the centre of the frame at 9:16
    out, src = frame(res.shorts[0], 1.0), frame(vod, SEGS[1].start + 1.0)
    assert similarity(out, region(src, game, (270, 480))) > 0.9


def test_count_zero_and_stale_shorts_removed(vod, tmp_path):
    cfg = deployment(tmp_path, crop=list(FACE))
    cfg.shorts.count = 1
    first = render_with(vod, cfg)
    assert first.shorts_file.exists() and len(first.shorts) == 1
    cfg.shorts.count = 0
    second = render_with(vod, cfg)
    assert second.shorts == [] and second.shorts_file is None
    assert not (cfg.path("reels") / "reel.shorts").exists()
