"""Face-cam detection on generated VODs: real face photos (scikit-image's astronaut, matplotlib's
Grace Hopper) in a moving inset over scrolling gameplay; the box a VOD uses (cropbox)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from autoclip import cropbox, facecam, synthcam


@pytest.fixture(scope="module")
def cam_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("facecams")


def test_detects_inset_and_reports_none_without_one(cam_dir: Path) -> None:
    with_cam = synthcam.make(synthcam.CamSpec(854, 480, "tr", frac=0.2, face="astronaut-wide", border=4, seed=1), cam_dir)
    without = synthcam.make(synthcam.CamSpec(854, 480, None, minimap=True, seed=100), cam_dir)
    det = facecam.detect(with_cam)
    assert synthcam.iou(det.box, synthcam.truth_box(with_cam)) >= 0.8, det
    assert det.confidence >= facecam.MIN_CONFIDENCE
    none = facecam.detect(without)
    assert none.box is None, none


def test_crop_detect_json(cam_dir: Path, tmp_path: Path) -> None:
    vod = synthcam.make(synthcam.CamSpec(854, 480, "tr", frac=0.2, face="astronaut-wide", border=4, seed=1), cam_dir)
    out = subprocess.run([sys.executable, "-m", "autoclip", "crop", str(vod), "--detect", "--json",
                          "--out", str(tmp_path / "p.png")], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert set(doc) == {"box", "confidence", "preview"}
    assert synthcam.iou(tuple(doc["box"]), synthcam.truth_box(vod)) >= 0.8
    assert Path(doc["preview"]).stat().st_size > 0


def test_crop_box_for_sources(make_cfg, tmp_path: Path) -> None:
    vod = tmp_path / "valorant-01.mp4"
    vod.write_bytes(b"x" * 100)
    assert cropbox.crop_box_for(vod, make_cfg()) == (None, "whole")
    assert cropbox.crop_box_for(vod, make_cfg({"frames": {"crop": [1, 2, 30, 40]}})) == ((1, 2, 30, 40), "config")
    prof = {"frames": {"crop": "auto", "profiles": {"v": {"match": "valorant-*", "box": [5, 6, 70, 80]}}}}
    assert cropbox.crop_box_for(vod, make_cfg(prof)) == ((5, 6, 70, 80), "profile")
    auto = make_cfg({"frames": {"crop": "auto"}})
    assert cropbox.crop_box_for(vod, auto, detect=False) == (None, "whole")


@pytest.mark.slow
def test_matrix_iou_at_least_0_8_on_90_percent_and_none_without_a_cam(tmp_path_factory: pytest.TempPathFactory) -> None:
    """The issue's done-means (a) on ``synthcam.matrix()`` (every corner at 480p, 720p, 1080p and
    portrait 720x1280, insets 15-35 % wide, two faces, borders, minimaps; 3 VODs without a face
    cam): IoU >= 0.8 on at least 90 % of the VODs with a face cam, and every VOD without one
    reported as none. The VODs keep the matrix's own length (CamSpec.duration, 12 s at 8 fps)."""
    folder = tmp_path_factory.mktemp("facecam-matrix")
    rows = []
    for spec in synthcam.matrix():
        vod = synthcam.make(spec, folder)
        truth = synthcam.truth_box(vod)
        det = facecam.detect(vod)
        score = synthcam.iou(det.box, truth)
        rows.append((spec, truth, det, score))
        print(f"{spec.name():45s} true {truth!s:22s} found {det.box!s:22s} IoU {score:.2f} "
              f"confidence {det.confidence:.2f} {det.seconds:.1f} s" + ("" if det.box or truth is None else f" ({det.reason})"))
    cams = [r for r in rows if r[1] is not None]
    good = [r for r in cams if r[3] >= 0.8]
    nocam = [r for r in rows if r[1] is None]
    false_boxes = [r for r in nocam if r[2].box is not None]
    print(f"face cam found at IoU >= 0.8 in {len(good)} of {len(cams)} VODs ({len(good) / len(cams):.0%}); "
          f"{len(nocam) - len(false_boxes)} of {len(nocam)} VODs without a face cam reported as none; "
          f"detection {sum(r[2].seconds for r in rows):.1f} s in all")
    misses = [f"{r[0].name()}: IoU {r[3]:.2f}, found {r[2].box} ({r[2].reason})" for r in cams if r[3] < 0.8]
    assert len(good) >= 0.9 * len(cams), "\n".join(misses)
    assert not false_boxes, [(r[0].name(), r[2].box, r[2].confidence, r[2].reason) for r in false_boxes]
