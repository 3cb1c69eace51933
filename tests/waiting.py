"""Polling helper shared by the tests that watch a daemon, a watcher or a child from outside."""
from __future__ import annotations

import time
from collections.abc import Callable


def wait_for(pred: Callable[[], object], timeout: float = 10.0, every: float = 0.05) -> bool:
    """Poll ``pred`` until it is true or ``timeout`` seconds pass; the last answer decides."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(every)
    return bool(pred())
