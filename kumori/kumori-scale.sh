#!/usr/bin/env bash
# The observer's command actuator on Kumori: makes the worker role of the
# system deployment run <replicas> instances.
#
#   LZ_ACTUATOR=command
#   LZ_ACTUATOR_COMMAND=/opt/lanzadera/kumori/kumori-scale.sh {replicas}
#
# It copies these manifests to a scratch folder (the image's copy stays
# read-only), writes the count into deployments/system/workers.cue and
# updates the deployment with the Kumori CLI:
#
#   kam service update -t ./ lanzadera-system -- --wait 5m
#
# run in deployments/system. A non-zero exit is a failed attempt; the
# observer retries at its next decision. Settings (environment):
#   KUMORI_CLI         the CLI (default: kam)
#   KUMORI_DEPLOYMENT  deployment name (default: lanzadera-system)
#   KUMORI_DIR         the manifests (default: this script's folder)
#   KUMORI_WAIT        how long the CLI waits for the update (default: 5m)
set -euo pipefail

usage() { echo "usage: $0 <replicas>  (a whole number within the deployment's minWorkers..maxWorkers)" >&2; exit 2; }

[ $# -eq 1 ] || usage
[[ $1 =~ ^[0-9]{1,6}$ ]] || usage
replicas=$((10#$1))

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
src="${KUMORI_DIR:-$here}"
cli="${KUMORI_CLI:-kam}"
deployment="${KUMORI_DEPLOYMENT:-lanzadera-system}"
wait_for="${KUMORI_WAIT:-5m}"

# The bounds live in deployments/system/deployment.cue; CUE enforces them
# too, this only fails early with a clear message.
bound() {
  sed -n "s/^$1:[[:space:]]*\([0-9][0-9]*\)[[:space:]]*\$/\1/p" "$src/deployments/system/deployment.cue" | head -n 1
}
min="$(bound minWorkers)"
max="$(bound maxWorkers)"
if [ -z "$min" ] || [ -z "$max" ]; then
  echo "$0: minWorkers / maxWorkers not found in $src/deployments/system/deployment.cue" >&2
  exit 3
fi
if [ "$replicas" -lt "$min" ] || [ "$replicas" -gt "$max" ]; then
  echo "$0: $replicas workers is outside $min..$max" >&2
  exit 3
fi

command -v "$cli" >/dev/null 2>&1 || { echo "$0: Kumori CLI '$cli' not found (set KUMORI_CLI)" >&2; exit 4; }

work="$(mktemp -d "${TMPDIR:-/tmp}/lanzadera-kumori.XXXXXX")"
trap 'rm -rf "$work"' EXIT
cp -R "$src/." "$work/"
cat > "$work/deployments/system/workers.cue" <<CUE
// Written by kumori-scale.sh for the observer's scaling decision.
package deployment

workers: $replicas
CUE

echo "scaling $deployment to $replicas workers" >&2
cd "$work/deployments/system"
"$cli" service update -t ./ "$deployment" -- --wait "$wait_for"
