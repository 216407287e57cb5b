#!/usr/bin/env bash
# Runs the whole platform locally: the backing servers (dev/stack.sh), then
# the frontend, the workers and the observer as background processes whose
# pid files sit beside the servers', so `dev/stack.sh down` stops them all.
#
#   dev/platform.sh up     build, start, wait for the API, print how to use it
#   dev/platform.sh down   stop everything this checkout started
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
STATE="${LANZADERA_STATE:-$ROOT/.dev}"
# Exported: dev/stack.sh builds its provisioner in the same profile.
export PROFILE="${PROFILE:-release}"
WORKERS="${WORKERS:-1}"
API_PORT="${LZ_API_PORT:-8080}"
API="http://127.0.0.1:$API_PORT"

log() { printf '[platform] %s\n' "$*" >&2; }

# Makes a git repository of each example so jobs can clone it locally.
publish_examples() {
  local src name repo
  for src in "$ROOT"/examples/*/; do
    name="$(basename "$src")"
    repo="$STATE/repos/$name"
    rm -rf "$repo"
    mkdir -p "$repo"
    cp -R "$src". "$repo/"
    git -C "$repo" init -q -b main
    git -C "$repo" add -A
    git -C "$repo" -c user.name=lanzadera -c user.email=dev@lanzadera.local commit -qm "example $name"
  done
}

start() {
  local name=$1
  shift
  local pidfile="$STATE/pids/$name.pid"
  if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    log "$name already running (pid $(cat "$pidfile"))"
    return
  fi
  printf '\n--- %s: starting %s\n' "$(date '+%F %T')" "$name" >>"$STATE/logs/$name.log"
  setsid nohup "$@" >>"$STATE/logs/$name.log" 2>&1 </dev/null &
  echo $! >"$pidfile"
  log "started $name (pid $!, log .dev/logs/$name.log)"
}

cmd_up() {
  "$ROOT/dev/stack.sh" up >/dev/null
  # shellcheck disable=SC1091
  source "$STATE/stack.env"
  log "building the services ($PROFILE profile)"
  local flag=()
  [ "$PROFILE" = release ] && flag=(--release)
  (cd "$ROOT" && cargo build "${flag[@]}" --bins -q)
  local bin="$ROOT/target/$PROFILE"
  publish_examples
  export LZ_HTTP_ADDR="127.0.0.1:$API_PORT" LZ_PUBLIC_URL="$API"
  start frontend "$bin/lanzadera-frontend"
  local i
  for ((i = 1; i <= WORKERS; i++)); do
    LZ_WORKER_ID="worker-$i" LZ_WORK_DIR="$STATE/work/worker-$i" start "worker-$i" "$bin/lanzadera-worker"
  done
  start observer "$bin/lanzadera-observer"
  for ((i = 0; i < 150; i++)); do
    curl -fs "$API/health" >/dev/null 2>&1 && break
    sleep 0.2
  done
  curl -fs "$API/health" >/dev/null || { log "the API did not come up; see .dev/logs/frontend.log"; exit 1; }
  cat <<EOT

Lanzadera is running.
  API        $API          (OpenAPI: $API/api/openapi.json)
  Users      alice / alice-pass,  bob / bob-pass
  Workers    $WORKERS             (WORKERS=n make run for more)
  Logs       .dev/logs/         Stop: make down

Try it with the command ($bin/lanzadera; \`cargo install --path cli\` puts it on your PATH):
  $bin/lanzadera --api $API login              # a link and a code; sign in as alice
  $bin/lanzadera --api $API submit file://$STATE/repos/hello --arg Ada --wait
  $bin/lanzadera --api $API list
  $bin/lanzadera --api $API download <jobId> -o out/

Or with curl:
  TOKEN=\$(curl -s -X POST $API/auth/token -d username=alice -d password=alice-pass \\
          | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
  curl -s -H "Authorization: Bearer \$TOKEN" -H 'content-type: application/json' \\
       -d '{"url": "file://$STATE/repos/hello", "args": "Ada"}' $API/api/jobs
  curl -s -H "Authorization: Bearer \$TOKEN" $API/api/jobs          # poll until "succeeded"
  curl -s -H "Authorization: Bearer \$TOKEN" $API/api/jobs/<jobId>/files/greeting.txt

EOT
}

case "${1:-}" in
  up) cmd_up ;;
  down) "$ROOT/dev/stack.sh" down ;;
  *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
