#!/usr/bin/env bash
# The test command: brings up the local stack (or reuses a running one),
# checks formatting and lints, runs every test, and stops the stack again
# if this run started it.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
STATE="${LANZADERA_STATE:-$ROOT/.dev}"
cd "$ROOT"

started=0
# (grep without -q reads all of status's output: an early exit would make
# the pipeline fail under pipefail and a running stack look stopped.)
if ! "$ROOT/dev/stack.sh" status 2>/dev/null | grep running >/dev/null; then
  started=1
fi
cleanup() { if [ "$started" = 1 ]; then "$ROOT/dev/stack.sh" down || true; fi; }
trap cleanup EXIT

SECONDS=0
"$ROOT/dev/stack.sh" up >/dev/null
echo "[test] stack ready after ${SECONDS}s"
# shellcheck disable=SC1091
source "$STATE/stack.env"

cargo fmt --all --check
# Deployment artifacts (compose, Dockerfile, realm, Kumori) checked by
# validators that can fail.
"$ROOT/compose/validate.sh"
cargo clippy --workspace --all-targets -q -- -D warnings
# The full-system tests run the service binaries as processes.
cargo build --bins -q
cargo test --workspace --no-fail-fast
echo "[test] all done after ${SECONDS}s"
