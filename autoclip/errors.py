"""The exceptions autoclip raises at its boundaries.

Every error a user can meet is an ``AutoclipError`` carrying a one-line reason that says what
to do; the CLI prints that line and exits with ``exit_code`` (no traceback unless --debug).
"""

from __future__ import annotations


class AutoclipError(Exception):
    """Base class: ``str(err)`` is a one-line, actionable reason."""

    exit_code = 1
    #: short machine-readable reason code, used in job records and <name>.reason.json
    code = "error"

    def __init__(self, message: str, *, code: str | None = None, detail: str = "") -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
        #: extra context (e.g. the tail of ffmpeg's stderr), shown with --debug and in logs
        self.detail = detail


class UsageError(AutoclipError):
    exit_code = 2
    code = "usage"


class ConfigError(AutoclipError):
    exit_code = 2
    code = "config"


class MediaError(AutoclipError):
    """A file ffmpeg cannot use. ``code`` says why (``empty``, ``not_media``, ``truncated``...)."""

    code = "media"

    #: transient errors may succeed on retry (e.g. disk full, a killed process)
    transient = False


class DiskFullError(AutoclipError):
    code = "disk_full"
    transient = True


class StoreError(AutoclipError):
    code = "store"


class ModelError(AutoclipError):
    code = "model"


class LabelError(AutoclipError):
    code = "label"


class ClusterError(AutoclipError):
    """The Ray cluster cannot be joined, or a task failed on every try."""

    code = "cluster"
