"""`autoclip init DIR` and `autoclip config check`."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from autoclip import config as config_mod
from autoclip.commands import Context, add_command, add_group

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub, "init", cmd_init,
        help="create a deployment: a commented DIR/config.toml and its folders",
        summary="create a deployment (config.toml + folders)",
        example="autoclip init ~/autoclip && autoclip --config ~/autoclip/config.toml config check",
    )
    p.add_argument("dir", type=Path, help="deployment folder (created if missing)")

    grp = add_group(sub, "config", "configuration tools")
    add_command(
        grp, "check", cmd_config_check,
        help="validate the configuration; exit 2 naming each bad key",
        example="autoclip --config ~/autoclip/config.toml config check",
    )
    add_command(
        grp, "show", cmd_config_show,
        help="print the effective configuration (defaults filled in) as TOML-like text",
        example="autoclip config show",
    )


def init_deployment(folder: Path) -> Path:
    """Write folder/config.toml (never over an existing one) and create the folders it names."""
    folder.mkdir(parents=True, exist_ok=True)
    cfg_file = folder / config_mod.DEFAULT_NAME
    if cfg_file.exists():
        log.info("%s exists; leaving it as it is", cfg_file)
    else:
        from autoclip.fsutil import atomic_write_text

        atomic_write_text(cfg_file, config_mod.default_toml())
        log.info("wrote %s", cfg_file)
    cfg = config_mod.load(cfg_file)
    cfg.ensure_dirs()
    return cfg_file


def cmd_init(args: argparse.Namespace, ctx: Context) -> int:
    cfg_file = init_deployment(args.dir)
    cfg = config_mod.load(cfg_file)
    print(f"deployment ready: {cfg_file}")
    print(f"  drop VODs into   {cfg.path('inbox')}")
    print(f"  reels appear in  {cfg.path('reels')}")
    print(f"  next: autoclip --config {cfg_file} config check")
    return 0


def cmd_config_check(args: argparse.Namespace, ctx: Context) -> int:
    cfg = ctx.config  # raises ConfigError (exit 2) naming each bad key
    source = config_mod.config_path(ctx.config_path)
    where = source if source.exists() else "built-in defaults (no config file)"
    print(f"config ok: {where}")
    print(f"  inbox {cfg.path('inbox')}  reels {cfg.path('reels')}  database {cfg.path('database')}")
    return 0


def cmd_config_show(args: argparse.Namespace, ctx: Context) -> int:
    cfg = ctx.config
    for name, section in cfg:
        print(f"[{name}]")
        for key, value in section:
            print(f"{key} = {value!r}")
        print()
    return 0
