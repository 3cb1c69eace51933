"""The audio-first scoring cascade: a real model (with its audio gate) trained on a small generated
VOD, then another generated VOD scored dense and cascade; the frame grid read from packets; ranges
scored like a whole run; the fallbacks to dense."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from autoclip import cascade, cli, config, labels, media, store, synth
from autoclip.features import SampleReader
from autoclip.model import predict
from autoclip.registry import LoadedModel, Registry
from autoclip.scoring import score_range, score_vod
from autoclip.temporal import halo
from autoclip.train import train

TINY = """
[paths]
cache = "{cache}"
[frames]
size = 32
fps = 2
[audio]
n_mels = 16
window = 0.5
[model]
threads = 1
[train]
epochs = 3
batch_size = 8
frames_per_clip = 4
pseudo_max = 0
"""

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[config.Config, LoadedModel, Path]:
    """A deployment whose current model was trained (with its gate) on a 100 s generated VOD."""
    root = tmp_path_factory.mktemp("cascade")
    vod = synth.make_vod(root / "train.mp4", 100, synth.plan_events(100, highlights=4, visual=1, audio=1, seed=5),
                         width=160, height=90, seed=5)
    (root / "config.toml").write_text(TINY.format(cache=root / "cache"))
    cfg = config.load(root / "config.toml")
    conn = store.connect(cfg.path("database"))
    for start, end, label in synth.sample_clips(vod, normal_per_event=1.0, seed=1):
        labels.add_label(conn, vod.path, start, end, label, "import")
    result = train(cfg, conn, pseudo=False, progress=False)
    conn.close()
    loaded = Registry(cfg.path("models")).load(result["model"])
    return cfg, loaded, root / "config.toml"


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> synth.SynthVod:
    """A VOD nobody labelled: two highlights, a picture-only and a sound-only distractor."""
    folder = tmp_path_factory.mktemp("cascade-target")
    events = synth.plan_events(90, highlights=2, visual=1, audio=1, seed=11)
    return synth.make_vod(folder / "target.mp4", 90, events, width=160, height=90, seed=11)


def test_gate_is_trained_saved_and_shown(trained, capsys: pytest.CaptureFixture[str]) -> None:
    cfg, loaded, cfg_path = trained
    gate = loaded.meta["gate"]
    assert 0.0 < gate["threshold"] < 1.0 and gate["val_recall"] >= 0.99 and gate["val_highlight_frames"] > 0
    assert hasattr(loaded.net, "gate")  # reloaded from the same weights file
    assert cli.main(["--config", str(cfg_path), "models", "show", loaded.id]) == 0
    assert f"gate       threshold {gate['threshold']:.4f}" in capsys.readouterr().out


def test_frame_grid_is_the_decoded_grid(target: synth.SynthVod, tmp_path: Path, run_ffmpeg) -> None:
    mkv, ts = tmp_path / "t.mkv", tmp_path / "t.ts"
    run_ffmpeg("-i", str(target.path), "-c", "copy", str(mkv))
    run_ffmpeg("-i", str(target.path), "-c", "copy", str(ts))
    for path in (target.path, mkv, ts):
        info = media.probe(path)
        for start, end in ((0.0, None), (31.3, 47.9)):
            decoded = np.concatenate([b.times for b in media.iter_frames(path, fps=3.0, size=32, info=info,
                                                                         start=start, end=end)])
            assert np.array_equal(media.frame_grid(path, fps=3.0, info=info, start=start, end=end), decoded), path


def test_loud_highlights_are_always_in_stage_2_windows(trained, target: synth.SynthVod) -> None:
    cfg, loaded, _ = trained
    info = media.probe(target.path)
    s1 = cascade.stage1(target.path, cfg, loaded, info, 0.0, None)
    windows = cascade.candidate_windows(s1.times, s1.gate, loaded.meta["gate"]["threshold"], cfg, 0.0, None)
    for e in target.highlights():  # the loud ones (every planted highlight is)
        inside = windows.contains(s1.times[(s1.times >= e.start) & (s1.times <= e.end)])
        assert inside.all(), f"{e} is loud but not all of it is decoded: {windows.spans}"
    assert windows.seconds < 0.6 * target.duration  # calm stretches are not decoded

    cascade_scores = score_vod(target.path, cfg, loaded, progress=False, info=info)
    dense = score_range(target.path, cfg, loaded, mode="dense", progress=False, info=info)
    assert np.array_equal(cascade_scores.times, dense.times)
    stats = cascade_scores.stats
    assert stats["mode"] == "cascade" and stats["stage2_fraction"] == pytest.approx(windows.seconds / info.duration, abs=1e-3)
    inside = windows.contains(dense.times)
    # a temporal model's last context frames at a window's edge see the edge, not their
    # neighbours (stage 2 reads only the context beyond cascade.EXTRA_MARGIN): every other
    # frame in a window scores exactly as dense scoring scores it
    reach = halo(loaded.net) / cfg.frames.fps if loaded.net.dims.context else 0.0
    full = inside & ~np.any([np.abs(dense.times - edge) < reach for span in windows.spans for edge in span], axis=0)
    assert full.sum() > 0.5 * inside.sum()
    np.testing.assert_allclose(cascade_scores.scores[full], dense.scores[full], atol=1e-4)
    assert cascade_scores.scores[~inside].max() < cfg.selection.low_threshold
    np.testing.assert_array_equal(cascade_scores.loudness_db, dense.loudness_db)


def test_dense_mode_gives_one_pass_over_the_whole_vod(trained, target: synth.SynthVod, make_cfg) -> None:
    cfg, loaded, _ = trained
    dense_cfg = config.from_dict({**cfg.model_dump(mode="json"), "scoring": {"mode": "dense"}}, root=cfg.root)
    got = score_vod(target.path, dense_cfg, loaded, progress=False)
    reader = SampleReader(target.path, dense_cfg)  # every frame, then one pass of the model over all
    times, frames, mels = [], [], []
    for batch in reader:
        times.append(batch.times)
        frames.append(batch.frames)
        mels.append(batch.mels)
    whole = predict(loaded.net, np.concatenate(frames), np.concatenate(mels))
    assert got.stats["mode"] == "dense"
    assert np.array_equal(got.times, np.concatenate(times))
    np.testing.assert_allclose(got.scores, whole, atol=1e-6)
    assert np.array_equal(got.loudness_db, reader.loudness_track[1])


@pytest.mark.parametrize("mode", ["cascade", "dense"])
def test_a_range_scores_like_the_whole_run(trained, target: synth.SynthVod, mode: str) -> None:
    cfg, loaded, _ = trained
    info = media.probe(target.path)
    whole = score_range(target.path, cfg, loaded, mode=mode, progress=False, info=info)
    parts = [score_range(target.path, cfg, loaded, start=a, end=b, mode=mode, progress=False, info=info)
             for a, b in ((0.0, 37.3), (37.3, None))]
    assert np.array_equal(np.concatenate([p.times for p in parts]), whole.times)
    np.testing.assert_allclose(np.concatenate([p.scores for p in parts]), whole.scores, atol=1e-4)
    assert all(p.stats["mode"] == mode for p in parts)


def test_no_audio_falls_back_to_dense_with_one_log_line(trained, tmp_path: Path,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    cfg, loaded, _ = trained
    events = synth.plan_events(30, highlights=1, seed=3)
    silent = synth.make_vod(tmp_path / "silent.mp4", 30, events, width=160, height=90, seed=3, audio=False)
    with caplog.at_level(logging.INFO, logger="autoclip"):
        got = score_vod(silent.path, cfg, loaded, progress=False)
    lines = [r.getMessage() for r in caplog.records if "no audio" in r.getMessage()]
    assert len(lines) == 1 and "dense" in lines[0]
    assert got.stats["mode"] == "dense" and len(got.times) == 60


def test_gate_threshold_counts_frames_inside_stage_2_windows() -> None:
    """A validation frame counts as decoded when a passing gate value lies within the window
    margin in the same labelled range, as candidate_windows decodes around passing times."""
    from autoclip.gate import covered

    prob = np.array([0.1, 0.9, 0.2, 0.1, 0.1, 0.3, 0.05], dtype=np.float32)
    seg = np.array([0, 0, 0, 0, 0, 1, 1])
    np.testing.assert_allclose(covered(prob, seg, 0), prob)
    # two frames each side: the 0.9 covers frames 0-3; the range ends at frame 4, so 0.3 (range 1)
    # covers frames 5-6 only
    np.testing.assert_allclose(covered(prob, seg, 2), [0.9, 0.9, 0.9, 0.9, 0.2, 0.3, 0.3], rtol=1e-6)
    cfg = config.from_dict({"selection": {"smooth": 2.0}, "frames": {"fps": 4.0}})
    assert cascade.margin_frames(cfg) == 6  # (2.0 / 2 + 0.5) s x 4 fps


def test_gate_finds_half_of_an_answered_range_and_all_of_a_drawn_one() -> None:
    """A reviewer's "highlight" holds for most of a queued range, not its padding, so half of it
    must be in stage 2's windows; a range a person drew must be there whole."""
    from autoclip.gate import range_values

    cover = np.array([0.9, 0.8, 0.1, 0.05, 0.7, 0.6, 0.5, 0.2])
    clip = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    # answered item 0: two of its four frames pass at 0.8; drawn range 1 needs every frame: 0.2
    np.testing.assert_allclose(range_values(cover, clip, {0: 0.5, 1: 1.0}), [0.2, 0.8])
    np.testing.assert_allclose(range_values(cover, clip, {0: 1.0, 1: 1.0}), [0.05, 0.2])
    # an odd length rounds up: 3 of 5 frames
    np.testing.assert_allclose(range_values(np.array([0.9, 0.5, 0.4, 0.3, 0.1]), np.zeros(5, int), {0: 0.5}), [0.4])


