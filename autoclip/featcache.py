"""The feature cache: decoded samples (frames, log-mel windows, times) kept on disk keyed by the
VOD's content fingerprint, the decode settings and the time range, so retraining never decodes
a VOD twice. Entries are written atomically; an unreadable entry is dropped and decoded again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from autoclip import fsutil
from autoclip.config import Config

log = logging.getLogger(__name__)

#: bump when the meaning of cached arrays changes (decoder, mel scaling): old entries are ignored
CACHE_VERSION = 1

Arrays = dict[str, np.ndarray]


class FeatureCache:
    """Decoded samples on disk: ``folder/<fingerprint>/<hash of key>.npz``, written atomically."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.hits = 0
        self.misses = 0

    def path_for(self, fingerprint: str, key: dict[str, Any]) -> Path:
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
        safe = "".join(ch for ch in fingerprint if ch.isalnum() or ch in "-_") or "unknown"
        return self.folder / safe / f"{digest}.npz"

    def get(self, fingerprint: str, key: dict[str, Any]) -> Arrays | None:
        path = self.path_for(fingerprint, key)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
            if str(arrays.pop("_key")) != json.dumps(key, sort_keys=True):
                raise ValueError("key mismatch")
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
            log.warning("ignoring unreadable cache entry %s (%s); decoding again", path, err)
            path.unlink(missing_ok=True)
            return None
        self.hits += 1
        return arrays

    def put(self, fingerprint: str, key: dict[str, Any], arrays: Arrays) -> Path:
        path = self.path_for(fingerprint, key)
        with fsutil.atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez_compressed(f, _key=np.array(json.dumps(key, sort_keys=True)), **arrays)
        return path

    def fetch(self, fingerprint: str, key: dict[str, Any], decode: Callable[[], Arrays]) -> Arrays:
        """The cached arrays for ``key``, decoding and storing them on a miss."""
        arrays = self.get(fingerprint, key)
        if arrays is None:
            self.misses += 1
            arrays = decode()
            self.put(fingerprint, key, arrays)
        return arrays


def decode_settings(cfg: Config, vod: str | Path, fingerprint: str | None = None) -> dict[str, Any]:
    """Everything that changes decoded samples, for cache keys (the crop is this VOD's own box)."""
    from autoclip.cropbox import crop_box_for

    crop = crop_box_for(vod, cfg, fingerprint=fingerprint)[0]
    return {
        "v": CACHE_VERSION,
        "fps": cfg.frames.fps,
        "size": cfg.frames.size,
        "crop": list(crop) if crop else None,
        "audio": cfg.audio.model_dump(),
    }
