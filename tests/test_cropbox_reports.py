"""The face-cam box reports: `status` lists the VODs whose face cam was not found, `label stats`
counts the labelled clips per box source and `models show` prints the counts recorded at training.
Detections are stored through ``cropbox.save`` (no detection runs here: it must never run)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from autoclip import cli, config, cropbox, fsutil, labels, store
from autoclip.registry import METRICS, Registry

CONFIG = """
[frames]
crop = {crop}
[frames.profiles.valorant]
match = "valorant-*"
box = [5, 6, 70, 80]
"""


class Deployment:
    def __init__(self, root: Path, crop: str = '"auto"') -> None:
        self.root = root
        self.cfg_path = root / "config.toml"
        self.set_crop(crop)
        self.conn = store.connect(self.cfg.path("database"))

    def set_crop(self, crop: str) -> None:
        self.cfg_path.write_text(CONFIG.format(crop=crop))
        self.cfg = config.load(self.cfg_path)

    def vod(self, name: str, clips: int = 1) -> Path:
        path = self.root / name
        path.write_bytes(name.encode() * 50)
        for i in range(clips):
            labels.add_label(self.conn, path, 10.0 * i, 10.0 * i + 5, "highlight" if i % 2 else "normal", "cli")
        return path

    def store(self, vod: Path, box: tuple[int, int, int, int] | None, confidence: float, reason: str = "",
              detected: float | None = None) -> None:
        fp = fsutil.fingerprint(vod)
        cropbox.save(self.conn, fp, vod, cropbox.CropChoice(box, "detected" if box else "whole", confidence, reason))
        if detected is not None:
            with store.transaction(self.conn):
                self.conn.execute("UPDATE facecams SET detected = ? WHERE fingerprint = ?", (detected, fp))

    def cli(self, capsys: pytest.CaptureFixture[str], *args: str) -> str:
        assert cli.main(["--config", str(self.cfg_path), *args]) == 0
        return capsys.readouterr().out


@pytest.fixture
def dep(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Deployment:
    def no_detection(*args: object, **kw: object) -> None:
        raise AssertionError("a report ran face detection")

    monkeypatch.setattr(cropbox, "_detect_and_store", no_detection)
    return Deployment(tmp_path)


def test_clip_sources_count_stored_detections_only(dep: Deployment) -> None:
    cam = dep.vod("cam.mp4", clips=3)
    nocam = dep.vod("nocam.mp4", clips=2)
    dep.vod("fresh.mp4", clips=4)  # crop = "auto", never detected
    dep.vod("valorant-01.mp4", clips=1)  # a profile matches: no detection needed
    dep.store(cam, (600, 20, 200, 150), 0.93)
    dep.store(nocam, None, 0.31, "no steady inset")
    rows = labels.list_labels(dep.conn)
    assert cropbox.clip_sources(rows, dep.cfg) == {"profile": 1, "config": 0, "detected": 3, "whole": 2,
                                                   "undetected": 4}
    assert cropbox.clip_sources([], dep.cfg) == dict.fromkeys(cropbox.COUNTED, 0)
    dep.set_crop("[1, 2, 30, 40]")  # a fixed crop: stored detections no longer matter
    assert cropbox.clip_sources(rows, dep.cfg, dep.conn) == {"profile": 1, "config": 9, "detected": 0, "whole": 0,
                                                             "undetected": 0}
    assert cropbox.describe_sources(cropbox.clip_sources(rows, dep.cfg)) == "1 crop profile, 9 [frames] crop"


def test_label_stats_reports_box_sources(dep: Deployment, capsys: pytest.CaptureFixture[str]) -> None:
    dep.store(dep.vod("cam.mp4", clips=3), (600, 20, 200, 150), 0.93)
    dep.store(dep.vod("nocam.mp4", clips=2), None, 0.31, "no steady inset")
    dep.vod("fresh.mp4", clips=1)
    doc = json.loads(dep.cli(capsys, "label", "stats", "--json"))
    assert doc["crops"] == {"profile": 0, "config": 0, "detected": 3, "whole": 2, "undetected": 1}
    assert doc["labels"] == 6
    out = dep.cli(capsys, "label", "stats")
    assert "face-cam box: 3 detected face cam, 2 whole frame, 1 not detected yet" in out
    assert dep.conn.execute("SELECT COUNT(*) FROM facecams").fetchone()[0] == 2  # nothing detected or stored


def test_status_lists_vods_without_a_face_cam(dep: Deployment, capsys: pytest.CaptureFixture[str]) -> None:
    assert json.loads(dep.cli(capsys, "status", "--json"))["facecam_not_found"] == []
    assert "face cam" not in dep.cli(capsys, "status")
    dep.store(dep.vod("cam.mp4", clips=0), (600, 20, 200, 150), 0.93, detected=1000.0)
    dep.store(dep.vod("valorant-02.mp4", clips=0), None, 0.2, "too dark", detected=9000.0)  # its profile applies
    for i in range(12):
        dep.store(dep.vod(f"nocam-{i:02d}.mp4", clips=0), None, 0.1 + i / 100, f"reason {i}", detected=2000.0 + i)
    st = json.loads(dep.cli(capsys, "status", "--json"))
    got = st["facecam_not_found"]
    assert st["facecam_not_found_count"] == 12
    assert [v["name"] for v in got] == [f"nocam-{i:02d}.mp4" for i in range(11, -1, -1)]  # newest first
    assert got[0]["confidence"] == pytest.approx(0.21) and got[0]["reason"] == "reason 11"
    assert got[0]["detected"] == 2011.0 and got[0]["vod"] == str(dep.root / "nocam-11.mp4")
    out = dep.cli(capsys, "status")
    assert "not found with confidence in 12 VOD(s)" in out
    assert "nocam-11.mp4: confidence 0.21, reason 11 (" in out and "nocam-02.mp4" in out
    assert "nocam-01.mp4" not in out and "... and 2 more" in out
    assert "valorant-02" not in out and "cam.mp4:" not in out
    dep.set_crop("[1, 2, 30, 40]")  # no VOD uses a detection now
    assert json.loads(dep.cli(capsys, "status", "--json"))["facecam_not_found"] == []


def test_models_show_prints_recorded_box_sources(dep: Deployment, capsys: pytest.CaptureFixture[str],
                                                 install_untrained_model) -> None:
    mid = install_untrained_model(dep.cfg_path)
    assert "face cam   not recorded" in dep.cli(capsys, "models", "show", mid)
    path = Registry(dep.cfg.path("models")).root / mid / METRICS
    metrics = json.loads(path.read_text()) if path.exists() else {}
    metrics["crops"] = {"profile": 0, "config": 0, "detected": 40, "whole": 6, "undetected": 0}
    path.write_text(json.dumps(metrics))
    out = dep.cli(capsys, "models", "show", mid)
    assert "face cam   40 detected face cam, 6 whole frame (clips per box source)" in out
    assert "checksum ok" in out
