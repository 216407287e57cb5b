#!/usr/bin/env bash
# Benchmark harness: `make bench` (short) and `make bench-full`.
#
#   bench/bench.sh short   about four minutes after the build; for before/after
#                          comparisons; writes target/bench/short-<time>/
#                          and target/bench/latest-short.json
#   bench/bench.sh full    the published figures: also rewrites the generated
#                          part of docs/benchmarks.md and docs/bench/latest.json
#
# Starts the local stack (dev/stack.sh up), builds the release binaries once,
# installs the load tools when missing (Locust pinned in
# bench/locust-requirements.txt, cached in ~/.cache/lanzadera/locust-<version>;
# wrk from Debian), then the harness (bench/lzbench, `python3 -m lzbench`)
# runs the frontend, workers and observer from target/release on a namespace
# of their own (topics, groups, database), the seven scenarios, and stops
# everything it started. Offline check of its report:
# PYTHONPATH=bench python3 -m lzbench.selftest
# Compare two runs: bench/compare.py OLD.json NEW.json
set -euo pipefail

MODE="${1:-short}"
case "$MODE" in short | full) ;; *) echo "usage: $0 short|full" >&2; exit 2 ;; esac
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CACHE="${LANZADERA_CACHE:-$HOME/.cache/lanzadera}"
LOCUST_VERSION="$(sed -n 's/^locust==//p' "$ROOT/bench/locust-requirements.txt")"
LOCUST_VENV="$CACHE/locust-$LOCUST_VERSION"
START="$(date +%s.%N)"

log() { printf '[bench] %s\n' "$*" >&2; }

log "local stack"
PROFILE=release "$ROOT/dev/stack.sh" up >/dev/null

log "release build (cargo build --release --bins)"
BUILD_START="$(date +%s.%N)"
(cd "$ROOT" && cargo build --release --bins -q)
BUILD_SECONDS="$(python3 -c "import sys; print(round($(date +%s.%N) - $BUILD_START, 1))")"

if ! command -v wrk >/dev/null; then
  log "installing wrk (Debian)"
  apt-get install -y wrk >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y wrk >/dev/null; }
fi
if [ ! -f "$LOCUST_VENV/.complete" ]; then
  log "installing Locust $LOCUST_VERSION into $LOCUST_VENV (once)"
  rm -rf "$LOCUST_VENV"
  python3 -m venv "$LOCUST_VENV"
  "$LOCUST_VENV/bin/pip" install -q --disable-pip-version-check -r "$ROOT/bench/locust-requirements.txt"
  touch "$LOCUST_VENV/.complete"
fi

PYTHONPATH="$ROOT/bench${PYTHONPATH:+:$PYTHONPATH}" exec python3 -m lzbench --mode "$MODE" \
  --locust "$LOCUST_VENV/bin/locust" --build-seconds "$BUILD_SECONDS" --started "$START" "${@:2}"
