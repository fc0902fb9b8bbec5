#!/usr/bin/env bash
# Canary for the next releases: a throw-away venv from the NEWEST releases pyproject.toml allows (no lock), the
# package versions that differ from requirements/cpu.lock, then the README's test command (ruff + pytest) in it.
# Run it before refreshing the lock (scripts/lock/refresh.sh), and whenever a dependency publishes a release you
# care about (transformers, peft, torch, accelerate, bitsandbytes, kernels): green means the refresh is safe.
# Not part of CI or the default test run. ~10 min on 2 CPU cores.
# Usage: bash scripts/lock/canary.sh [pytest args...]
set -uo pipefail
cd "$(dirname "$0")/../.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 -m venv "$work/venv" && . "$work/venv/bin/activate"
pip install -q --upgrade pip >/dev/null
# torch stays at the lock's version unless CANARY_TORCH names another (PyPI's newest Linux torch is the multi-GB CUDA
# build; on a GPU machine CANARY_TORCH=torch tries the newest).
pip install -q "${CANARY_TORCH:-torch==$(sed -n 's/^torch==\([^ ;]*\).*/\1/p' requirements/cpu.lock | head -1)}" || exit 1
pip install -q --upgrade -e ".[dev]" || exit 1
echo "== versions that differ from requirements/cpu.lock (newest here, locked there):"
python scripts/lock/diff_lock.py requirements/cpu.lock
echo "== the test command on the newest releases:"
export LLAVA_CIT_CACHE="$work/cache"
ruff check llava_cit switch benchmarks scripts tests; lint=$?
python -m pytest -q "$@"; tests=$?
echo "== canary: ruff exit $lint, pytest exit $tests"
exit $(( lint || tests ))
