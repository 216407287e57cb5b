#!/usr/bin/env bash
# Local platform stack for development and tests: real servers speaking the
# Kafka, MongoDB, S3 and OpenID Connect protocols, on 127.0.0.1, without Docker.
# See docs/local-stack.md for why these particular servers.
#
#   dev/stack.sh up       install (or skip), start what is not running, create
#                         topics, bucket and indexes (lanzadera-provision),
#                         write and print .dev/stack.env
#   dev/stack.sh down     stop everything with a pid file under .dev/pids/
#   dev/stack.sh status   one line per server
#   dev/stack.sh env      print .dev/stack.env (source it: `. .dev/stack.env`)
#
# Environment: LANZADERA_STATE (default <repo>/.dev), LANZADERA_CACHE (default
# ~/.cache/lanzadera), LZ_KAFKA_PORT (9092), LZ_MONGO_PORT (27017),
# LZ_S3_PORT (8333; SeaweedFS also takes the next three ports and each +10000),
# LZ_OIDC_PORT (8180), LZ_STACK_TIMEOUT (seconds to wait for each server, 60).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
CACHE="${LANZADERA_CACHE:-$HOME/.cache/lanzadera}"
STATE="${LANZADERA_STATE:-$REPO/.dev}"
PIDS="$STATE/pids"
LOGS="$STATE/logs"
DATA="$STATE/data"
ENV_FILE="$STATE/stack.env"
TIMEOUT="${LZ_STACK_TIMEOUT:-60}"

# shellcheck source=versions.env
. "$HERE/versions.env"
TANSU="$CACHE/tansu-$TANSU_VERSION/bin/tansu"
SECANTUS="$CACHE/secantus-$SECANTUS_VERSION/bin/secantusd-rs"
WEED="$CACHE/seaweedfs-$SEAWEED_VERSION/bin/weed"
OIDC_SERVER="$HERE/oidc/server.mjs"
REALM_FILE="$REPO/keycloak/lanzadera-realm.json"

HOST=127.0.0.1
KAFKA_PORT="${LZ_KAFKA_PORT:-9092}"
MONGO_PORT="${LZ_MONGO_PORT:-27017}"
S3_PORT="${LZ_S3_PORT:-8333}"
OIDC_PORT="${LZ_OIDC_PORT:-8180}"

# Development-only credentials. The realm file is the single source for the
# OIDC client and users; these must match it.
S3_BUCKET=lanzadera
S3_REGION=us-east-1
S3_ACCESS_KEY=lanzadera-dev
S3_SECRET_KEY=lanzadera-dev-secret-key
OIDC_REALM=lanzadera
OIDC_CLIENT_ID=lanzadera-api
OIDC_CLIENT_SECRET=lanzadera-dev-secret

# Topic name and partition count.

# Our servers, in start order (down stops them in reverse).
SERVERS=(kafka mongo s3 oidc)

log() { printf '[stack] %s\n' "$*" >&2; }
die() { printf '[stack] error: %s\n' "$*" >&2; exit 1; }

server_port() {
  case "$1" in
    kafka) echo "$KAFKA_PORT" ;;
    mongo) echo "$MONGO_PORT" ;;
    s3) echo "$S3_PORT" ;;
    oidc) echo "$OIDC_PORT" ;;
  esac
}

# What the server's command line contains; checked before trusting or killing
# a pid from a pid file, so a pid reused by an unrelated process is left alone.
server_signature() {
  case "$1" in
    kafka) echo "$TANSU broker" ;;
    mongo) echo "$SECANTUS" ;;
    s3) echo "$WEED mini" ;;
    oidc) echo "$OIDC_SERVER" ;;
  esac
}

server_label() {
  case "$1" in
    kafka) echo "kafka (tansu)" ;;
    mongo) echo "mongo (secantus)" ;;
    s3) echo "s3 (seaweedfs)" ;;
    oidc) echo "oidc (oidc-provider)" ;;
    *) echo "$1" ;;
  esac
}

port_open() {
  timeout 1 bash -c "exec 3<>/dev/tcp/$HOST/$1" 2>/dev/null
}

pid_alive() {
  [ -n "$1" ] && kill -0 "$1" 2>/dev/null
}

cmdline() {
  tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null || true
}

# Prints the pid of our running server $1, or nothing.
server_pid() {
  local name=$1 file="$PIDS/$1.pid" pid
  [ -f "$file" ] || return 0
  pid="$(head -n1 "$file")"
  if pid_alive "$pid" && [[ "$(cmdline "$pid")" == *"$(server_signature "$name")"* ]]; then
    echo "$pid"
  fi
}

# HTTP-level readiness where a port alone says too little.
server_ready() {
  local name=$1 port code
  port="$(server_port "$name")"
  case "$name" in
    kafka | mongo) port_open "$port" ;;
    s3)
      # An unsigned request answers 403 once the S3 gateway is up.
      code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://$HOST:$port/" || true)"
      [ -n "$code" ] && [ "$code" != 000 ]
      ;;
    oidc)
      curl -sf -o /dev/null --max-time 2 \
        "http://$HOST:$port/realms/$OIDC_REALM/.well-known/openid-configuration"
      ;;
  esac
}

