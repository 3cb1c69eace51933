"""The model registry: one folder per model, an atomic ``current`` pointer, promote and rollback.

Layout under the models folder::

    m-20250101-040000-1a2b/      one complete model (never modified after it appears)
        weights.safetensors      tensors only: loading cannot run code
        model.json               dims, config, label-set hash, sha256 of the weights, metrics summary
        metrics.json, *.png      evaluation (with the promotion comparison) and plots
        clips.json               the clips of each split it was trained / validated on
    current.json                 {"current": ID, "history": [IDs that were current, oldest first]}

A model is assembled under a temporary name and renamed into place, and ``current.json`` is
replaced atomically, so a killed training never leaves a partial model visible and ``current``
always names a complete model whose checksum matches.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autoclip.errors import ModelError
from autoclip.fsutil import TMP_PREFIX, atomic_write_json, fsync_dir

if TYPE_CHECKING:
    from autoclip.model import HighlightNet, ModelDims

log = logging.getLogger(__name__)

WEIGHTS = "weights.safetensors"
META = "model.json"
METRICS = "metrics.json"
POINTER = "current.json"
FORMAT = 1
#: files that could run code when loaded; never loaded, and their presence is refused
PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin", ".joblib")
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


@dataclass
class LoadedModel:
    net: HighlightNet
    dims: ModelDims
    meta: dict[str, Any]
    id: str


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class Registry:
    """Models under ``root`` (``cfg.path("models")``)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    # -- reading ---------------------------------------------------------------------------

    def _folder(self, model_id: str) -> Path:
        if not _ID_RE.match(model_id or "") or model_id.startswith(TMP_PREFIX):
            raise ModelError(f"{model_id!r} is not a model id: see `autoclip models list`")
        folder = self.root / model_id
        if folder.is_symlink() or not folder.is_dir():
            if folder.exists() or folder.is_symlink():
                raise ModelError(f"{folder} is not a model folder: autoclip loads only models saved by `autoclip train`")
            raise ModelError(f"no model {model_id!r} in {self.root}: see `autoclip models list`")
        return folder

    def ids(self) -> list[str]:
        """Complete model folders, oldest first."""
        if not self.root.is_dir():
            return []
        out = [
            p.name for p in self.root.iterdir()
            if p.is_dir() and not p.is_symlink() and not p.name.startswith((TMP_PREFIX, "."))
            and (p / META).is_file()
        ]
        return sorted(out)

    def meta(self, model_id: str) -> dict[str, Any]:
        folder = self._folder(model_id)
        try:
            meta = json.loads((folder / META).read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise ModelError(f"model {model_id}: unreadable {META} ({err}); remove the folder or retrain") from None
        if not isinstance(meta, dict):
            raise ModelError(f"model {model_id}: {META} is not an object; remove the folder or retrain")
        return meta

    def metrics(self, model_id: str) -> dict[str, Any]:
        path = self._folder(model_id) / METRICS
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}

    def verify(self, model_id: str) -> dict[str, Any]:
        """Check the folder holds safetensors weights whose sha256 matches; return the meta."""
        folder = self._folder(model_id)
        pickles = sorted(p.name for p in folder.iterdir() if p.suffix.lower() in PICKLE_SUFFIXES)
        if pickles:
            raise ModelError(
                f"model {model_id} holds {', '.join(pickles)}: pickle checkpoints can run code and are refused; "
                "autoclip loads only safetensors models saved by `autoclip train`"
            )
        meta = self.meta(model_id)
        weights = folder / WEIGHTS
        if not weights.is_file():
            raise ModelError(f"model {model_id} has no {WEIGHTS}; remove the folder or retrain")
        expected = meta.get("sha256")
        actual = sha256_file(weights)
        if not expected or actual != expected:
            raise ModelError(f"model {model_id}: weights checksum mismatch (file corrupt or altered); roll back or retrain")
        return meta

    def load(self, model_id: str) -> LoadedModel:
        """Verify the checksum, rebuild the network from its dims and load the tensors."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        from autoclip import gate
        from autoclip.model import ModelDims, build_model, prepare_for_inference

        meta = self.verify(model_id)
        dims = ModelDims.from_dict(meta.get("dims") or {})
        net = build_model(dims, "none")
        try:
            state = load_file(str(self.root / model_id / WEIGHTS))
            gate.attach_for_load(net, state, meta)  # the audio gate of the scoring cascade, if trained
            net.load_state_dict(state)
        except (SafetensorError, RuntimeError, OSError) as err:
            raise ModelError(f"model {model_id}: weights do not load ({str(err).splitlines()[0][:120]}); retrain") from None
        return LoadedModel(net=prepare_for_inference(net), dims=dims, meta=meta, id=model_id)

    # -- the current pointer -------------------------------------------------------------

    def _pointer(self) -> dict[str, Any]:
        try:
            data = json.loads((self.root / POINTER).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {"current": None, "history": []}
        except (OSError, ValueError) as err:
            raise ModelError(f"{self.root / POINTER} is unreadable ({err}); promote a model with `autoclip models promote ID`") from None
        if not isinstance(data, dict):
            return {"current": None, "history": []}
        data.setdefault("current", None)
        data.setdefault("history", [])
        return data

    def current_id(self) -> str | None:
        return self._pointer().get("current")

    def history(self) -> list[str]:
        return list(self._pointer().get("history") or [])

    def load_current(self) -> LoadedModel | None:
        cid = self.current_id()
        return self.load(cid) if cid else None

    def _write_pointer(self, current: str | None, history: list[str]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.root / POINTER, {"current": current, "history": history, "updated": time.time()})

    def promote(self, model_id: str) -> None:
        """Make ``model_id`` current (after verifying it); the previous one stays in history."""
        self.verify(model_id)
        pointer = self._pointer()
        history = [h for h in pointer["history"] if h != model_id]
        history.append(model_id)
        self._write_pointer(model_id, history)
        log.info("model %s is now current", model_id)

    def rollback(self) -> str:
        """Make the previous current model current again; return its id."""
        pointer = self._pointer()
        history: list[str] = list(pointer["history"])
        current = pointer["current"]
        if current in history:
            history = history[: history.index(current)]
        while history:
            candidate = history[-1]
            try:
                self.verify(candidate)
            except ModelError as err:
                log.warning("skipping %s in rollback: %s", candidate, err)
                history.pop()
                continue
            self._write_pointer(candidate, history)
            log.info("rolled back from %s to %s", current, candidate)
            return candidate
        raise ModelError("no earlier model to roll back to: see `autoclip models list` and `autoclip models promote ID`")

    # -- writing -------------------------------------------------------------------------

    def new_id(self) -> str:
        return time.strftime("m-%Y%m%d-%H%M%S-", time.localtime()) + secrets.token_hex(2)

    def save(
        self,
        net: HighlightNet,
        dims: ModelDims,
        *,
        label_hash: str,
        metrics: dict[str, Any] | None = None,
        info: dict[str, Any] | None = None,
        extra_files: list[Path] | None = None,
        model_id: str | None = None,
    ) -> str:
        """Write a complete model folder (temp name, fsync, rename into place); return its id."""
        from safetensors.torch import save_file

        model_id = model_id or self.new_id()
        self.root.mkdir(parents=True, exist_ok=True)
        final = self.root / model_id
        if final.exists():
            raise ModelError(f"model {model_id} already exists")
        stage = self.root / f"{TMP_PREFIX}{model_id}"
        stage.mkdir()
        try:
            weights = stage / WEIGHTS
            state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
            save_file(state, str(weights), metadata={"format": "autoclip", "kind": dims.kind})
            meta = {
                "format": FORMAT, "id": model_id, "created": time.time(), "dims": dims.to_dict(),
                "label_hash": label_hash, "sha256": sha256_file(weights), **(info or {}),
            }
            (stage / META).write_text(json.dumps(meta, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
            (stage / METRICS).write_text(json.dumps(metrics or {}, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
            for src in extra_files or []:
                shutil.copyfile(src, stage / Path(src).name)
            for p in stage.iterdir():
                with open(p, "rb") as f:
                    os.fsync(f.fileno())
            fsync_dir(stage)
            os.rename(stage, final)
            fsync_dir(self.root)
        except BaseException:
            shutil.rmtree(stage, ignore_errors=True)
            raise
        log.info("saved model %s", model_id)
        return model_id

    # -- summaries -----------------------------------------------------------------------

    def summary(self, model_id: str) -> dict[str, Any]:
        meta = self.meta(model_id)
        summary = meta.get("summary") or {}
        return {
            "id": model_id,
            "created": meta.get("created"),
            "kind": (meta.get("dims") or {}).get("kind"),
            "val_ap": summary.get("val_ap"),
            "test_ap": summary.get("test_ap"),
            "val_frame_ap": summary.get("val_frame_ap"),
            "test_frame_ap": summary.get("test_frame_ap"),
            "promoted": (meta.get("decision") or {}).get("promote"),
            "label_hash": meta.get("label_hash"),
            "trigger": meta.get("trigger"),
            "current": model_id == self.current_id(),
        }

    def list(self) -> list[dict[str, Any]]:
        out = []
        for mid in self.ids():
            try:
                out.append(self.summary(mid))
            except ModelError as err:
                log.warning("%s", err)
        return out

    def clean(self) -> int:
        """Remove half-assembled model folders left by a killed training."""
        n = 0
        if self.root.is_dir():
            for p in self.root.glob(f"{TMP_PREFIX}*"):
                if p.is_dir():
                    shutil.rmtree(p, ignore_errors=True)
                else:
                    p.unlink(missing_ok=True)
                n += 1
        return n
