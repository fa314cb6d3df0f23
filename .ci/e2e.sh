#!/usr/bin/env bash
# End-to-end tests against a real `app run` (API and worker) on a fresh database, with an
# ingest key and a read key made by `app keys create` (and a read key of a second game):
#   1. sdk:     generates a Python client from openapi.yaml (openapi-python-client) and sends
#               (ingest key), follows and reads back (read key) a batch of every event type
#               through it; missing and wrong keys get typed 401/403/404 problems (e2e/sdk/);
#   2. ts:      generates a TypeScript client from openapi.yaml (@hey-api/openapi-ts), type-checks
#               it with the test under `strict` (tsc), and drives the same flow through it: every
#               event type sent, followed and read back, a 422's errors read through its types,
#               401 and 403 problems (e2e/ts/);
#   3. swagger: /docs in headless Chromium renders every operation; after Authorize with the
#               ingest key, "Try it out" on POST /v1/events with the example gets a 202, and
#               after Authorize with the read key, GET /v1/batches/{id} of that batch a 200
#               (e2e/browser/test_swagger.mjs);
#   4. cross-origin: a page served from a second local origin sends a batch with fetch
#               (through a real CORS preflight) and one with navigator.sendBeacon, in headless
#               Chromium; both end up stored (e2e/browser/test_cross_origin.mjs);
#   5. metrics: once the tests above have made traffic, /metrics in both formats through
#               Prometheus's tools: `promtool check metrics` on each, and a Prometheus server's
#               scrape of the OpenMetrics one (e2e/metrics/check_metrics.sh).
# Installs what it needs (chromium and prometheus from apt, a pinned Python venv under
# ${XDG_CACHE_HOME:-~/.cache}/app-ci/, npm ci). Idempotent; safe to rerun. Needs PostgreSQL on
# 127.0.0.1:5432 (or TEST_DATABASE_SERVER=postgres://user:password@host:port).
set -euo pipefail
cd "$(dirname "$0")/.."
source .ci/lib/app-under-test.sh E2E

as_root() { if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi; }
apt_updated=0
apt_install() {
  if [[ $apt_updated -eq 0 ]]; then as_root apt-get update -qq; apt_updated=1; fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

step "Tools: chromium, prometheus (promtool), python3 (venv), node and npm"
[[ -x /usr/bin/chromium ]] || { echo "installing chromium (apt)"; apt_install chromium; }
# promtool and the server, without the node exporter the package recommends (a daemon of its own).
command -v promtool >/dev/null && command -v prometheus >/dev/null \
  || { echo "installing prometheus (apt)"; apt_install --no-install-recommends prometheus; }
command -v python3 >/dev/null && python3 -c 'import venv, ensurepip' 2>/dev/null \
  || { echo "installing python3-venv (apt)"; apt_install python3 python3-venv; }
command -v npm >/dev/null || { echo "installing nodejs and npm (apt)"; apt_install nodejs npm; }
command -v psql >/dev/null || { echo "installing postgresql-client (apt)"; apt_install postgresql-client; }
/usr/bin/chromium --version
promtool --version 2>&1 | head -n 1
python3 --version
echo "node $(node --version)"

step "Python venv for the SDK (pinned: e2e/sdk/requirements.txt)"
venv="$(e2e/sdk/venv.sh)"
echo "$venv"

step "npm ci (e2e/browser: playwright-core, pinned by package-lock.json)"
(cd e2e/browser && npm ci --no-audit --no-fund --loglevel=error)

step "npm ci (e2e/ts: @hey-api/openapi-ts, typescript, @types/node, pinned by package-lock.json)"
(cd e2e/ts && npm ci --no-audit --no-fund --loglevel=error)

build_app

# Text logs: the cross-origin test reads the access log (the preflight's line, the beacon's).
start_app LOG_FORMAT=text

step "API keys: app keys create (while the API runs: a new key must work at once)"
create_key APP_INGEST_KEY e2e ingest
create_key APP_READ_KEY e2e read
create_key APP_OTHER_READ_KEY e2e-other read
export APP_INGEST_KEY APP_READ_KEY APP_OTHER_READ_KEY

failures=()

step "SDK: generate the Python client from openapi.yaml, then drive every event type through it"
if SDK_OUT="$work/sdk/python" e2e/sdk/generate.sh \
    && SDK_DIR="$work/sdk/python" "$venv/bin/python" e2e/sdk/test_sdk.py --base-url "$url"; then
  :
else
  failures+=("sdk (e2e/sdk: client generation or test_sdk.py, output above)")
fi

step "TypeScript: generate a client from openapi.yaml (@hey-api/openapi-ts), type-check it and the test under strict, then drive the same flow through it"
# The client goes where e2e/ts/tsconfig.json compiles it with the test, into e2e/ts/build.
rm -rf e2e/ts/build
if SDK_OUT="$root/e2e/ts/generated" e2e/ts/generate.sh \
    && e2e/ts/node_modules/.bin/tsc -p e2e/ts/tsconfig.json \
    && node e2e/ts/build/test_client.js --base-url "$url"; then
  :
else
  failures+=("ts (e2e/ts: client generation, tsc under strict, or test_client.ts, output above)")
fi

step "Swagger UI: /docs in headless Chromium; Authorize, then Try it out on POST /v1/events and GET /v1/batches/{id}"
if node e2e/browser/test_swagger.mjs --base-url "$url" --screenshots "$work/screenshots"; then
  :
else
  failures+=("swagger (e2e/browser/test_swagger.mjs, output above; screenshots in $work/screenshots)")
fi

step "Cross-origin: a page on a second local origin sends with fetch (preflight) and sendBeacon, in headless Chromium"
if node e2e/browser/test_cross_origin.mjs --base-url "$url" --app-log "$work/app.log" --screenshots "$work/screenshots"; then
  :
else
  failures+=("cross-origin (e2e/browser/test_cross_origin.mjs, output above; app log $work/app.log)")
fi

step "Metrics: both formats of /metrics through promtool check metrics, and a Prometheus server's scrape"
if e2e/metrics/check_metrics.sh --base-url "$url" --work "$work/metrics"; then
  :
else
  failures+=("metrics (e2e/metrics/check_metrics.sh, output above; scrapes in $work/metrics)")
fi

if ! kill -0 "$app_pid" 2>/dev/null; then
  failures+=("app exited during the tests (log: $work/app.log)")
fi
if grep -qE ' (ERROR|WARN) ' "$work/app.log"; then
  echo "app logged warnings or errors:"
  grep -E ' (ERROR|WARN) ' "$work/app.log" | tail -n 20
fi

if ((${#failures[@]})); then
  keep_work=1
  printf '\nE2E FAILED (%ds):\n' "$SECONDS" >&2
  printf '  - %s\n' "${failures[@]}" >&2
  exit 1
fi
printf '\nE2E PASSED: sdk, ts, swagger, cross-origin, metrics (%ds)\n' "$SECONDS"
