"""A tiny client for systemd's notification protocol (``sd_notify``) over ``$NOTIFY_SOCKET``.

Outside systemd (no ``$NOTIFY_SOCKET``) every call is a no-op that returns False, so the daemon
runs the same way in a terminal, in tests and under ``Type=notify``.
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger(__name__)


def _address() -> str | None:
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return None
    if addr.startswith("@"):  # abstract namespace
        return "\0" + addr[1:]
    return addr


def notify(message: str) -> bool:
    """Send one datagram such as ``"READY=1"``; True if it was sent."""
    addr = _address()
    if addr is None:
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(addr)
            sock.sendall(message.encode("utf-8", "replace"))
        return True
    except OSError as err:
        log.debug("sd_notify(%r) failed: %s", message, err)
        return False


def ready(status: str = "") -> bool:
    return notify("READY=1" + (f"\nSTATUS={_one_line(status)}" if status else ""))


def watchdog() -> bool:
    return notify("WATCHDOG=1")


def status(text: str) -> bool:
    return notify(f"STATUS={_one_line(text)}")


def stopping(status: str = "") -> bool:
    return notify("STOPPING=1" + (f"\nSTATUS={_one_line(status)}" if status else ""))


def watchdog_interval() -> float | None:
    """Seconds between watchdog pings systemd expects (``WatchdogSec``), or None if unset for us."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid.isdigit() and int(pid) != os.getpid()):
        return None
    try:
        value = int(usec) / 1e6
    except ValueError:
        return None
    return value if value > 0 else None


def _one_line(text: str) -> str:
    return " ".join(str(text).split())[:200]
