"""Configuration: validation that names the key, paths relative to the file, the default file."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from autoclip import config
from autoclip.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_are_valid_and_the_default_file_parses_to_them(tmp_path: Path) -> None:
    cfg = config.from_dict({}, root=tmp_path)
    assert cfg.frames.fps == 4.0 and cfg.frames.size == 128
    assert cfg.audio.sample_rate == 16000 and cfg.audio.n_mels == 64 and cfg.audio.fmax == 8000 and cfg.audio.window == 1.0
    parsed = config.from_dict(tomllib.loads(config.default_toml()), root=tmp_path)
    assert parsed.model_dump() == cfg.model_dump()


def test_every_key_in_the_default_file_is_commented() -> None:
    lines = config.default_toml().splitlines()
    for i, line in enumerate(lines):
        if line and not line.startswith(("#", "[")):
            assert lines[i - 1].startswith("#"), f"no comment above {line!r}"


def test_repo_config_toml_is_the_generated_default() -> None:
    """config.toml in the repository is generated (`python -m autoclip.config`); regenerate after adding keys."""
    assert (REPO / "config.toml").read_text(encoding="utf-8") == config.default_toml()


@pytest.mark.parametrize(("text", "words"), [
    ("[frames]\nfps = -1\n", ["frames.fps", "-1", "greater than 0"]),
    ("[frames]\nfps = 'fast'\n", ["frames.fps", "'fast'"]),
    ("[frames]\nsize = 4096\n", ["frames.size", "4096", "512"]),
    ("[frames]\nfsp = 4\n", ["unknown key", "frames.fsp"]),
    ("[nonsense]\nx = 1\n", ["unknown key", "nonsense"]),
    ("[audio]\nsample_rate = 8000\n", ["audio", "fmax", "sample_rate / 2"]),
    ("[selection]\nthreshold = 0.3\nlow_threshold = 0.5\n", ["selection", "low_threshold"]),
    ("[frames]\ncrop = [1, 2, 3]\n", ["frames.crop"]),
])
def test_bad_values_name_the_key(tmp_path: Path, text: str, words: list[str]) -> None:
    path = write(tmp_path / "config.toml", text)
    with pytest.raises(ConfigError) as err:
        config.load(path)
    message = str(err.value)
    assert err.value.exit_code == 2 and str(path) in message
    for word in words:
        assert word in message


def test_every_problem_gets_its_own_line(tmp_path: Path) -> None:
    path = write(tmp_path / "config.toml", "[frames]\nfps = -1\nsize = 1\nbogus = 2\n[review]\nper_vod = -3\n")
    with pytest.raises(ConfigError) as err:
        config.load(path)
    lines = str(err.value).splitlines()
    assert len(lines) == 4
    assert {w for w in ("frames.fps", "frames.size", "frames.bogus", "review.per_vod") for ln in lines if w in ln} == {
        "frames.fps", "frames.size", "frames.bogus", "review.per_vod"}


def test_invalid_toml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        config.load(write(tmp_path / "broken.toml", "[frames\nfps = 4\n"))
    with pytest.raises(ConfigError, match="not found"):
        config.load(tmp_path / "nope.toml")


def test_relative_paths_resolve_against_the_config_folder(tmp_path: Path, monkeypatch) -> None:
    deploy = tmp_path / "deploy"
    path = write(deploy / "config.toml", '[paths]\ninbox = "in"\nreels = "/abs/reels"\n')
    monkeypatch.chdir(tmp_path)  # not the config's folder
    cfg = config.load(Path("deploy/config.toml"))
    assert cfg.path("inbox") == deploy.resolve() / "in"
    assert cfg.path("reels") == Path("/abs/reels")
    assert cfg.path("database") == deploy.resolve() / "data" / "autoclip.db"
    assert cfg.path("jobs") == deploy.resolve() / "jobs"
    cfg.ensure_dirs()
    assert (deploy / "in").is_dir() and (deploy / "jobs").is_dir() and (deploy / "data").is_dir()
    assert path.exists()


def test_config_file_from_the_environment(tmp_path: Path, monkeypatch) -> None:
    path = write(tmp_path / "elsewhere" / "my.toml", "[frames]\nfps = 2\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(config.ENV_VAR, str(path))
    cfg = config.load()
    assert cfg.frames.fps == 2 and cfg.root == path.parent.resolve()
    assert config.load(write(tmp_path / "explicit.toml", "[frames]\nfps = 3\n")).frames.fps == 3  # --config wins
    monkeypatch.setenv(config.ENV_VAR, str(tmp_path / "gone.toml"))
    with pytest.raises(ConfigError, match="not found"):
        config.load()


def test_no_config_file_means_defaults_in_the_current_folder(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(config.ENV_VAR, raising=False)
    cfg = config.load()
    assert cfg.frames.fps == 4.0 and cfg.path("inbox") == tmp_path.resolve() / "data" / "inbox"


def test_crop_profiles_are_chosen_by_file_name(make_cfg) -> None:
    cfg = make_cfg({"frames": {
        "crop": [0, 0, 100, 100],
        "profiles": {
            "valorant": {"match": "valorant-*", "box": [960, 540, 320, 240]},
            "chess": {"match": "*chess*.mkv", "box": [10, 20, 30, 40]},
            "broad": {"match": "*", "box": [1, 1, 1, 1]},
        },
    }})
    assert cfg.frames.crop_for("/vods/valorant-2024-05-01.mp4") == (960, 540, 320, 240)
    assert cfg.frames.crop_for(Path("x/blitz chess night.mkv")) == (10, 20, 30, 40)
    assert cfg.frames.crop_for("other.mp4") == (1, 1, 1, 1)  # first match wins, in file order
    plain = make_cfg({"frames": {"crop": [0, 0, 100, 100]}})
    assert plain.frames.crop_for("anything.mp4") == (0, 0, 100, 100)
    assert make_cfg().frames.crop_for("anything.mp4") is None


def test_crop_profile_from_toml(tmp_path: Path) -> None:
    path = write(tmp_path / "config.toml",
                 '[frames.profiles.valorant]\nmatch = "valorant-*"\nbox = [960, 540, 320, 240]\n')
    assert config.load(path).frames.crop_for("valorant-1.mkv") == (960, 540, 320, 240)
    bad = write(tmp_path / "bad.toml", '[frames.profiles.x]\nmatch = "x*"\nbox = [1, 2]\n')
    with pytest.raises(ConfigError, match="frames.profiles.x.box"):
        config.load(bad)


def test_reference_markdown_lists_every_key() -> None:
    ref = config.reference_markdown()
    for name, section in config.Config.model_fields.items():
        assert f"[{name}]" in ref
        for key in section.annotation.model_fields:  # type: ignore[union-attr]
            assert f"`{key}`" in ref
