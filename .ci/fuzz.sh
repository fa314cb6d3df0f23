#!/usr/bin/env bash
# Property-based fuzzing of the API against its own document: Schemathesis (pinned in
# .ci/fuzz/requirements.txt) reads openapi.yaml and sends what it can build from it (valid
# and invalid, every phase, every check) to a real `app run` on a fresh database. Each
# answer must be a documented status with a body of its documented schema (or a 405 with
# Allow), valid data must be accepted and invalid data refused.
#
# Four passes, each with its own Authorization per operation (.ci/fuzz/schemathesis.toml):
#   keys:         an ingest key for POST /v1/events, a read key for the reads (the long one);
#   wrong keys:   a well-formed key that does not exist, everywhere (401);
#   other scope:  the read key to send, the ingest key to read (403);
#   no key:       no Authorization at all (401).
# Rules JSON Schema cannot state are in .ci/fuzz/hooks.py, with why.
#
# Bounded: FUZZ_EXAMPLES cases per operation and phase for the keys pass (default 200), a
# tenth of that for the others, and FUZZ_TIMEOUT seconds per pass (default 240). Needs
# PostgreSQL on 127.0.0.1:5432 (or TEST_DATABASE_SERVER=postgres://user:password@host:port).
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"

step() { printf '\n==> [%3ds] %s\n' "$SECONDS" "$*"; }
fail() { printf '\nFUZZ FAILED: %s\n' "$*" >&2; exit 1; }

examples="${FUZZ_EXAMPLES:-200}"
timeout_secs="${FUZZ_TIMEOUT:-240}"
server="${TEST_DATABASE_SERVER:-postgres://postgres@127.0.0.1:5432}"
server="${server%/}"
work="$(mktemp -d "${TMPDIR:-/tmp}/app-fuzz.XXXXXX")"
db="app_fuzz_$(date +%Y%m%d%H%M%S)_$$"
app_pid=""

cleanup() {
  local rc=$?
  if [[ -n "$app_pid" ]] && kill -0 "$app_pid" 2>/dev/null; then
    kill -TERM "$app_pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$app_pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$app_pid" 2>/dev/null || true
    wait "$app_pid" 2>/dev/null || true
  fi
  psql "$server/postgres" -qX -v ON_ERROR_STOP=1 \
    -c "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null 2>&1 \
    || echo "warning: could not drop the database $db" >&2
  if [[ $rc -ne 0 ]]; then
    echo "the app's log is kept in $work/app.log" >&2
  else
    rm -rf "$work"
  fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step "Python venv for Schemathesis (pinned: .ci/fuzz/requirements.txt)"
python3 -c 'import venv, ensurepip' 2>/dev/null || {
  echo "installing python3-venv (apt)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
}
hash="$( (cat .ci/fuzz/requirements.txt; python3 --version) | sha256sum | cut -c1-12)"
venv="${XDG_CACHE_HOME:-$HOME/.cache}/app-ci/venv-fuzz-$hash"
if [[ ! -f "$venv/.complete" ]]; then
  echo "creating $venv"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r .ci/fuzz/requirements.txt
  touch "$venv/.complete"
fi
"$venv/bin/st" --version

step "cargo build --locked"
cargo build --locked
built="${CARGO_TARGET_DIR:-$root/target}/debug/app"
[[ -x "$built" ]] || fail "no binary at $built after cargo build"
# Run a copy: a build from another checkout sharing CARGO_TARGET_DIR cannot swap it mid-run.
app="$work/app"
cp "$built" "$app"

step "app run on a fresh database ($db)"
pg_isready -d "$server/postgres" -q || fail "PostgreSQL is not reachable at $server"
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
url="http://127.0.0.1:$port"
DATABASE_URL="$server/$db" RUST_LOG="${RUST_LOG:-info,sqlx=warn,sqlxmq=warn,poem=warn}" NO_COLOR=1 \
  "$app" run --bind "127.0.0.1:$port" >"$work/app.log" 2>&1 &
app_pid=$!
deadline=$((SECONDS + 60))
until curl -fsS -o /dev/null "$url/readyz" 2>/dev/null; do
  kill -0 "$app_pid" 2>/dev/null || { cat "$work/app.log" >&2; fail "app exited before it was ready"; }
  ((SECONDS < deadline)) || { tail -n 50 "$work/app.log" >&2; fail "app not ready at $url/readyz within 60s"; }
  sleep 0.2
done
echo "ready at $url (pid $app_pid)"

# The key is alone on the last line of `app keys create`'s output.
create_key() {
  local key
  key="$(DATABASE_URL="$server/$db" "$app" keys create --game fuzz --scope "$1" | tail -n 1)"
  [[ "$key" =~ ^[A-Za-z0-9]{16,}$ ]] || fail "app keys create --scope $1: the last line is not a key"
  printf '%s' "$key"
}
ingest_key="$(create_key ingest)"
read_key="$(create_key read)"
# Well-formed (32 letters and digits, as keys are) but no key of this database.
wrong_key="Fuzz0$(printf '%s' "$db" | sha256sum | tr -dc 'a-zA-Z0-9' | cut -c1-27)"

# fuzz NAME INGEST_AUTHORIZATION READ_AUTHORIZATION [st run options...]
fuzz() {
  local name="$1"
  step "Schemathesis, $name"
  # From $work: Schemathesis and Hypothesis keep their caches in the working directory.
  (cd "$work" && FUZZ_INGEST_AUTHORIZATION="$2" FUZZ_READ_AUTHORIZATION="$3" \
    SCHEMATHESIS_HOOKS="$root/.ci/fuzz/hooks.py" \
    timeout "$timeout_secs" "$venv/bin/st" --config-file "$root/.ci/fuzz/schemathesis.toml" --no-color \
      run --url "$url" --request-timeout 10 "${@:4}" "$root/openapi.yaml") \
    || fail "Schemathesis, $name: the server and openapi.yaml disagree (above; app log: $work/app.log)"
}
short=$(((examples + 9) / 10))
fuzz "keys: ingest key to send, read key to read" "Bearer $ingest_key" "Bearer $read_key" \
  --max-examples "$examples"
# Refusals only, which Schemathesis warns about ("authentication failed"): no warnings here.
# An unknown key waits for the API's next key reload (at most one per 200 ms), and the
# coverage phase's hundreds of bodies would each wait for one, to be refused before their
# body is read: this pass skips it.
fuzz "wrong keys (401)" "Bearer $wrong_key" "Bearer $wrong_key" \
  --max-examples "$short" --phases examples,fuzzing --warnings off
fuzz "the other scope's keys (403)" "Bearer $read_key" "Bearer $ingest_key" \
  --max-examples "$short" --phases examples,coverage,fuzzing --warnings off
step "Schemathesis, no key (401)"
(cd "$work" && SCHEMATHESIS_HOOKS="$root/.ci/fuzz/hooks.py" \
  timeout "$timeout_secs" "$venv/bin/st" --no-color run --url "$url" --request-timeout 10 \
    --checks all --max-examples "$short" --phases examples,coverage,fuzzing --warnings off \
    "$root/openapi.yaml") \
  || fail "Schemathesis, no key: the server and openapi.yaml disagree (above; app log: $work/app.log)"

kill -0 "$app_pid" 2>/dev/null || fail "app exited during the fuzzing (log: $work/app.log)"
if grep -qE ' ERROR ' "$work/app.log"; then
  grep -E ' ERROR ' "$work/app.log" | tail -n 20 >&2
  fail "app logged errors while fuzzed (above)"
fi
printf '\nFUZZ PASSED: keys, wrong keys, other scope, no key (%ds)\n' "$SECONDS"
