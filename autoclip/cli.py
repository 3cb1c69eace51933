"""Command-line entry point: argument parsing only.

Each area of the product registers its subcommands from ``autoclip/commands/<area>.py``
(``register(subparsers)``, listed in ``COMMAND_MODULES``); a handler receives the parsed ``args`` and a ``Context`` that loads
and validates the configuration on first use. Heavy libraries (torch, librosa) are imported
inside handlers so ``autoclip --help`` stays instant.
"""

from __future__ import annotations

import argparse
import errno
import logging
import sqlite3
import sys
from collections.abc import Sequence

from autoclip import __version__
from autoclip.child import INTERNAL, INTERRUPTED, OK, report_outcome
from autoclip.commands import crop, daemon, demo, labels, media, models, process, review, setup
from autoclip.errors import AutoclipError, DiskFullError
from autoclip.log import setup_logging

COMMAND_MODULES = (setup, media, labels, models, process, crop, review, daemon, demo)

EPILOG = """examples:
  autoclip init ~/autoclip                   create a deployment (config.toml + folders)
  autoclip --config ~/autoclip/config.toml daemon
  autoclip process stream.mkv --json         one VOD -> reel + segment list
  autoclip review                            answer the review queue with single keys
"""

log = logging.getLogger("autoclip")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="autoclip",
        description="Turn long stream VODs into highlight reels, and learn from a few seconds of review a day.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", metavar="PATH", help="config file (default ./config.toml or $AUTOCLIP_CONFIG)")
    parser.add_argument("--debug", action="store_true", help="debug logging and tracebacks on errors")
    parser.add_argument("--quiet", "-q", action="store_true", help="only warnings and errors on stderr")
    parser.add_argument("--version", action="version", version=f"autoclip {__version__}")
    parser.set_defaults(func=None, _group_parser=None)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMAND_MODULES:  # in --help order
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(debug=args.debug, quiet=args.quiet)
    if args.func is None:
        # a group without its subcommand (e.g. `autoclip label`) prints that group's help
        (args._group_parser or parser).print_help()
        return 0 if args.command is None else 2
    from autoclip.commands import Context

    ctx = Context(config_path=args.config, debug=args.debug)
    try:
        try:
            rc = int(args.func(args, ctx) or 0)
        except OSError as err:
            if err.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            raise DiskFullError(f"disk full: {err}; free space, then try again") from err
    except AutoclipError as err:
        if args.debug:
            log.exception("failed")
            if err.detail:
                print(err.detail, file=sys.stderr)
        print(f"autoclip: error: {err}", file=sys.stderr)
        report_outcome(False, err.code, str(err))
        return err.exit_code
    except sqlite3.Error as err:  # a bug or a damaged file: still one line, never a traceback
        if args.debug:
            log.exception("failed")
        print(f"autoclip: error: database: {err} (if it says locked, another autoclip process held it "
              f"longer than the busy timeout: try again; otherwise run with --debug and report it)", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("autoclip: interrupted", file=sys.stderr)
        report_outcome(False, INTERRUPTED, "interrupted")
        return 130
    except BrokenPipeError:
        report_outcome(True, OK, "")
        return 0
    except Exception as err:  # a bug: said in the outcome, then the traceback as usual
        report_outcome(False, INTERNAL, f"internal error: {type(err).__name__}: {err}")
        raise
    report_outcome(rc == 0, OK if rc == 0 else f"exit_{rc}", "" if rc == 0 else f"exit status {rc}")
    return rc

if __name__ == "__main__":
    raise SystemExit(main())
