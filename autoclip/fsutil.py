"""Small file-system helpers shared by every module: atomic writes and content fingerprints.

Nothing half-written is ever visible: files are written to a temporary name in the same folder,
fsynced, then renamed over the final name (rename is atomic on POSIX within a file system).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from autoclip.errors import DiskFullError

#: prefix of every temporary file autoclip writes; cleaned on start-up, ignored by the watcher
TMP_PREFIX = ".autoclip-tmp-"
#: the longest file name, in bytes, that Linux file systems take
NAME_MAX = 255
_FP_CHUNK = 1 << 20


def apply_umask(mask: int) -> None:
    """Set the process umask (``[paths] umask``): the permissions of everything autoclip publishes."""
    os.umask(mask)


def current_umask() -> int:
    """The process umask, read without changing it (``/proc/self/status``; elsewhere set and restored)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def publish_mode(path: str | os.PathLike[str]) -> None:
    """Give a file (0666) or folder (0777) about to be published the umask's permissions: temporary
    files and folders start private (0600/0700), which a reader in the owner's group could not open."""
    full = 0o777 if os.path.isdir(path) else 0o666
    os.chmod(path, full & ~current_umask())


def fingerprint(path: str | os.PathLike[str]) -> str:
    """Content fingerprint: size + SHA-256 of the first and last MiB (fast on multi-GB VODs)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        h.update(str(size).encode())
        h.update(f.read(_FP_CHUNK))
        if size > _FP_CHUNK:
            f.seek(max(size - _FP_CHUNK, _FP_CHUNK))
            h.update(f.read(_FP_CHUNK))
    return f"{size:x}-{h.hexdigest()[:24]}"


def locate(path: str | os.PathLike[str], fp: str, folders: list[Path]) -> Path | None:
    """The file with content ``fp``: at ``path``, else under the same name in one of ``folders``
    (VODs move from the inbox to the done folder after processing)."""
    name = Path(path).name
    for p in (Path(path), *(Path(f) / name for f in folders)):
        try:
            if p.is_file() and fingerprint(p) == fp:
                return p
        except OSError:
            continue
    return None


def fsync_dir(path: str | os.PathLike[str]) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def cut_utf8(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` bytes of UTF-8 (the measure of a file name), never inside a character."""
    raw = text.encode("utf-8", "surrogateescape")
    return text if len(raw) <= limit else raw[:limit].decode("utf-8", "ignore")


def _raise_disk_full(err: OSError, target: Path) -> None:
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        raise DiskFullError(f"disk full while writing {target}: free space on that disk, the job is retried later") from err


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str], suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success it is fsynced and renamed to ``target``.

    The file gets the umask's permissions (``publish_mode``). On any error the temporary file is
    removed and ``target`` is untouched. Use it for files
    written by other programs (ffmpeg) as well as by us. ``suffix`` keeps an extension so tools
    that guess the format from the name (ffmpeg) still work.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=TMP_PREFIX, suffix=suffix or target.suffix, dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        publish_mode(tmp)
        os.replace(tmp, target)
        fsync_dir(target.parent)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        _raise_disk_full(err, target)
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(target: str | os.PathLike[str], data: bytes) -> None:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(target: str | os.PathLike[str], text: str) -> None:
    atomic_write_bytes(target, text.encode("utf-8"))


def atomic_write_json(target: str | os.PathLike[str], obj: Any) -> None:
    atomic_write_text(target, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def clean_temp_files(folder: str | os.PathLike[str]) -> int:
    """Remove our leftover temporary files (from a killed process) under ``folder``."""
    n = 0
    root = Path(folder)
    if not root.is_dir():
        return 0
    for p in root.rglob(f"{TMP_PREFIX}*"):
        with contextlib.suppress(OSError):
            if p.is_dir():
                import shutil

                shutil.rmtree(p)
            else:
                p.unlink()
            n += 1
    return n
