#!/usr/bin/env bash
# The README walkthrough, done by itself against the running platform
# (`make run` first; `make demo` does both): log in, submit the numeric
# example job, poll it, download its result and print it.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
STATE="${LANZADERA_STATE:-$ROOT/.dev}"
API="${API:-http://127.0.0.1:${LZ_API_PORT:-8080}}"

json() { python3 -c "import json,sys; v=json.load(sys.stdin); print($1)"; }

echo "1. log in as alice"
TOKEN=$(curl -fsS -X POST "$API/auth/token" -d username=alice -d password=alice-pass | json 'v["token"]')
AUTH=(-H "Authorization: Bearer $TOKEN")

echo "2. submit the root-finding example: x^3 - 7x + 6 on [-4, 4]"
BODY=$(cat <<EOT
{"url": "file://$STATE/repos/roots",
 "args": "--tol 1e-12 --label demo",
 "config": {"coefficients": [1, 0, -7, 6], "interval": [-4, 4]}}
EOT
)
JOB=$(curl -fsS "${AUTH[@]}" -H 'content-type: application/json' -d "$BODY" "$API/api/jobs" | json 'v["jobId"]')
echo "   job $JOB"

echo "3. poll until it ends"
for _ in $(seq 600); do
  STATUS=$(curl -fsS "${AUTH[@]}" "$API/api/jobs/$JOB" | json 'v["status"]')
  case "$STATUS" in succeeded | failed | cancelled) break ;; esac
  sleep 0.2
done
echo "   $STATUS"
RECORD=$(curl -fsS "${AUTH[@]}" "$API/api/jobs/$JOB")
if [ "$STATUS" != succeeded ]; then
  echo "$RECORD"
  exit 1
fi
echo "$RECORD" | json '"   files: " + ", ".join(v["files"]) + "; elapsed %.2f s" % v["elapsedSeconds"]'

echo "4. download output/roots.csv"
URL=$(echo "$RECORD" | json '[u for u in v["outputFiles"] if u.endswith("roots.csv")][0]')
curl -fsS "${AUTH[@]}" "$URL"
echo "   and the job's stdout:"
curl -fsS "${AUTH[@]}" "$API/api/jobs/$JOB/logs"