# Starts "$@" as server $1 in its own session (setsid: own process group, so
# down can stop it with all its children; survives the calling shell; nohup
# in case a terminal hangs up). Outside job control a background child is not
# a group leader, so setsid does not fork and $! is the server's own pid.
launch() {
  local name=$1 logfile="$LOGS/$1.log"
  shift
  printf '\n--- %s: starting %s\n' "$(date '+%F %T')" "$name" >>"$logfile"
  setsid nohup "$@" >>"$logfile" 2>&1 </dev/null &
  echo $! >"$PIDS/$name.pid"
}

start_kafka() {
  # memory:// storage: topics and messages are gone after a restart; up
  # re-creates the topics.
  launch kafka "$TANSU" broker \
    --listener-url "tcp://$HOST:$KAFKA_PORT" \
    --advertised-listener-url "tcp://$HOST:$KAFKA_PORT" \
    --storage-engine memory://tansu/
}

start_mongo() {
  mkdir -p "$DATA/mongo"
  launch mongo "$SECANTUS" --host "$HOST" --port "$MONGO_PORT" \
    --storage-path "$DATA/mongo" --log-file-max 16MB
}

start_s3() {
  mkdir -p "$DATA/s3"
  local config="$STATE/s3.json"
  (umask 077 && cat >"$config" <<EOF
{"identities":[{"name":"lanzadera-dev","credentials":[{"accessKey":"$S3_ACCESS_KEY","secretKey":"$S3_SECRET_KEY"}],"actions":["Admin","Read","List","Tagging","Write"]}]}
EOF
  )
  launch s3 "$WEED" mini -dir="$DATA/s3" -ip="$HOST" -ip.bind="$HOST" \
    -master.port=$((S3_PORT + 1)) -volume.port=$((S3_PORT + 2)) -filer.port=$((S3_PORT + 3)) \
    -s3.port="$S3_PORT" -s3.config="$config" -webdav=false -admin.ui=false \
    -s3.port.iceberg=0 -s3.port.lance=0
}

start_oidc() {
  # The signing key is kept in the data dir so tokens stay valid across restarts.
  launch oidc env LANZADERA_CACHE="$CACHE" LZ_OIDC_HOST="$HOST" LZ_OIDC_PORT="$OIDC_PORT" \
    LZ_OIDC_DATA_DIR="$DATA/oidc" LZ_OIDC_REALM_FILE="$REALM_FILE" \
    node "$OIDC_SERVER"
}

wait_ready() {
  local name=$1 pid=$2 deadline=$((SECONDS + TIMEOUT))
  until server_ready "$name"; do
    if ! pid_alive "$pid"; then
      tail -n 20 "$LOGS/$name.log" >&2 || true
      rm -f "$PIDS/$name.pid"
      die "$(server_label "$name") exited during start; see $LOGS/$name.log"
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      tail -n 20 "$LOGS/$name.log" >&2 || true
      stop_pid "$name" "$pid"
      rm -f "$PIDS/$name.pid"
      die "$(server_label "$name") not ready on port $(server_port "$name") after ${TIMEOUT}s; see $LOGS/$name.log"
    fi
    sleep 0.3
  done
}

ensure_server() {
  local name=$1 pid port
  port="$(server_port "$name")"
  pid="$(server_pid "$name")"
  if [ -n "$pid" ]; then
    # Ours and alive: reuse it (waiting, in case it is still starting).
    wait_ready "$name" "$pid"
    log "$(server_label "$name") already running (pid $pid, port $port)"
    return
  fi
  rm -f "$PIDS/$name.pid"
  local p
  local ports=("$port")
  [ "$name" = s3 ] && ports+=($((port + 1)) $((port + 2)) $((port + 3)))
  for p in "${ports[@]}"; do
    if port_open "$p"; then
      die "port $p is taken by a process this script did not start; stop it or set LZ_$(tr '[:lower:]' '[:upper:]' <<<"$name")_PORT"
    fi
  done
  "start_$name"
  pid="$(head -n1 "$PIDS/$name.pid")"
  wait_ready "$name" "$pid"
  log "$(server_label "$name") started (pid $pid, port $port, log $LOGS/$name.log)"
}

# Topics, bucket and indexes, created by the provisioner the services use
# (common/src/provision.rs), built here in the profile $PROFILE names
# (debug unless the caller builds release binaries anyway).
provision() {
  local profile="${PROFILE:-debug}" flag=() target="${CARGO_TARGET_DIR:-$REPO/target}"
  [ "$profile" = release ] && flag=(--release)
  log "provisioning topics, bucket and indexes (building lanzadera-provision, $profile)"
  (cd "$REPO" && cargo build -q "${flag[@]}" -p lanzadera-common --bin lanzadera-provision)
  # shellcheck disable=SC1090
  (. "$ENV_FILE" && "$target/$profile/lanzadera-provision" --wait "$TIMEOUT") >&2 \
    || die "provisioning failed"
}

