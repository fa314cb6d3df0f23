#!/usr/bin/env bash
# Generates the TypeScript client from the committed OpenAPI document with @hey-api/openapi-ts
# (pinned, with the TypeScript it is built against, in package-lock.json), into sdk/typescript
# (git-ignored) or SDK_OUT. The output is self-contained: types (types.gen.ts), one function
# per operation (sdk.gen.ts) and the fetch client they use (client/, core/).
#
#   e2e/ts/generate.sh                                   # openapi.yaml -> sdk/typescript
#   SPEC=/tmp/patched.yaml SDK_OUT=/tmp/client e2e/ts/generate.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
export SPEC="$(realpath "${SPEC:-$root/openapi.yaml}")"
export SDK_OUT="$(realpath -m "${SDK_OUT:-$root/sdk/typescript}")"
if [[ ! -x "$here/node_modules/.bin/openapi-ts" ]]; then
  echo "installing the pinned generator (npm ci in e2e/ts)" >&2
  (cd "$here" && npm ci --no-audit --no-fund --loglevel=error)
fi
cd "$here"
# No crash-report file in the working directory on a failure: the message is on stderr.
if ! node_modules/.bin/openapi-ts --file openapi-ts.config.mjs --no-log-file --silent; then
  echo "error: @hey-api/openapi-ts could not generate the client from $SPEC (output above)" >&2
  exit 1
fi
echo "generated the TypeScript client in $SDK_OUT (@hey-api/openapi-ts $(node -p 'require("@hey-api/openapi-ts/package.json").version'))"
