# Sourced by the CI scripts that test a real `app run` (e2e.sh, fuzz.sh): what they share.
# Usage, after `set -euo pipefail` and `cd` to the repository:
#   source .ci/lib/app-under-test.sh NAME   # NAME: the script's word in its messages (E2E, FUZZ)
#   build_app                               # cargo build; $app is a copy of the binary
#   start_app [NAME=VALUE...]               # app run on a fresh database; sets $url, $app_pid
#   create_key VAR GAME SCOPE               # app keys create; the key into VAR
# Provides step and fail; $root, $server, $work, $db; keep_work=1 keeps $work on success.
# On exit the app is stopped, the database dropped, and $work removed unless kept.

ci_name="$1"
root="$PWD"
server="${TEST_DATABASE_SERVER:-postgres://postgres@127.0.0.1:5432}"
server="${server%/}"
ci_slug="$(printf '%s' "$ci_name" | tr '[:upper:]' '[:lower:]')"
work="$(mktemp -d "${TMPDIR:-/tmp}/app-$ci_slug.XXXXXX")"
db="app_${ci_slug}_$(date +%Y%m%d%H%M%S)_$$"
app_pid=""
keep_work=0

step() { printf '\n==> [%3ds] %s\n' "$SECONDS" "$*"; }
fail() { printf '\n%s FAILED: %s\n' "$ci_name" "$*" >&2; exit 1; }

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
  if [[ $rc -ne 0 || $keep_work -eq 1 ]]; then
    echo "the app's log and the rest are kept in $work" >&2
  else
    rm -rf "$work"
  fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

build_app() {
  step "cargo build --locked"
  cargo build --locked
  local built="${CARGO_TARGET_DIR:-$root/target}/debug/app"
  [[ -x "$built" ]] || fail "no binary at $built after cargo build"
  # Run a copy: a build from another checkout sharing CARGO_TARGET_DIR cannot swap it mid-run.
  app="$work/app"
  cp "$built" "$app"
}

# start_app [NAME=VALUE...]: extra environment for the app.
start_app() {
  step "app run on a fresh database ($db)"
  pg_isready -d "$server/postgres" -q || fail "PostgreSQL is not reachable at $server"
  local port
  port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  url="http://127.0.0.1:$port"
  env DATABASE_URL="$server/$db" RUST_LOG="${RUST_LOG:-info,sqlx=warn,sqlxmq=warn,poem=warn}" NO_COLOR=1 "$@" \
    "$app" run --bind "127.0.0.1:$port" >"$work/app.log" 2>&1 &
  app_pid=$!
  local deadline=$((SECONDS + 60))
  until curl -fsS -o /dev/null "$url/readyz" 2>/dev/null; do
    if ! kill -0 "$app_pid" 2>/dev/null; then
      cat "$work/app.log" >&2
      fail "app exited before it was ready (log above)"
    fi
    if ((SECONDS >= deadline)); then
      tail -n 50 "$work/app.log" >&2
      fail "app not ready at $url/readyz within 60s (log above)"
    fi
    sleep 0.2
  done
  echo "ready at $url (pid $app_pid)"
}

# create_key VAR GAME SCOPE: the key is alone on the last line of the command's output; the
# rest is shown, the key is not.
create_key() {
  local out key
  out="$(DATABASE_URL="$server/$db" "$app" keys create --game "$2" --scope "$3")" \
    || fail "app keys create --game $2 --scope $3 failed (output above)"
  printf '%s\n' "$out" | sed '$d'
  key="$(printf '%s\n' "$out" | tail -n 1)"
  [[ "$key" =~ ^[A-Za-z0-9]{16,}$ ]] \
    || fail "app keys create --game $2 --scope $3: the last line of its output is not a key"
  printf -v "$1" '%s' "$key"
}
