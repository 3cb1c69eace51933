#!/usr/bin/env bash
# Nightly, not CI: the long learning experiments (`-m nightly`), e.g. the active-learning
# experiment (about 25 minutes on 2 cores). Same rules as the slow tests: a test that runs out of
# time fails. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} MPLBACKEND=Agg PYTHONUNBUFFERED=1
exec .venv/bin/python -m pytest -m nightly --timeout="${NIGHTLY_TEST_TIMEOUT:-3600}" -p no:cacheprovider -ra "$@"
