#!/usr/bin/env bash
# Lints openapi.yaml with Redocly CLI (its recommended rules, warnings as errors) and Spectral
# (spectral:oas, failing on warnings), both pinned in .ci/lint/package-lock.json and installed
# here with npm ci. Their configs are in .ci/lint/; a rule switched off says why there.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> [%3ds] %s\n' "$SECONDS" "$*"; }

command -v npm >/dev/null || {
  echo "npm is missing: installing nodejs and npm (apt)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
}

step "npm ci (.ci/lint: @redocly/cli, @stoplight/spectral-cli, pinned by package-lock.json)"
(cd .ci/lint && npm ci --no-audit --no-fund --loglevel=error)
bin=.ci/lint/node_modules/.bin

step "Redocly CLI $("$bin/redocly" --version): recommended-strict (.ci/lint/redocly.yaml)"
# No usage telemetry, no update notice: CI reaches no host but the package registries.
REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true \
  "$bin/redocly" lint --config .ci/lint/redocly.yaml openapi.yaml

step "Spectral $("$bin/spectral" --version): spectral:oas, failing on warnings (.ci/lint/.spectral.yaml)"
"$bin/spectral" lint --ruleset .ci/lint/.spectral.yaml --fail-severity=warn openapi.yaml

printf '\nOPENAPI LINT PASSED (%ds)\n' "$SECONDS"
