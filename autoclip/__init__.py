"""autoclip: turn long stream VODs into highlight reels, and learn from review."""

import os as _os

__version__ = "0.1.0"

# torch's OpenMP workers sleep instead of spinning while they wait for work: on a machine shared
# with ffmpeg and other jobs, spinning workers made training several times slower (measured).
# Must be set before torch loads; a user's own setting wins.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
