"""The media layer: the only code that runs ffprobe/ffmpeg to read media.

Files are untrusted. Every call uses an argument list (no shell), the ``file:`` protocol only,
a demuxer allowlist and a pixel limit, and failures become a ``MediaError`` whose message says
what is wrong and what to do (``detail`` carries ffmpeg's stderr tail).

* ``probe``: what a file holds (``probe``, ``check_complete`` for files still being written);
* ``decode``: sampled frames with their presentation times (``iter_frames``) and streaming
  audio (``AudioStream``, ``read_audio``), with memory bounded by the batch, never by the VOD.

All times are seconds from the file's start (its container start time), as ffmpeg's ``-ss`` counts.
"""

from autoclip.media.decode import SCALE_FLAGS, AudioStream, FrameBatch, iter_frames, read_audio
from autoclip.media.grid import frame_grid
from autoclip.media.probe import (
           ProbeInfo,
           check_complete,
           check_file,
           file_url,
           last_timestamp,
           probe,
)

__all__ = ["SCALE_FLAGS", "AudioStream", "FrameBatch", "ProbeInfo", "check_complete", "check_file", "file_url", "frame_grid",
           "iter_frames", "last_timestamp", "probe", "read_audio"]
