"""CI's slow phase (`scripts/slow.sh`, called by `.ci/run`): a slow test that runs out of time,
or a run that collects none, fails; it is never reported as passed or skipped."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

TESTS = {
    "test_ok.py": "import pytest\n\n@pytest.mark.slow\ndef test_quick():\n    assert True\n",
    "test_hangs.py": "import time, pytest\n\n@pytest.mark.slow\ndef test_hangs():\n    time.sleep(60)\n",
    "test_fast_only.py": "def test_not_slow():\n    assert True\n",
}


@pytest.fixture
def suite(tmp_path: Path) -> Path:
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    slow: slow\n")
    for name, text in TESTS.items():
        (tmp_path / name).write_text(text)
    return tmp_path


def slow_run(*args: str, per_test: int = 60, budget: int = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "SLOW_TEST_TIMEOUT": str(per_test), "SLOW_BUDGET": str(budget),
           "AUTOCLIP_PYTHON": sys.executable}
    return subprocess.run(["bash", str(ROOT / "scripts" / "slow.sh"), *args], capture_output=True, text=True,
                          env=env, timeout=180)


def test_a_passing_slow_test_passes(suite: Path) -> None:
    res = slow_run(str(suite / "test_ok.py"))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "1 passed" in res.stdout


def test_a_slow_test_past_its_timeout_fails(suite: Path) -> None:
    res = slow_run(str(suite / "test_ok.py"), str(suite / "test_hangs.py"), per_test=2)
    assert res.returncode != 0
    assert "1 failed, 1 passed" in res.stdout and "Timeout" in res.stdout


def test_running_out_of_the_whole_budget_fails(suite: Path) -> None:
    res = slow_run(str(suite / "test_hangs.py"), per_test=60, budget=4)
    assert res.returncode != 0
    assert "used up its 4s budget" in res.stderr


def test_no_slow_test_collected_fails(suite: Path) -> None:
    res = slow_run(str(suite / "test_fast_only.py"))
    assert res.returncode != 0 and "no slow test was collected" in res.stderr
