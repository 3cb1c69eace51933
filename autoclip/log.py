"""Logging set-up: rich on a terminal, plain one-line records otherwise (journald, CI, pipes)."""

from __future__ import annotations

import logging
import os
import sys
import warnings


def setup_logging(debug: bool = False, quiet: bool = False) -> None:
    level = logging.DEBUG if debug else (logging.WARNING if quiet else logging.INFO)
    root = logging.getLogger()
    for h in list(root.handlers):  # ours from an earlier call; others' (a test's capture) stay
        if getattr(h, "_autoclip", False):
            root.removeHandler(h)
    if sys.stderr.isatty():
        from rich.logging import RichHandler

        handler: logging.Handler = RichHandler(show_path=debug, rich_tracebacks=debug, markup=False)
        handler.setFormatter(logging.Formatter("%(message)s", datefmt="[%X]"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        # under systemd the journal adds its own timestamps
        fmt = "%(levelname)s %(name)s: %(message)s" if os.environ.get("INVOCATION_ID") else "%(asctime)s %(levelname)s %(name)s: %(message)s"
        handler.setFormatter(logging.Formatter(fmt, datefmt="%H:%M:%S"))
    handler._autoclip = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("watchdog", "apscheduler", "numba", "matplotlib", "PIL", "asyncio", "markdown_it"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
    if not debug:
        # third-party warnings a user cannot act on (librosa/torch deprecations) stay out of the way
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module=r"(torch|torchvision|librosa)\b.*")
