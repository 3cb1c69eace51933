"""Finding complete files in the inbox: junk-name filter, stability tracker, events and rescans.

Events (watchdog's inotify observer, or its polling observer for network shares) are only hints
that say where to look; a periodic full rescan finds what events missed and what arrived while
the daemon was stopped. A candidate is handed on only after its size, mtime and inode stayed
unchanged for ``stable`` seconds. Partial and junk names written by downloaders, sync tools and
autoclip itself are never candidates. Nothing here opens a file: only ``lstat`` is used, so a
FIFO cannot block and a symlink is never followed.
"""

from __future__ import annotations

import logging
import os
import re
import stat
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from autoclip.fsutil import TMP_PREFIX

log = logging.getLogger(__name__)

#: suffixes of files still being written (downloaders, browsers, sync tools, torrent clients)
PARTIAL_SUFFIXES = (
    ".part", ".ytdl", ".partial", ".partial~", ".crdownload", ".!qb", ".tmp", ".temp",
    ".download", ".filepart", ".opdownload", ".aria2", "~",
)
_JUNK_PATTERNS = [
    re.compile(p, re.IGNORECASE)
    for p in (
        r"\.part-frag\d+(\.part)?$",            # yt-dlp fragments
        r"\.f\d+(-\d+)?\.\w+$",                 # yt-dlp per-format streams before merging
        r"\.f(hls|dash)-[\w.-]*\.\w+$",
        r"\.temp\.\w+$",                        # yt-dlp merge output before rename
        r"^~syncthing~",                        # syncthing temp files
        r"\.sync-conflict-",                    # syncthing conflict copies
    )
]
#: folders whose contents are never taken (unpackers, sync-tool version stores)
_JUNK_DIR_PREFIXES = ("_unpack_", "_failed_", ".")


@dataclass(frozen=True)
class Candidate:
    """A stable inbox entry: its path and the ``lstat`` taken when it was judged stable."""

    path: Path
    st: os.stat_result

    @property
    def key(self) -> tuple[int, int, int, float]:
        return file_key(self.st)


def file_key(st: os.stat_result) -> tuple[int, int, int, float]:
    """The identity of one version of a file: device, inode, size, mtime."""
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime)


def _signature(st: os.stat_result) -> tuple[int, int, int, int, int]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, stat.S_IFMT(st.st_mode))


def junk_reason(name: str) -> str | None:
    """Why a file name is ignored (partial download, temp, hidden...), or None if it is a candidate."""
    low = name.lower()
    if name.startswith(TMP_PREFIX):
        return "autoclip temporary file"
    if name.startswith("."):
        return "hidden file"
    if low.endswith(PARTIAL_SUFFIXES):
        return "partial download"
    for pattern in _JUNK_PATTERNS:
        if pattern.search(name):
            return "partial or temporary name"
    return None


def name_refusal(name: str, extensions: tuple[str, ...]) -> str | None:
    """Why a file called ``name`` is not taken, in words a user can act on; None if it is taken."""
    if name.startswith(TMP_PREFIX):
        return ""  # autoclip's own temporary file: not worth a line
    why = junk_reason(name)
    if why is not None:
        return f"{why}: not taken until it is renamed to a final, visible name"
    if not name.lower().endswith(extensions):
        ext = os.path.splitext(name)[1].lower() or "(none)"
        return (f"extension {ext} is not in [daemon] extensions ({' '.join(extensions)}): "
                "add it there if it is a video, or move the file out of the inbox")
    return None


def junk_dir(name: str) -> bool:
    """True for folders never descended into (hidden, ``.stversions``, ``_UNPACK_*``...)."""
    return name.lower().startswith(_JUNK_DIR_PREFIXES)


