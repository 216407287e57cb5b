#!/usr/bin/env bash
# API benchmark: authenticated GET /api/status/{id} with many
# concurrent connections, and POST /api/addJob throughput. Runs a release
# frontend of its own against the local stack, on its own topics and
# database, with wrk (Debian) as the load generator. The generator and the
# services share the machine: the CPU seconds each process used are printed
# beside the rates.
#
#   bench/api.sh [seconds] [connections]
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DURATION="${1:-20}"
CONNS="${2:-1000}"
PORT="${BENCH_PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}"
API="http://127.0.0.1:$PORT"
RUN="bench-$(date +%s)"
OUT="${BENCH_OUT:-$ROOT/target/bench}"
mkdir -p "$OUT"

command -v wrk >/dev/null || { apt-get install -y wrk >/dev/null 2>&1 || sudo apt-get install -y wrk >/dev/null; }
"$ROOT/dev/stack.sh" up >/dev/null
# shellcheck disable=SC1091
source "${LANZADERA_STATE:-$ROOT/.dev}/stack.env"
(cd "$ROOT" && cargo build --release -q -p lanzadera-frontend)

export LZ_HTTP_ADDR="127.0.0.1:$PORT" LZ_MONGO_DB="$RUN" LZ_JOBS_TOPIC="$RUN.jobs" \
  LZ_STATUS_TOPIC="$RUN.status" LZ_IGNORE_TOPIC="$RUN.ignore" LZ_RECORDER_GROUP="$RUN-recorder" \
  LZ_JOBS_PARTITIONS=8 LZ_STATUS_PARTITIONS=4 RUST_LOG=warn
"$ROOT/target/release/lanzadera-frontend" >"$OUT/frontend.log" 2>&1 &
FRONTEND=$!
trap 'kill $FRONTEND 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -fs "$API/health" >/dev/null 2>&1 && break; sleep 0.1; done

cpu_seconds() { # user+system CPU seconds of a pid
  awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$1/stat"
}
pid_of() { pgrep -f "$1" | head -n1; }
MONGO=$(pid_of secantusd-rs); KAFKA=$(pid_of "tansu broker")

TOKEN=$(curl -fs -X POST "$API/auth/token" -d username=alice -d password=alice-pass |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
export BENCH_TOKEN="$TOKEN"
JOB=$(curl -fs -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' \
  -d '{"url":"https://git.example.com/acme/bench.git","args":"-n 1"}' "$API/api/addJob" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["jobId"])')

measure() { # name, then wrk arguments
  local name=$1; shift
  local f0 m0 k0
  f0=$(cpu_seconds $FRONTEND); m0=$(cpu_seconds "$MONGO"); k0=$(cpu_seconds "$KAFKA")
  local line
  line=$(wrk "$@" -s "$ROOT/bench/report.lua" | tail -n1)
  local f1 m1 k1
  f1=$(cpu_seconds $FRONTEND); m1=$(cpu_seconds "$MONGO"); k1=$(cpu_seconds "$KAFKA")
  python3 - "$name" "$line" "$f0" "$f1" "$m0" "$m1" "$k0" "$k1" <<'PY'
import json, sys
name, line = sys.argv[1], json.loads(sys.argv[2])
f0, f1, m0, m1, k0, k1 = map(float, sys.argv[3:])
secs = line["seconds"]
line.update(scenario=name,
            frontend_cpu_cores=round((f1 - f0) / secs, 2),
            mongo_cpu_cores=round((m1 - m0) / secs, 2),
            kafka_cpu_cores=round((k1 - k0) / secs, 2))
line["rps_per_frontend_core"] = round(line["rps"] / max(line["frontend_cpu_cores"], 0.01))
print(json.dumps(line))
PY
}

RSS_BEFORE=$(awk '/VmRSS/{print $2}' "/proc/$FRONTEND/status")
# Warm the connection pools and the key cache.
wrk -t2 -c50 -d2s -s "$ROOT/bench/report.lua" "$API/api/status/$JOB" >/dev/null
measure "GET /api/status/{id}, $CONNS connections" -t2 -c"$CONNS" -d"${DURATION}s" --timeout 5s "$API/api/status/$JOB" | tee "$OUT/read.json"
# The same users with a think time: 1,000 connections each polling every
# 0.5 s offer about 2,000 requests/s, below capacity.
BENCH_THINK_MS=500 measure "GET /api/status/{id}, $CONNS connections, one request per 0.5 s each" \
  -t2 -c"$CONNS" -d"${DURATION}s" --timeout 5s "$API/api/status/$JOB" | tee "$OUT/read-paced.json"
RSS_AFTER=$(awk '/VmRSS/{print $2}' "/proc/$FRONTEND/status")
BENCH_METHOD=POST BENCH_BODY='{"url":"https://git.example.com/acme/bench.git","args":["-n","1"]}' \
  measure "POST /api/addJob, 64 connections" -t2 -c64 -d"$((DURATION / 2))s" --timeout 10s "$API/api/addJob" | tee "$OUT/submit.json"
echo "{\"frontend_rss_kib_before\": $RSS_BEFORE, \"frontend_rss_kib_after_read\": $RSS_AFTER}" | tee "$OUT/memory.json"
ACCEPTED=$(curl -fs -H "Authorization: Bearer $TOKEN" "$API/api/jobs?per_page=1" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["total"])')
echo "{\"jobs_recorded\": $ACCEPTED}" | tee "$OUT/recorded.json"
