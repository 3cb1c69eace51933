"""Running jobs on a Ray cluster (``[cluster] backend = "ray"``, the ``autoclip[ray]`` extra).

``chunks`` holds what runs on a worker and the stitching (plain numpy/torch), ``ray_backend``
the Ray side (the only module that imports Ray). Workers are stateless: they get a VOD path on
storage every node mounts at the same place, a time range and the model (through the object
store), and return arrays or clip bytes; the head writes every file.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from autoclip.config import Config
from autoclip.errors import ConfigError

if TYPE_CHECKING:
    from autoclip.cluster.ray_backend import RayRunner


def ray_runner(cfg: Config) -> RayRunner:
    """A runner on the configured cluster, or a one-line ConfigError when Ray is not installed."""
    try:
        from autoclip.cluster.ray_backend import RayRunner
    except ModuleNotFoundError as err:
        if err.name and err.name.split(".")[0] == "ray":
            raise ConfigError("[cluster] backend = \"ray\" needs Ray: pip install 'autoclip[ray]' "
                              "(or set backend = \"local\")") from None
        raise
    return RayRunner(cfg)
