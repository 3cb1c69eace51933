"""The Ray runner: scoring chunks, reel clips and (optionally) the retraining fit as Ray tasks.

The process that makes a ``RayRunner`` is a Ray driver on the head machine (the daemon's job
child, or `autoclip process` / `score` run by hand). It joins the cluster on first use, checks
that every node can read the VOD, puts the model into the object store once per job (each
worker process builds the network once per model version and keeps it), and collects arrays
and clip bytes. Tasks are retried by Ray when their worker or node dies (``[cluster] retries``);
an error raised by the work itself (a bad file) is not retried and fails the job with its reason.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ray
from ray.exceptions import RayError, RayTaskError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from autoclip.cluster import chunks
from autoclip.config import Config
from autoclip.errors import AutoclipError, ClusterError, MediaError

if TYPE_CHECKING:
    from autoclip.fitting import FitResult, SplitData
    from autoclip.media import ProbeInfo
    from autoclip.registry import LoadedModel
    from autoclip.render import ClipSettings
    from autoclip.scoring import Scores
    from autoclip.selection import Segment

log = logging.getLogger(__name__)

#: seconds between progress lines while chunks run
PROGRESS_EVERY = 30.0


@ray.remote
def _score_chunk(path: str, cfg: Config, box: dict[str, Any], start: float, end: float | None,
                 info: ProbeInfo, audio_from_start: bool) -> chunks.ChunkScores:
    loaded = chunks.cached_model(box["id"], lambda: ray.get(box["ref"]))
    part = chunks.score_range(path, cfg, loaded, start=start, end=end, info=info, audio_from_start=audio_from_start)
    part.node = ray.get_runtime_context().get_node_id()
    return part


@ray.remote
def _can_read(path: str, size: int) -> str:
    return chunks.can_read(path, size)


@ray.remote
def _clip(vod: str, segment: Segment, index: int, st: ClipSettings, gain: Any) -> bytes:
    return chunks.clip_bytes(vod, segment, index, st, gain)


@ray.remote
def _fit(dims: dict[str, Any], state: dict[str, Any], rng: Any, train: SplitData, val: SplitData, cfg: Config,
         pretrained: bool) -> tuple[dict[str, Any], FitResult]:
    import numpy as np
    import torch

    from autoclip.fitting import fit
    from autoclip.model import ModelDims, build_model, set_threads

    set_threads(cfg.model.threads)
    net = build_model(ModelDims.from_dict(dims), "none")
    net.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state.items()})
    torch.set_rng_state(torch.from_numpy(np.array(rng)))  # dropout draws as the head's would: same result
    result = fit(net, train, val, cfg, pretrained=pretrained, progress=False)
    return {k: v.detach().cpu().numpy() for k, v in net.state_dict().items()}, result


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:300] if text else type(err).__name__


class RayRunner:
    """Jobs' heavy work on the Ray cluster at ``[cluster] address``."""

    name = "ray"

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.c = cfg.cluster
        #: torch threads in a task: the CPUs it reserved, not the head's [model] threads
        self.task_threads = max(1, round(self.c.num_cpus))
        #: per-chunk timings of the last ``score`` (start, end, frames, node, total, model seconds)
        self.last_chunks: list[dict[str, Any]] = []
        self._joined = False
        self._stdout: Any = None

    # -- the cluster ---------------------------------------------------------------------
    def _connect(self) -> None:
        if ray.is_initialized():
            return
        try:
            ray.init(address=self.c.address, namespace="autoclip", logging_level=logging.WARNING,
                     log_to_driver=False, configure_logging=False)
        except (ConnectionError, RuntimeError, ValueError) as err:
            raise ClusterError(f"cannot join the Ray cluster at {self.c.address!r} ({_first_line(err)}): start it with "
                               "`ray start --head` or fix [cluster] address", code="cluster_down") from None
        self._joined = True
        # Ray prints cluster error messages (e.g. "Raylet is terminated" when a node dies) to the
        # driver's stdout, which carries the --json result: send them to stderr while joined
        self._stdout, sys.stdout = sys.stdout, sys.stderr
        log.info("joined the Ray cluster at %s: %s CPUs", self.c.address, ray.cluster_resources().get("CPU", 0))

    def _options(self, **extra: Any) -> dict[str, Any]:
        return dict(num_cpus=self.c.num_cpus, num_gpus=self.c.num_gpus, max_retries=self.c.retries,
                    retry_exceptions=False, **extra)

    def _get(self, ref: Any, what: str) -> Any:
        """``ray.get``, with task failures turned into the job's one-line reason."""
        try:
            return ray.get(ref)
        except RayTaskError as err:
            cause = getattr(err, "cause", None)
            if isinstance(cause, AutoclipError):
                raise cause from None
            raise ClusterError(f"{what} failed: {_first_line(cause or err)}", code="task_failed") from None
        except RayError as err:  # the worker or node died on every try
            raise ClusterError(f"{what} failed on every try ({self.c.retries + 1}): {_first_line(err)}",
                               code="task_failed") from None

    def _wait_all(self, refs: list[Any], what: Any, on_done: Any) -> list[Any]:
        """Results of ``refs`` in order; ``on_done(i, result)`` as each finishes. The first failure
        cancels the rest and raises."""
        index = {r: i for i, r in enumerate(refs)}
        out: list[Any] = [None] * len(refs)
        pending = list(refs)
        try:
            while pending:
                done, pending = ray.wait(pending, num_returns=1, timeout=PROGRESS_EVERY)
                for r in done:
                    i = index[r]
                    out[i] = self._get(r, what(i))
                    on_done(i, out[i])
        except BaseException:
            for r in pending:
                ray.cancel(r, force=True)
            raise
        return out

    def _nodes(self) -> list[dict[str, Any]]:
        return [n for n in ray.nodes() if n.get("Alive") and n.get("Resources", {}).get("CPU", 0) > 0]

    # -- the interface -------------------------------------------------------------------
    def check_access(self, vod: Path) -> None:
        """Every node with CPUs must read ``vod`` as the same file, or the job fails with one line."""
        self._connect()
        size = vod.stat().st_size
        nodes = self._nodes()
        refs = [_can_read.options(num_cpus=0, max_retries=0,
                                  scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)
                                  ).remote(str(vod), size) for n in nodes]
        ready, late = ray.wait(refs, num_returns=len(refs), timeout=self.c.connect_timeout)
        for ref, node in zip(refs, nodes, strict=True):
            where = f"node {node.get('NodeManagerAddress')} ({node['NodeID'][:8]})"
            if ref in late:
                ray.cancel(ref, force=True)
                raise ClusterError(f"{where} did not answer the VOD-access check within {self.c.connect_timeout:.0f} s",
                                   code="cluster_busy")
            try:
                why = ray.get(ref)
            except RayError:
                continue  # the node went away meanwhile: it gets no chunks
            if why:
                raise MediaError(f"{vod.name}: {where} cannot read {vod} ({why}); put VODs on storage every node "
                                 "mounts at the same path", code="unreachable")

    def score(self, vod: Path, cfg: Config, loaded: LoadedModel, *, info: ProbeInfo,
              progress: bool = True) -> Scores:
        from autoclip.timefmt import hms

        self._connect()
        t0 = time.monotonic()
        plan = chunks.plan_chunks(info.duration, self.c.chunk)
        box = {"id": loaded.id, "ref": ray.put(chunks.model_payload(loaded))}
        task_cfg = cfg.model_copy(deep=True)
        task_cfg.model.threads = self.task_threads
        refs = [_score_chunk.options(**self._options()).remote(str(vod), task_cfg, box, s, e, info,
                                                               self.c.audio_from_start) for s, e in plan]

        def what(i: int) -> str:
            s, e = plan[i]
            return f"scoring chunk {i + 1}/{len(plan)} ({hms(s)}-{hms(info.duration if e is None else e)})"

        finished = [0]

        def on_done(i: int, part: chunks.ChunkScores) -> None:
            finished[0] += 1
            log.info("scoring %s: chunk %d/%d done (%d%%) in %.1f s on node %s", vod.name, i + 1, len(plan),
                     100 * finished[0] // len(plan), part.seconds.get("total", 0.0), part.node[:8])

        parts = self._wait_all(refs, what, on_done)
        scores = chunks.stitch(parts, duration=info.duration, model_id=loaded.id)
        elapsed = time.monotonic() - t0
        scores.seconds = {"total": elapsed}
        self.last_chunks = [{"start": p.start, "end": p.end, "frames": len(p.times), "node": p.node,
                             **p.seconds} for p in parts]
        log.info("scored %s: %d frames in %.1f s (%.1fx real time) as %d chunks on the cluster, model %s", vod.name,
                 len(scores.times), elapsed, info.duration / max(elapsed, 1e-6), len(plan), loaded.id)
        return scores

    def render_clips(self, vod: Path, segments: Sequence[Segment], st: ClipSettings, work: Path,
                     gains: dict[int, Any] | None = None) -> list[Path]:
        from autoclip.render import clip_file_name

        self._connect()
        refs = [_clip.options(**self._options()).remote(str(vod), seg, i, st, (gains or {}).get(i))
                for i, seg in enumerate(segments, 1)]
        paths = [work / clip_file_name(i, seg) for i, seg in enumerate(segments, 1)]

        def on_done(i: int, data: bytes) -> None:
            paths[i].write_bytes(data)
            log.info("clip %d/%d rendered on the cluster (%d kB)", i + 1, len(segments), len(data) // 1024)

        self._wait_all(refs, lambda i: f"rendering clip {i + 1}/{len(segments)}", on_done)
        return paths

    def fit(self, net: Any, train: SplitData, val: SplitData, cfg: Config, *, pretrained: bool,
            progress: bool) -> FitResult:
        import torch

        self._connect()
        state = {k: v.detach().cpu().numpy() for k, v in net.state_dict().items()}
        task_cfg = cfg.model_copy(deep=True)
        task_cfg.model.threads = self.task_threads
        log.info("training on the cluster (one task: %s CPUs, %s GPUs)", self.c.num_cpus, self.c.num_gpus)
        rng = torch.get_rng_state().numpy()
        ref = _fit.options(**self._options()).remote(net.dims.to_dict(), state, rng, train, val, task_cfg, pretrained)
        new_state, result = self._get(ref, "training on the cluster")
        net.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in new_state.items()})
        return result

    def status(self) -> dict[str, Any]:
        try:
            self._connect()
        except ClusterError as err:
            return {"backend": "ray", "address": self.c.address, "error": str(err)}
        total, free = ray.cluster_resources(), ray.available_resources()
        nodes = [{"id": n["NodeID"][:12], "address": n.get("NodeManagerAddress"), "alive": bool(n.get("Alive")),
                  "cpus": n.get("Resources", {}).get("CPU", 0.0), "gpus": n.get("Resources", {}).get("GPU", 0.0)}
                 for n in ray.nodes()]
        return {"backend": "ray", "address": self.c.address, "nodes": nodes,
                "cpus_total": total.get("CPU", 0.0), "cpus_free": free.get("CPU", 0.0),
                "gpus_total": total.get("GPU", 0.0), "gpus_free": free.get("GPU", 0.0)}

    def close(self) -> None:
        if self._joined and ray.is_initialized():
            t0 = time.monotonic()
            ray.shutdown()
            log.debug("left the Ray cluster in %.1f s", time.monotonic() - t0)
        if self._stdout is not None:
            sys.stdout, self._stdout = self._stdout, None
        self._joined = False
