"""Where a job's heavy work runs: the job-runner interface and its two backends.

``local`` (the default) does everything in this process, as autoclip always has: the daemon
runs each job as a child process (``autoclip process``) whose runner is this one. ``ray``
(``[cluster] backend = "ray"``, the ``autoclip[ray]`` extra) sends the same work to a Ray
cluster: scoring as chunks of one VOD in parallel, rendering as one task per reel clip, and
with ``train_on_cluster`` the retraining fit as one task. Either way the process that asked
(on the head machine) stays the only writer of the database, job folders, reels and registry.
Ray is imported only inside ``autoclip.cluster.ray_backend``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from autoclip.config import Config

if TYPE_CHECKING:
    from autoclip.fitting import FitResult, SplitData
    from autoclip.media import ProbeInfo
    from autoclip.registry import LoadedModel
    from autoclip.render import ClipSettings
    from autoclip.scoring import Scores
    from autoclip.selection import Segment

log = logging.getLogger(__name__)


class Runner(Protocol):
    """What a backend does for a job. Every method returns data; the caller writes the files."""

    name: str

    def check_access(self, vod: Path) -> None:
        """Raise a one-line MediaError if the machines doing the work cannot read ``vod``."""

    def score(self, vod: Path, cfg: Config, loaded: LoadedModel, *, info: ProbeInfo,
              progress: bool = True) -> Scores:
        """Per-frame scores of the whole VOD (the same grid and values as a one-machine run)."""

    def render_clips(self, vod: Path, segments: Sequence[Segment], st: ClipSettings, work: Path,
                     gains: dict[int, Any] | None = None) -> list[Path]:
        """Encode each segment into ``work`` (in order, with its loudness gain); the caller joins
        and publishes them."""

    def fit(self, net: Any, train: SplitData, val: SplitData, cfg: Config, *, pretrained: bool,
            progress: bool) -> FitResult:
        """Train ``net`` in place (early stopping on validation AP)."""

    def status(self) -> dict[str, Any]:
        """What `autoclip status` shows about where jobs run."""

    def close(self) -> None: ...


class LocalRunner:
    """Everything in this process (the default; no Ray needed)."""

    name = "local"

    def check_access(self, vod: Path) -> None:
        return None  # the caller has probed it already

    def score(self, vod: Path, cfg: Config, loaded: LoadedModel, *, info: ProbeInfo,
              progress: bool = True) -> Scores:
        from autoclip.scoring import score_vod

        return score_vod(vod, cfg, loaded, progress=progress, info=info)

    def render_clips(self, vod: Path, segments: Sequence[Segment], st: ClipSettings, work: Path,
                     gains: dict[int, Any] | None = None) -> list[Path]:
        from autoclip.render import render_clips

        return render_clips(vod, segments, st, work, gains)

    def fit(self, net: Any, train: SplitData, val: SplitData, cfg: Config, *, pretrained: bool,
            progress: bool) -> FitResult:
        from autoclip.fitting import fit

        return fit(net, train, val, cfg, pretrained=pretrained, progress=progress)

    def status(self) -> dict[str, Any]:
        return {"backend": "local", "cpus": os.cpu_count()}

    def close(self) -> None:
        return None


def get_runner(cfg: Config) -> Runner:
    """The runner of ``[cluster] backend`` (Ray is joined on first use of a ``ray`` runner)."""
    if cfg.cluster.backend == "local":
        return LocalRunner()
    from autoclip.cluster import ray_runner

    return ray_runner(cfg)
