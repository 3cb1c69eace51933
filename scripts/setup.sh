#!/usr/bin/env bash
# One-time (idempotent) set-up: ffmpeg from Debian's packages when missing, then a virtual
# environment in .venv with the pinned packages and autoclip itself. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\033[1m[setup]\033[0m %s\n' "$*" >&2; }

if ! command -v ffmpeg >/dev/null 2>&1 || ! command -v ffprobe >/dev/null 2>&1; then
    say "installing ffmpeg (Debian package)"
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq ffmpeg fonts-dejavu-core >/dev/null
fi

PY=${PYTHON:-}
if [ -z "$PY" ]; then
    for cand in python3.11 python3; do
        if command -v "$cand" >/dev/null 2>&1; then PY=$cand; break; fi
    done
fi
[ -n "$PY" ] || { echo "setup: Python 3.11 not found; install python3.11 and python3.11-venv" >&2; exit 1; }

stamp=.venv/.autoclip-installed
# pyproject.toml is the one dependency list (exact torch pins, the dev and ray extras)
extras=${AUTOCLIP_EXTRAS:-dev,ray}
want=$( (cat pyproject.toml; echo "$extras") | sha256sum | cut -c1-16)
if [ -x .venv/bin/python ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    say "virtual environment up to date (.venv)"
    exit 0
fi
if [ ! -x .venv/bin/python ]; then
    say "creating virtual environment .venv with $($PY --version)"
    "$PY" -m venv .venv
fi
say "installing pinned packages (torch ${TORCH_VERSION:-2.14.1} and friends; the first time takes a few minutes)"
say "and the extras: $extras (dev: tests and linting; ray: the cluster backend and its tests)"
.venv/bin/python -m pip install -qq --disable-pip-version-check -e ".[$extras]"
echo "$want" > "$stamp"
say "ready: .venv/bin/autoclip --help"
