#!/usr/bin/env bash
# Set up (if needed) and run the default test suite (about 5-10 minutes on 2 cores).
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -m slow` for the heavy end-to-end tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} MPLBACKEND=Agg PYTHONUNBUFFERED=1
exec .venv/bin/python -m pytest "$@"
