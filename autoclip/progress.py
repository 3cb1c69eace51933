"""Progress of long steps (scoring a VOD, training): a rich bar on stderr when stderr is a
terminal, quiet INFO log lines otherwise (the daemon's job logs, CI, pipes).

Progress always goes to stderr: stdout is kept for ``--json`` results. The bar's columns are
given as format strings over the task's fields plus a few named rich columns::

    with Progress("scoring {task.description}", total=3600, name="a.mkv", logger=log,
                  columns=("bar", "{task.fields[pos]}", "eta"), pos="") as bar:
        bar.update(completed=60, pos="00:01:00")
        bar.note("scoring %s: %.0f%%", "a.mkv", 1.7)   # a log line only when there is no bar
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Sequence
from typing import Any

#: seconds between rate-limited log lines when stderr is not a terminal
LOG_EVERY = 30.0


def _column(spec: str) -> Any:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    named = {"bar": BarColumn, "eta": TimeRemainingColumn, "elapsed": TimeElapsedColumn,
             "count": MofNCompleteColumn}
    return named[spec]() if spec in named else TextColumn(spec)


class Progress:
    """One bar (``enabled`` and stderr a terminal) or rate-limited log lines; see the module doc.

    The bar is drawn from construction until ``close()`` (or the end of a ``with`` block).
    """

    def __init__(self, title: str, *, total: float, columns: Sequence[str] = ("bar",), enabled: bool = True,
                 logger: logging.Logger | None = None, name: str = "", transient: bool = True,
                 every: float = LOG_EVERY, **fields: Any) -> None:
        self.t0 = time.monotonic()
        self.total = total
        self.every = every
        self.log = logger or logging.getLogger("autoclip")
        self._last_note = self.t0
        self._bar: Any = None
        if enabled and sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import Progress as RichProgress

            self._bar = RichProgress(_column(title), *map(_column, columns), transient=transient,
                                     console=Console(stderr=True))
            self._task = self._bar.add_task(name, total=total, **fields)
            self._bar.start()

    @property
    def shown(self) -> bool:
        """True when a bar is drawn (then ``note`` stays quiet)."""
        return self._bar is not None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def update(self, *, completed: float | None = None, advance: float | None = None, **fields: Any) -> None:
        """Move the bar (no-op without one)."""
        if self._bar is not None:
            if completed is not None:
                completed = min(completed, self.total)
            self._bar.update(self._task, completed=completed, advance=advance, **fields)

    def note(self, message: str, *args: Any, every: bool = False) -> None:
        """An INFO log line when there is no bar; with ``every``, at most one per ``self.every`` seconds."""
        if self._bar is not None:
            return
        now = time.monotonic()
        if every and now - self._last_note < self.every:
            return
        self._last_note = now
        self.log.info(message, *args)

    def close(self) -> float:
        """Stop the bar; the seconds since the start."""
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
        return time.monotonic() - self.t0
