"""Times as people type and read them: one parser and one formatter for positions in a VOD, and
one for wall-clock moments (model creation, retraining runs).

The rule for clock times is the same everywhere (labels, CSV imports, ``crop --at``): seconds
(``75.5``), ``MM:SS`` or ``HH:MM:SS`` with optional fractions; seconds below 60, and minutes below
60 after hours (``90:00`` is 90 minutes), so a typo such as ``1:75`` is an error rather than 2:15.
"""

from __future__ import annotations

import datetime as dt
import math
import re

_CLOCK = re.compile(r"^(?:(\d+):)?(\d+):(\d{1,2}(?:\.\d+)?)$")


def parse_time(text: str | float | int) -> float:
    """Seconds from ``"12.5"``, ``"MM:SS"`` or ``"HH:MM:SS(.mmm)"``, rounded to milliseconds.

    Raises ``ValueError`` (saying what is accepted) for anything else, negative or not finite.
    """
    if isinstance(text, (int, float)):
        value = float(text)
    else:
        s = text.strip()
        m = _CLOCK.match(s)
        if m:
            hours, minutes, seconds = int(m.group(1) or 0), int(m.group(2)), float(m.group(3))
            if seconds >= 60 or (m.group(1) is not None and minutes >= 60):
                raise ValueError(f"time {s!r}: seconds (and minutes after hours) must be below 60")
            value = hours * 3600 + minutes * 60 + seconds
        else:
            try:
                value = float(s)
            except ValueError:
                raise ValueError(f"time {s!r} is not seconds, MM:SS or HH:MM:SS(.mmm)") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"time {text!r} must be a finite number of seconds >= 0")
    return round(value, 3)


def hms(seconds: float, decimals: int = 0, *, compact: bool = False) -> str:
    """A position as a clock time, cut (never rounded up) to ``decimals`` places.

    ``hms(3725.5)`` -> ``"01:02:05"``; ``hms(3725.5, 3)`` -> ``"01:02:05.500"``; ``compact``
    drops zero hours and the first field's leading zero: ``hms(125.5, 1, compact=True)`` ->
    ``"2:05.5"``. Every form is read back by ``parse_time``.
    """
    value = float(seconds)
    value = max(0.0, value) if math.isfinite(value) else 0.0
    unit = 10**decimals
    ticks = math.floor(value * unit + 1e-6)
    whole, frac = divmod(ticks, unit)
    h, rest = divmod(whole, 3600)
    m, s = divmod(rest, 60)
    tail = f".{frac:0{decimals}d}" if decimals > 0 else ""
    if not compact:
        return f"{h:02d}:{m:02d}:{s:02d}{tail}"
    return f"{h}:{m:02d}:{s:02d}{tail}" if h else f"{m}:{s:02d}{tail}"


def when(ts: float | None, missing: str = "never", *, seconds: bool = False) -> str:
    """A wall-clock moment (Unix time) in local time, ``YYYY-MM-DD HH:MM`` (``:SS`` with
    ``seconds``); ``missing`` when there is none."""
    if not ts:
        return missing
    return dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")
