#!/usr/bin/env bash
# Set up (if needed) and run the whole loop on a generated sample deployment in ./demo:
# sample VODs + labels -> first model -> daemon -> a reel, its segment list and a review queue.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} MPLBACKEND=Agg
exec .venv/bin/autoclip demo "${@:-demo}"