class InboxFilter:
    """Which inbox paths can become jobs: video extensions, no junk names or junk folders."""

    def __init__(self, inbox: Path, extensions: Iterable[str], exclude: Iterable[Path] = ()) -> None:
        self.inbox = Path(inbox)
        self.extensions = tuple(e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions)
        self.exclude = {Path(p) for p in exclude}

    def wanted(self, path: Path) -> bool:
        """True if ``path`` (inside the inbox) names a possible VOD; it is not opened or stat'ed."""
        return self.refusal(path) is None

    def refusal(self, path: Path) -> str | None:
        """Why ``path`` will not become a job (``""``: not ours to mention), or None if it can."""
        try:
            rel = Path(path).relative_to(self.inbox)
        except ValueError:
            return ""
        parts = rel.parts
        if not parts:
            return ""
        for i, part in enumerate(parts[:-1]):
            if junk_dir(part) or self.inbox.joinpath(*parts[: i + 1]) in self.exclude:
                return ""  # the folder itself is mentioned (or is one of ours)
        return name_refusal(parts[-1], self.extensions)

    def scan(self, max_depth: int = 8, refused: Callable[[Path, str], None] | None = None,
             ) -> Iterator[tuple[Path, os.stat_result]]:
        """Every wanted entry under the inbox with its ``lstat``; symlinks are not followed.

        ``refused(path, why)`` hears of every other entry a user may expect to be taken (files
        with another extension or a partial/hidden name, junk folders); autoclip's own are left out.
        """
        yield from self._scan_dir(self.inbox, max_depth, refused or (lambda _p, _w: None))

    def _scan_dir(self, folder: Path, depth: int, refused: Callable[[Path, str], None],
                  ) -> Iterator[tuple[Path, os.stat_result]]:
        try:
            with os.scandir(folder) as it:
                entries = list(it)
        except OSError as err:
            log.debug("cannot list %s: %s", folder, err)
            return
        for entry in entries:
            path = Path(entry.path)
            try:
                is_dir = entry.is_dir(follow_symlinks=False)
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            why = self.refusal(path)
            if is_dir and why is not None:
                # a real sub-folder: descend (unless junk/excluded); a folder named like a VOD is a candidate
                if path in self.exclude:
                    continue
                if junk_dir(entry.name):
                    refused(path, "hidden, unpacker or sync-tool folder: its contents are not looked at")
                elif depth > 0:
                    yield from self._scan_dir(path, depth - 1, refused)
                continue
            if why is None:
                yield path, st
            elif why:
                refused(path, why)


