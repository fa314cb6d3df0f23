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
source .ci/lib/app-under-test.sh FUZZ

examples="${FUZZ_EXAMPLES:-200}"
timeout_secs="${FUZZ_TIMEOUT:-240}"

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

build_app
start_app
create_key ingest_key fuzz ingest
create_key read_key fuzz read
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
