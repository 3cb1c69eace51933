"""Subcommand modules. Each defines ``register(subparsers)``; handlers take ``(args, ctx)``."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autoclip.config import Config, load
from autoclip.fsutil import apply_umask


@dataclass
class Context:
    """What every handler gets: the config (loaded and validated on first use)."""

    config_path: str | None = None
    debug: bool = False
    _config: Config | None = field(default=None, repr=False)

    @property
    def config(self) -> Config:
        if self._config is None:
            self._config = load(self.config_path)
            apply_umask(self._config.paths.umask)  # what every command publishes gets these permissions
        return self._config


def add_command(
    sub: argparse._SubParsersAction,
    name: str,
    func: Any,
    help: str,
    example: str = "",
    description: str = "",
    summary: str = "",
) -> argparse.ArgumentParser:
    """Add a subcommand whose --help says what it does and shows an example.

    ``summary`` (default ``help``) is the one line shown in the parent's command list.
    """
    epilog = f"example:\n  {example}" if example else None
    p = sub.add_parser(
        name,
        help=summary or help,
        description=description or help,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.set_defaults(func=func)
    return p


def add_group(sub: argparse._SubParsersAction, name: str, help: str, example: str = "",
              summary: str = "") -> argparse._SubParsersAction:
    """A command with its own subcommands (``autoclip label import ...``)."""
    example = example or f"autoclip {name} SUBCOMMAND --help    (each subcommand's help has an example)"
    p = sub.add_parser(name, help=summary or help, description=help, epilog=f"example:\n  {example}",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.set_defaults(func=None, _group_parser=p)
    return p.add_subparsers(dest=f"{name}_command", metavar="SUBCOMMAND")


def add_json(p: argparse.ArgumentParser) -> None:
    """``--json``: the command's result as one JSON document on stdout (progress and logs on stderr)."""
    p.add_argument("--json", action="store_true", help="print one JSON document on stdout")


def add_vod(p: argparse.ArgumentParser) -> None:
    """The ``VOD`` positional argument (``args.vod``, a Path)."""
    p.add_argument("vod", type=Path, metavar="VOD", help="video file (use `--` before a name starting with '-')")


def add_job_dir(p: argparse.ArgumentParser) -> None:
    """``--job-dir DIR`` (``args.job_dir``, a Path or None)."""
    p.add_argument("--job-dir", type=Path, metavar="DIR", help="job folder (default: jobs/<id from the content>)")


def emit_json(obj: Any) -> None:
    json.dump(obj, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")
    sys.stdout.flush()
