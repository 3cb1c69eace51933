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