class StabilityTracker:
    """Holds candidates until size, mtime and inode have not changed for ``window`` seconds."""

    def __init__(self, window: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.window = window
        self.clock = clock
        self._seen: dict[Path, tuple[tuple, float, os.stat_result]] = {}

    def observe(self, path: Path, st: os.stat_result | None, *, event: bool = False) -> None:
        """Record a sighting; a changed signature (or a write event) restarts the window."""
        if st is None:
            self._seen.pop(path, None)
            return
        sig = _signature(st)
        prev = self._seen.get(path)
        if prev is None or prev[0] != sig or event:
            self._seen[path] = (sig, self.clock(), st)

    def forget(self, path: Path) -> None:
        self._seen.pop(path, None)

    def paths(self) -> list[Path]:
        return list(self._seen)

    def due(self) -> list[Candidate]:
        """Entries quiet for the whole window; they leave the tracker."""
        now = self.clock()
        ready = [Candidate(p, st) for p, (_, since, st) in self._seen.items() if now - since >= self.window]
        for c in ready:
            del self._seen[c.path]
        return ready

    def __len__(self) -> int:
        return len(self._seen)

    def __contains__(self, path: object) -> bool:
        return path in self._seen


def _lstat(path: Path) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except OSError:
        return None


class _Hints:
    """Paths reported by watchdog events, deduplicated (bounded by the number of distinct wanted paths)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._paths: dict[Path, bool] = {}
        self._others: dict[Path, None] = {}  # paths that are not candidates (said once in the log)
        self._rescan = False

    def add(self, path: Path, *, write: bool) -> None:
        with self._lock:
            self._paths[path] = self._paths.get(path, False) or write

    def add_other(self, path: Path) -> None:
        with self._lock:
            self._others[path] = None

    def drain_others(self) -> list[Path]:
        with self._lock:
            others, self._others = list(self._others), {}
        return others

    def request_rescan(self) -> None:
        with self._lock:
            self._rescan = True

    def drain(self) -> tuple[dict[Path, bool], bool]:
        with self._lock:
            paths, rescan = self._paths, self._rescan
            self._paths, self._rescan = {}, False
        return paths, rescan


class InboxWatcher:
    """The watcher thread's loop: events + rescans -> stability tracker -> ``on_ready(candidate)``.

    ``on_ready`` returns True once the candidate is taken care of (a job exists, or it was
    refused); False means "try again later" and the file is tracked again.
    """

    def __init__(
        self,
        filt: InboxFilter,
        *,
        stable: float,
        rescan: float,
        polling: bool,
        on_ready: Callable[[Candidate], bool],
        stop: threading.Event,
    ) -> None:
        self.filter = filt
        self.inbox = filt.inbox
        self.rescan_every = rescan
        self.polling = polling
        self.on_ready = on_ready
        self.stop = stop
        self.tracker = StabilityTracker(stable)
        self.tick = max(0.2, min(1.0, stable / 4 if stable else 0.5))
        self.heartbeat = time.monotonic()
        self.scans = 0
        self.paused = False
        self._hints = _Hints()
        self._taken: dict[Path, tuple] = {}
        #: inbox entries that will not be taken, each said once in the log (pruned when they go)
        self._refused: dict[Path, str] = {}
        self._refused_lock = threading.Lock()
        self._observer = None
        self._inbox_id: tuple | None = None
        self._next_scan = 0.0

    # -- the loop -------------------------------------------------------------------------
    def run(self) -> None:
        try:
            while not self.stop.is_set():
                self.step()
                self.stop.wait(self.tick)
        finally:
            self._stop_observer()

    def step(self) -> None:
        """One iteration: check the inbox, scan if due, look at hinted and tracked paths, hand on due ones."""
        self.heartbeat = time.monotonic()
        if not self._inbox_present():
            return
        inbox_id = _signature(os.stat(self.inbox))[:2] if self.inbox.exists() else None
        if self._observer is None or not self._observer.is_alive() or inbox_id != self._inbox_id:
            self._inbox_id = inbox_id
            self._start_observer()
        hints, rescan = self._hints.drain()
        if rescan or time.monotonic() >= self._next_scan:
            self.scan()
        for path, write in hints.items():
            self._look(path, _lstat(path), event=write)
        for path in self._hints.drain_others():
            why = self.filter.refusal(path)
            st = _lstat(path)
            if why and st is not None and not stat.S_ISDIR(st.st_mode):
                self._note_refused(path, why)
        for path in self.tracker.paths():
            self._look(path, _lstat(path))
        for cand in self.tracker.due():
            self._hand_on(cand)

    def scan(self) -> int:
        """A full listing of the inbox; returns how many wanted entries it saw."""
        seen: set[Path] = set()
        refused: set[Path] = set()

        def on_refused(path: Path, why: str) -> None:
            refused.add(path)
            self._note_refused(path, why)

        for path, st in self.filter.scan(refused=on_refused):
            seen.add(path)
            self._look(path, st)
        for path in list(self._taken):
            if path not in seen:
                del self._taken[path]  # moved away (done/failed) or deleted
        with self._refused_lock:
            for path in [p for p in self._refused if p not in refused]:
                del self._refused[path]  # gone, or renamed to a name that is taken
        self.scans += 1
        self._next_scan = time.monotonic() + self.rescan_every
        return len(seen)

    def _look(self, path: Path, st: os.stat_result | None, *, event: bool = False) -> None:
        if st is None:
            self.tracker.forget(path)
            self._taken.pop(path, None)
            return
        if self._taken.get(path) == _signature(st):
            return  # already a job (or refused) in exactly this version
        self.tracker.observe(path, st, event=event)

    def _hand_on(self, cand: Candidate) -> None:
        now_st = _lstat(cand.path)
        if now_st is None or _signature(now_st) != _signature(cand.st):
            self.tracker.observe(cand.path, now_st)
            return
        try:
            taken = self.on_ready(cand)
        except Exception:  # a bug or a transient store error must not kill the watcher thread
            log.exception("could not take %s; will try again", cand.path)
            taken = False
        if taken:
            self._taken[cand.path] = _signature(cand.st)
        else:
            self.tracker.observe(cand.path, cand.st, event=True)

    def _note_refused(self, path: Path, why: str) -> None:
        with self._refused_lock:
            if path in self._refused:
                return
            self._refused[path] = why
        name = path.relative_to(self.inbox).as_posix() if path.is_relative_to(self.inbox) else str(path)
        # a file the user may have meant for us is a warning; a download still in progress is news
        (log.warning if why.startswith("extension") else log.info)("%s in the inbox: %s", name, why)

    def refused(self) -> dict[Path, str]:
        """The inbox entries that are not taken (and why), as of the last scan."""
        with self._refused_lock:
            return dict(self._refused)

    # -- inbox presence --------------------------------------------------------------------
    def _inbox_present(self) -> bool:
        present = self.inbox.is_dir()
        if not present and not self.paused:
            log.warning("inbox %s is missing (unmounted share?): paused; nothing is deleted, waiting for it to return", self.inbox)
            self.paused = True
            self._stop_observer()
            for path in self.tracker.paths():
                self.tracker.forget(path)
        elif present and self.paused:
            log.warning("inbox %s is back: resuming", self.inbox)
            self.paused = False
            self._next_scan = 0.0
        return present

    # -- watchdog observer -----------------------------------------------------------------
    def _start_observer(self) -> None:
        self._stop_observer()
        from watchdog.observers import Observer
        from watchdog.observers.polling import PollingObserver

        handler = _EventHandler(self.filter, self._hints)
        kinds = [PollingObserver] if self.polling else [Observer, PollingObserver]
        for kind in kinds:
            observer = kind(timeout=max(1.0, min(self.rescan_every, 5.0))) if kind is PollingObserver else kind()
            try:
                observer.schedule(handler, str(self.inbox), recursive=True)
                observer.daemon = True
                observer.start()
            except OSError as err:
                log.warning("cannot watch %s with %s (%s); falling back to polling", self.inbox, kind.__name__, err)
                continue
            self._observer = observer
            log.debug("watching %s with %s", self.inbox, kind.__name__)
            return
        self._observer = None

    def _stop_observer(self) -> None:
        observer, self._observer = self._observer, None
        if observer is not None:
            try:
                observer.stop()
                observer.join(timeout=5)
            except Exception as err:  # noqa: BLE001 - a dying observer must not stop us
                log.debug("observer stop: %s", err)

    def observer_alive(self) -> bool:
        return self.paused or (self._observer is not None and self._observer.is_alive())


class _EventHandler:
    """watchdog handler: turns events into hints (nothing is stat'ed or opened in watchdog's thread)."""

    def __init__(self, filt: InboxFilter, hints: _Hints) -> None:
        self.filter = filt
        self.hints = hints

    def dispatch(self, event) -> None:  # watchdog calls dispatch() on the handler
        try:
            self._dispatch(event)
        except Exception:  # an exception here would kill watchdog's thread
            log.exception("ignoring a watchdog event that could not be read")
            self.hints.request_rescan()

    def _dispatch(self, event) -> None:
        kind = event.event_type
        path = Path(os.fsdecode(getattr(event, "dest_path", "") or event.src_path))
        if kind in ("opened", "closed_no_write"):
            return
        if kind == "moved" and event.is_directory:
            self.hints.request_rescan()  # a folder moved in: its contents gave no events
            return
        if kind == "created" and event.is_directory:
            self.hints.request_rescan()
            return
        if kind == "deleted" and event.src_path and Path(os.fsdecode(event.src_path)) == self.filter.inbox:
            self.hints.request_rescan()
            return
        if self.filter.wanted(path):
            self.hints.add(path, write=kind in ("modified", "closed"))
        elif kind in ("created", "moved", "closed"):
            self.hints.add_other(path)
        if kind == "moved":
            src = Path(os.fsdecode(event.src_path))
            if self.filter.wanted(src):
                self.hints.add(src, write=False)
