"""Shared fixtures: generated media (cached per session) and configs rooted in a temp folder.

Media is made by ffmpeg's lavfi sources, small (320x180 unless a test needs more), never
downloaded. Fixtures here stay generic; area-specific media lives in the area's test module.
"""

from __future__ import annotations

import logging
import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from autoclip import config, synth


class _ErrorRecords(logging.Handler):
    """Keeps every ERROR (or worse) record logged while a test runs."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(autouse=True)
def fail_on_unexpected_errors(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test that logs an ERROR it did not declare fails. Declare expected ones with
    ``@pytest.mark.expect_errors(PATTERN, ...)`` (regular expressions searched in the message;
    no pattern: any ERROR is expected)."""
    handler = _ErrorRecords()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
    marker = request.node.get_closest_marker("expect_errors")
    patterns = marker.args if marker else ()

    def expected(record: logging.LogRecord) -> bool:
        return marker is not None and (not patterns or any(re.search(p, record.getMessage()) for p in patterns))

    unexpected = [r for r in handler.records if not expected(r)]
    if unexpected:
        lines = "\n".join(f"  {r.levelname} {r.name}: {r.getMessage()[:300]}" for r in unexpected[:10])
        pytest.fail(f"logged {len(unexpected)} ERROR record(s) it did not expect "
                    f"(mark the test @pytest.mark.expect_errors(PATTERN) if they are the point):\n{lines}",
                    pytrace=False)


def ffmpeg(*args: str) -> None:
    """Run ffmpeg quietly with ``args`` (overwriting outputs); fail the test on error."""
    cmd = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"ffmpeg {' '.join(args)} failed: {proc.stderr.strip()[-500:]}")


@pytest.fixture(scope="session")
def run_ffmpeg() -> Callable[..., None]:
    """``run_ffmpeg(*args)``: ffmpeg with ``args``, quiet, overwriting; raises on failure."""
    return ffmpeg


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A session-wide folder for generated media."""
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="session")
def synth_vod(media_dir: Path) -> Callable[..., synth.SynthVod]:
    """Factory: ``synth_vod(duration=20, highlights=1, visual=0, audio=0, seed=0, suffix=".mp4", **make_vod_kw)``.

    Each distinct set of arguments is generated once per session and shared (treat it as read-only).
    """
    cache: dict[tuple, synth.SynthVod] = {}

    def make(duration: float = 20.0, highlights: int = 1, visual: int = 0, audio: int = 0, seed: int = 0,
             suffix: str = ".mp4", **kw: Any) -> synth.SynthVod:
        key = (duration, highlights, visual, audio, seed, suffix, tuple(sorted(kw.items())))
        if key not in cache:
            events = synth.plan_events(duration, highlights=highlights, visual=visual, audio=audio, seed=seed)
            path = media_dir / f"synth-{len(cache)}{suffix}"
            cache[key] = synth.make_vod(path, duration, events, seed=seed, **kw)
        return cache[key]

    return make


@pytest.fixture
def make_cfg(tmp_path: Path) -> Callable[..., config.Config]:
    """Factory: ``make_cfg({"frames": {"fps": 2}})`` -> a validated Config rooted in ``tmp_path``."""

    def make(data: dict[str, Any] | None = None) -> config.Config:
        return config.from_dict(data or {}, root=tmp_path)

    return make


@pytest.fixture
def cfg(make_cfg: Callable[..., config.Config]) -> config.Config:
    """The default configuration with every path inside ``tmp_path``."""
    return make_cfg()


@pytest.fixture
def one_torch_thread() -> Any:
    """Run the test with one torch thread (tests share 2 cores with ffmpeg children)."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="session")
def install_untrained_model() -> Callable[[Path], str]:
    """``install_untrained_model(config_path) -> model id``: a random-weight model of the config's
    shape, saved in its registry and made current (enough to run scoring and rendering)."""

    def install(cfg_path: Path) -> str:
        import torch

        from autoclip.model import ModelDims, build_model
        from autoclip.registry import Registry

        torch.manual_seed(0)
        cfg = config.load(cfg_path)
        dims = ModelDims.from_config(cfg)
        reg = Registry(cfg.path("models"))
        mid = reg.save(build_model(dims, "none"), dims, label_hash="test")
        reg.promote(mid)
        return mid

    return install


class _TouchOnUnpickle:
    """Unpickling this creates a file: proof that code ran."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (Path.touch, (Path(self.marker),))


@pytest.fixture(scope="session")
def malicious_payload() -> Callable[[Path], object]:
    """``malicious_payload(marker)``: an object whose unpickling touches ``marker``."""
    return lambda marker: _TouchOnUnpickle(str(marker))