write_env() {
  cat >"$ENV_FILE" <<EOF
export LZ_KAFKA_BROKERS=$HOST:$KAFKA_PORT
export LZ_MONGO_URI=mongodb://$HOST:$MONGO_PORT
export LZ_S3_ENDPOINT=http://$HOST:$S3_PORT
export LZ_S3_BUCKET=$S3_BUCKET
export LZ_S3_REGION=$S3_REGION
export LZ_S3_ACCESS_KEY=$S3_ACCESS_KEY
export LZ_S3_SECRET_KEY=$S3_SECRET_KEY
export LZ_OIDC_ISSUER=http://$HOST:$OIDC_PORT/realms/$OIDC_REALM
export LZ_OIDC_CLIENT_ID=$OIDC_CLIENT_ID
export LZ_OIDC_CLIENT_SECRET=$OIDC_CLIENT_SECRET
export LZ_ALLOW_INSECURE_REPOS=true
EOF
}

# Stops pid $2 (server $1): TERM, up to 10 s, then KILL. When the pid leads
# its own process group (all ours do, via setsid) the whole group is signalled,
# so children such as weed's are stopped too.
stop_pid() {
  local name=$1 pid=$2 pgid target i
  pgid="$(ps -o pgid= -p "$pid" 2>/dev/null | tr -d ' ' || true)"
  if [ "$pgid" = "$pid" ]; then target="-$pid"; else target="$pid"; fi
  kill -TERM -- "$target" 2>/dev/null || return 0
  for ((i = 0; i < 100; i++)); do
    kill -0 -- "$target" 2>/dev/null || { log "stopped $(server_label "$name") (pid $pid)"; return 0; }
    sleep 0.1
  done
  log "$(server_label "$name") (pid $pid) ignored TERM; killing"
  kill -KILL -- "$target" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    kill -0 -- "$target" 2>/dev/null || return 0
    sleep 0.1
  done
  log "warning: $(server_label "$name") (pid $pid) still present after KILL"
}

cmd_up() {
  mkdir -p "$PIDS" "$LOGS" "$DATA"
  "$HERE/install.sh" all
  local name
  for name in "${SERVERS[@]}"; do
    ensure_server "$name"
  done
  write_env
  log "environment written to $ENV_FILE"
  provision
  cat "$ENV_FILE"
}

cmd_down() {
  [ -d "$PIDS" ] || { log "nothing to stop"; return 0; }
  local file name pid i
  # Extra pid files first (the Lanzadera services started by the Makefile),
  # then our servers in reverse start order.
  local order=()
  for file in "$PIDS"/*.pid; do
    [ -e "$file" ] || continue
    name="$(basename "$file" .pid)"
    [[ " ${SERVERS[*]} " == *" $name "* ]] || order+=("$name")
  done
  for ((i = ${#SERVERS[@]} - 1; i >= 0; i--)); do
    order+=("${SERVERS[i]}")
  done
  for name in "${order[@]}"; do
    file="$PIDS/$name.pid"
    [ -f "$file" ] || continue
    pid="$(head -n1 "$file")"
    if [[ " ${SERVERS[*]} " == *" $name "* ]]; then
      if [ -n "$(server_pid "$name")" ]; then
        stop_pid "$name" "$pid"
      elif pid_alive "$pid"; then
        log "pid $pid in $file is not $(server_label "$name") any more; leaving it alone"
      fi
    elif pid_alive "$pid"; then
      stop_pid "$name" "$pid"
    fi
    rm -f "$file"
  done
}

cmd_status() {
  local name pid port state file
  for name in "${SERVERS[@]}"; do
    port="$(server_port "$name")"
    pid="$(server_pid "$name")"
    if [ -z "$pid" ]; then
      state=stopped
    elif server_ready "$name"; then
      state=running
    else
      state=starting
    fi
    printf '%-22s %-8s pid %-8s port %s\n' "$(server_label "$name")" "$state" "${pid:--}" "$port"
  done
  # Other processes with a pid file (e.g. the services started by the Makefile).
  for file in "$PIDS"/*.pid; do
    [ -e "$file" ] || continue
    name="$(basename "$file" .pid)"
    [[ " ${SERVERS[*]} " == *" $name "* ]] && continue
    pid="$(head -n1 "$file")"
    if pid_alive "$pid"; then state=running; else state=stopped; fi
    printf '%-22s %-8s pid %-8s\n' "$name" "$state" "$pid"
  done
}

cmd_env() {
  [ -f "$ENV_FILE" ] || die "$ENV_FILE does not exist; run $0 up"
  cat "$ENV_FILE"
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  env) cmd_env ;;
  *) echo "usage: $0 up|down|status|env" >&2; exit 2 ;;
esac
