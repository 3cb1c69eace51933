"""One rule for times typed by people (labels, CSV imports, `crop --at`) and one formatter."""

from __future__ import annotations

import pytest

from autoclip.timefmt import hms, parse_time, when


def test_parse_time_accepts_seconds_and_clock_times() -> None:
    assert parse_time("90") == 90.0
    assert parse_time(" 12.25 ") == 12.25
    assert parse_time("1:30") == 90.0
    assert parse_time("00:01:30.500") == 90.5
    assert parse_time("1:00:00") == 3600.0
    assert parse_time("00:00:01.0004") == 1.0
    assert parse_time(7) == 7.0
    assert parse_time("90:00") == 5400.0  # minutes without hours may pass 59


@pytest.mark.parametrize("bad", ["abc", "-1", "1:75", "1:60:00", "1:00:60", "1:5:00.5.5", "nan", "inf", "", "1:2:3:4", "1:-5"])
def test_parse_time_rejects(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_time(bad)


def test_crop_at_uses_the_same_rule(tmp_path, capsys) -> None:
    # `1:75` was 2:15 for `crop --at` and an error for labels: now an error for both, a usage error here
    from autoclip import cli

    rc = cli.main(["--config", str(tmp_path / "config.toml"), "crop", str(tmp_path / "missing.mp4"), "--at", "1:75"])
    assert rc == 2 and "1:75" in capsys.readouterr().err


def test_hms_forms_and_round_trip() -> None:
    assert hms(3725.9) == "01:02:05"  # cut, never rounded up (chapter starts)
    assert hms(3725.5, 3) == "01:02:05.500"
    assert hms(3725.5, 3, compact=True) == "1:02:05.500"
    assert hms(125.55, 1, compact=True) == "2:05.5"
    assert hms(59.96, 1, compact=True) == "0:59.9"  # never "0:60.0"
    assert hms(-3) == "00:00:00" and hms(float("nan")) == "00:00:00"
    for t in (0.0, 1.001, 59.999, 3599.5, 86400.25):
        for form in (hms(t, 3), hms(t, 3, compact=True)):
            assert parse_time(form) == pytest.approx(t, abs=1e-3)


def test_when() -> None:
    assert when(None) == "never"
    assert when(None, "?") == "?"
    assert len(when(1_700_000_000.0)) == len("2023-11-14 22:13")
    assert when(1_700_000_000.0, seconds=True).count(":") == 2
