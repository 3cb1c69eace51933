"""Chunked scoring without a cluster: the plan, and stitched chunks equal a whole-VOD pass.

These run the worker's side of a chunk (``cluster.chunks.score_range``) in this process, so the
default suite checks the grid and audio alignment that the Ray backend relies on; the real Ray
cluster tests are in test_cluster.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from autoclip.cluster import chunks


def test_plan_covers_the_vod_without_gaps() -> None:
    plan = chunks.plan_chunks(3600.0, 600.0)
    assert plan == [(i * 600.0, (i + 1) * 600.0) for i in range(5)] + [(3000.0, None)]
    assert chunks.plan_chunks(610.0, 600.0) == [(0.0, None)]  # a 10 s tail joins the chunk before
    assert chunks.plan_chunks(800.0, 600.0) == [(0.0, 600.0), (600.0, None)]
    assert chunks.plan_chunks(5.0, 600.0) == [(0.0, None)]


@pytest.fixture(scope="module")
def scored(synth_vod, tmp_path_factory):
    import torch

    from autoclip import config, media
    from autoclip.model import ModelDims, build_model, prepare_for_inference
    from autoclip.registry import LoadedModel
    from autoclip.scoring import score_vod

    torch.set_num_threads(1)
    vod = synth_vod(duration=30.0, highlights=1, visual=0, audio=1, seed=3)
    cfg = config.from_dict({"frames": {"fps": 2, "size": 32}, "model": {"threads": 1}},
                           root=tmp_path_factory.mktemp("chunks"))
    torch.manual_seed(0)
    dims = ModelDims.from_config(cfg)
    loaded = LoadedModel(net=prepare_for_inference(build_model(dims, "none")), dims=dims, meta={}, id="m")
    info = media.probe(vod.path)
    whole = score_vod(vod.path, cfg, loaded, progress=False, info=info)
    return vod, cfg, loaded, info, whole


def _stitched(scored, chunk: float, audio_from_start: bool):
    vod, cfg, loaded, info, _ = scored
    parts = [chunks.score_range(vod.path, cfg, loaded, start=s, end=e, info=info, audio_from_start=audio_from_start)
             for s, e in chunks.plan_chunks(info.duration, chunk)]
    return chunks.stitch(parts[::-1], duration=info.duration, model_id=loaded.id)


def test_stitched_chunks_equal_the_whole_pass(scored) -> None:
    whole = scored[-1]
    got = _stitched(scored, 7.3, audio_from_start=True)  # boundaries off the frame and loudness grids
    np.testing.assert_array_equal(got.times, whole.times)
    assert np.abs(got.scores - whole.scores).max() < 1e-4
    np.testing.assert_allclose(got.loudness_times, whole.loudness_times, atol=1e-9)
    np.testing.assert_allclose(got.loudness_db, whole.loudness_db, atol=1e-4)
    assert got.duration == whole.duration and got.model_id == whole.model_id


def test_range_only_audio_is_on_the_same_frame_grid(scored) -> None:
    """Audio decoded from a seek point: same frames, scores close (AAC noise substitution differs)."""
    whole = scored[-1]
    got = _stitched(scored, 10.0, audio_from_start=False)
    np.testing.assert_array_equal(got.times, whole.times)
    diff = np.abs(got.scores - whole.scores)
    print(f"range-only audio: max score difference {diff.max():.2e}, median {np.median(diff):.2e}")
    assert np.median(diff) < 1e-3
