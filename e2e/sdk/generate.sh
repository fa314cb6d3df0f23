#!/usr/bin/env bash
# Generates the Python client from the committed OpenAPI document into sdk/python (git-ignored)
# with openapi-python-client (version pinned in requirements.txt).
#
# Any generator warning is an error: a warning means part of the API is missing from the
# client (for example a response the generator could not type), and the point of this step is
# to prove that openapi.yaml yields a complete client.
#
#   e2e/sdk/generate.sh                       # openapi.yaml -> sdk/python
#   SPEC=/tmp/patched.yaml e2e/sdk/generate.sh
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
spec="${SPEC:-$root/openapi.yaml}"
out="${SDK_OUT:-$root/sdk/python}"
venv="$("$root/e2e/sdk/venv.sh")"
# The generator runs ruff (a dependency, in the venv) on its output; it looks for it on PATH.
export PATH="$venv/bin:$PATH"
mkdir -p "$(dirname "$out")"
if ! openapi-python-client generate --path "$spec" --output-path "$out" --overwrite \
    --meta poetry --config "$root/e2e/sdk/config.yaml" --fail-on-warning; then
  echo "error: openapi-python-client could not generate a complete client from $spec (warnings above)" >&2
  exit 1
fi
echo "generated the Python client in $out (package game_events_client)"
