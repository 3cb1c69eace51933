#!/usr/bin/env bash
# The slow tests (`-m slow`: end-to-end runs, soak, cluster and kill-loop tests) in ONE pytest
# run, as CI runs them. Each test may take SLOW_TEST_TIMEOUT seconds (default 1500; a test's own
# @pytest.mark.timeout wins) and the whole run SLOW_BUDGET seconds (default 4500). A test that
# runs out of time FAILS the run (non-zero exit): it is never counted as passed or skipped, and
# neither is a run that collected no slow test at all. Extra arguments go to pytest.
# Needs the virtual environment (`bash scripts/setup.sh`).
set -uo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} MPLBACKEND=Agg PYTHONUNBUFFERED=1
per_test=${SLOW_TEST_TIMEOUT:-1500}
budget=${SLOW_BUDGET:-4500}
py=${AUTOCLIP_PYTHON:-.venv/bin/python}

timeout --signal=INT --kill-after=60 "$budget" \
    "$py" -m pytest -m slow --timeout="$per_test" -p no:cacheprovider -ra "$@"
rc=$?
case $rc in
    0) ;;
    124|137) echo "slow tests: FAILED: the run used up its ${budget}s budget; the test running then did not finish" >&2
             rc=1 ;;
    5) echo "slow tests: FAILED: no slow test was collected (a check that did not run is not a pass)" >&2
       rc=1 ;;
    *) echo "slow tests: FAILED (pytest exit $rc)" >&2 ;;
esac
exit "$rc"