def test_fewer_validation_ranges_lower_the_gate_threshold() -> None:
    """One validation highlight says little about the ones the gate has not seen: more slack."""
    from autoclip.gate import FEW_RANGES, SLACK, choose_threshold

    logit = lambda p: float(np.log(p / (1 - p)))  # noqa: E731
    many = np.full(FEW_RANGES, 0.9)
    thr, slack = choose_threshold(many)
    assert slack == SLACK and logit(thr) == pytest.approx(logit(0.9) - SLACK)
    one_thr, one_slack = choose_threshold(np.array([0.9]))
    assert one_slack > slack and one_thr < thr
    # the lowest range decides while fewer than 1 / (1 - RECALL) ranges are there
    assert choose_threshold(np.array([0.5, 0.9, 0.99]))[0] == pytest.approx(choose_threshold(np.full(3, 0.5))[0])


def test_the_gate_runs_on_every_other_frame_and_fills_the_rest() -> None:
    from autoclip.gate import evaluated, spread, strided_cover

    fps = 4.0
    times = np.arange(10) / fps + 0.01
    keep = evaluated(times, fps)
    assert keep.tolist() == [True, False] * 5
    # a range starting on an odd bin evaluates its first frame; later frames follow the file's bins
    assert evaluated(times[3:], fps).tolist() == [True, True, False, True, False, True, False]
    # sparse frames (a 2 fps source): never two skipped in a row, so none is skipped here
    assert evaluated(np.arange(6) / 2.0 + 0.25, fps).all()
    filled = spread(np.array([0.1, 0.8, 0.2, 0.1, 0.6], dtype=np.float32), keep)
    np.testing.assert_allclose(filled, [0.1, 0.8, 0.8, 0.8, 0.2, 0.2, 0.1, 0.6, 0.6, 0.6])
    # calibration: both phases tried, the worse coverage kept; ranges never share values
    prob = np.array([0.9, 0.1, 0.1, 0.1, 0.7, 0.1], dtype=np.float32)
    seg = np.array([0, 0, 0, 1, 1, 1])
    np.testing.assert_allclose(strided_cover(prob, seg, 0), [0.9, 0.1, 0.1, 0.1, 0.1, 0.1], rtol=1e-6)
    np.testing.assert_allclose(strided_cover(prob, seg, 1), [0.9, 0.9, 0.1, 0.1, 0.1, 0.1], rtol=1e-6)


