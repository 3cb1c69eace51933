"""The command line itself: help on every command, init, config check, exit codes."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from autoclip import cli, config

HEAVY = ("torch", "torchvision", "librosa", "matplotlib", "textual", "sklearn", "scipy")
MAX_HELP_LINES = 40


def command_paths() -> list[tuple[str, ...]]:
    """Every command and subcommand, e.g. ('init',), ('label', 'import')."""
    paths: list[tuple[str, ...]] = [()]

    def walk(parser: argparse.ArgumentParser, prefix: tuple[str, ...]) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    paths.append((*prefix, name))
                    walk(child, (*prefix, name))

    walk(cli.build_parser(), ())
    return paths


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        rc = cli.main(list(argv))
    except SystemExit as exit_:
        rc = int(exit_.code or 0)
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.mark.parametrize("path", command_paths(), ids=lambda p: " ".join(p) or "autoclip")
def test_help_fits_a_screen_and_shows_an_example(path: tuple[str, ...], capsys, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    rc, out, _ = run(capsys, *path, "--help")
    assert rc == 0
    lines = out.rstrip().splitlines()
    assert len(lines) <= MAX_HELP_LINES, f"`autoclip {' '.join(path)} --help` is {len(lines)} lines"
    assert "example" in out.lower()


def test_entry_point_and_fast_help() -> None:
    """`python -m autoclip --help` works and loads no heavy library."""
    out = subprocess.run([sys.executable, "-m", "autoclip", "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "usage: autoclip" in out.stdout
    code = ("import sys; from autoclip import cli; cli.build_parser(); "
            f"print([m for m in {HEAVY!r} if m in sys.modules])")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert loaded.stdout.strip() == "[]"


def test_version(capsys) -> None:
    rc, out, _ = run(capsys, "--version")
    assert rc == 0 and out.startswith("autoclip ")


def test_init_twice_keeps_the_users_edits(tmp_path: Path, capsys) -> None:
    deploy = tmp_path / "x"
    rc, out, _ = run(capsys, "init", str(deploy))
    assert rc == 0 and "config check" in out
    cfg_file = deploy / "config.toml"
    assert cfg_file.read_text() == config.default_toml()
    for folder in ("data/inbox", "data/reels", "data/failed", "data/models", "data/cache", "jobs"):
        assert (deploy / folder).is_dir(), folder
    edited = cfg_file.read_text().replace("fps = 4.0", "fps = 2.0") + "\n# my note\n"
    cfg_file.write_text(edited)
    (deploy / "data" / "reels").rmdir()
    rc, _, _ = run(capsys, "init", str(deploy))
    assert rc == 0 and cfg_file.read_text() == edited
    assert (deploy / "data" / "reels").is_dir()  # missing folders come back
    assert config.load(cfg_file).frames.fps == 2.0


def test_config_check(tmp_path: Path, capsys) -> None:
    deploy = tmp_path / "x"
    run(capsys, "init", str(deploy))
    cfg_file = deploy / "config.toml"
    rc, out, _ = run(capsys, "--config", str(cfg_file), "config", "check")
    assert rc == 0 and "config ok" in out

    cfg_file.write_text(cfg_file.read_text().replace("fps = 4.0", "fps = -1"))
    rc, out, err = run(capsys, "--config", str(cfg_file), "config", "check")
    assert rc == 2 and "frames.fps" in err and "-1" in err and out == ""

    cfg_file.write_text(config.default_toml().replace("[audio]", "colour = 'red'\n\n[audio]"))
    rc, _, err = run(capsys, "--config", str(cfg_file), "config", "check")
    assert rc == 2 and "frames.colour" in err and "unknown key" in err


def test_other_commands_validate_the_config_first(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "config.toml"
    bad.write_text("[media]\nmax_pixels = 'lots'\n")
    rc, _, err = run(capsys, "--config", str(bad), "probe", str(tmp_path / "whatever.mp4"))
    assert rc == 2 and "media.max_pixels" in err
    assert len(err.strip().splitlines()) == 1


def test_config_from_the_environment(tmp_path: Path, capsys, monkeypatch) -> None:
    path = tmp_path / "env" / "config.toml"
    path.parent.mkdir()
    path.write_text("[frames]\nfps = 2\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(config.ENV_VAR, str(path))
    rc, out, _ = run(capsys, "config", "show")
    assert rc == 0 and "fps = 2.0" in out
    rc, out, _ = run(capsys, "config", "check")
    assert rc == 0 and str(path) in out and str(path.parent / "data" / "inbox") in out


def test_missing_config_file_is_a_usage_error(tmp_path: Path, capsys) -> None:
    rc, _, err = run(capsys, "--config", str(tmp_path / "none.toml"), "config", "check")
    assert rc == 2 and "not found" in err and "autoclip init" in err