def test_overlapped_stages_score_like_sequential_ones(trained, target: synth.SynthVod, monkeypatch) -> None:
    """Stage 2 starting on the windows stage 1 has finished (small stage-1 batches, so several
    groups of windows) gives the scores, windows and loudness of stage 1 run to its end first."""
    from autoclip import gate

    cfg, loaded, _ = trained
    info = media.probe(target.path)
    monkeypatch.setattr(cascade, "STAGE1_BATCH", 8)  # 8 evaluated times: a group every 8 s here
    threshold = gate.threshold(loaded.meta)
    s1 = cascade.stage1(target.path, cfg, loaded, info, 0.0, None)
    whole = cascade.candidate_windows(s1.times, s1.gate, threshold, cfg, 0.0, None)
    groups = list(cascade._windows_as_found(cascade._stage1_steps(target.path, cfg, loaded, info, 0.0, None),
                                            threshold, cfg, 0.0, None))
    assert sum(1 for new, _ in groups if new) >= 2  # found in more than one go
    assert [w for new, _ in groups for w in new] == whole.spans
    assert np.array_equal(groups[-1][1].gate, s1.gate)
    # widened by 2 s, windows MERGE_GAP apart meet: reads wait for the next window
    for pad in (0.25, 2.0):
        reads = list(cascade._reads((new for new, _ in groups), pad, info.duration))
        assert reads == cascade._padded(whole, pad, info.duration).spans
    assert len(cascade._padded(whole, 2.0, info.duration).spans) < len(whole.spans)  # some did meet
    runs = {overlap: cascade.score_cascade(target.path, cfg, loaded, info, threshold=threshold, overlap=overlap)
            for overlap in (True, False)}
    assert runs[True].stats["windows"] == runs[False].stats["windows"] == len(whole.spans)
    assert np.array_equal(runs[True].times, runs[False].times)
    assert np.array_equal(runs[True].scores, runs[False].scores)
    assert np.array_equal(runs[True].loudness[1], runs[False].loudness[1])
