#!/usr/bin/env bash
# The stack of docker-compose.yml, for real, on a Docker engine:
#   1. builds the image with the repository's Dockerfile (through docker-compose.yml);
#   2. `up -d --scale worker=2`, waits for the health checks, creates an ingest key in the
#      api container, posts events to the published port and sees every one stored;
#   3. restarts the database container under load: nothing accepted is lost;
#   4. stops everything: every container exits 0 within its stop_grace_period; then `down`.
# Public images it cannot pull (CI's machines reach no image registry) are replaced by
# local stand-ins (.ci/standins/build.sh). RUST_IMAGE, RUNTIME_IMAGE and DB_IMAGE, when
# set, are used as given. Installs Docker (docker.io, docker-compose, debootstrap) from
# Debian's packages and starts dockerd when missing; the engine is left running, like the
# machine's other services. Uses the compose plugin when there is one, else docker-compose
# v1, which reads the same file. The project has its own name and free loopback ports, and
# is removed on any exit, with its containers' logs printed first when something failed.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

step() { printf '\n==> [%3ds] %s\n' "$SECONDS" "$*"; }
fail() { printf '\nCOMPOSE FAILED: %s\n' "$*" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/app-compose.XXXXXX")
COMPOSE_PROJECT_NAME="app-ci-$(date +%H%M%S)-$$"
export COMPOSE_PROJECT_NAME
# The image CI builds, apart from the game-events-app:local a developer may have.
export APP_IMAGE=${APP_IMAGE:-game-events-app:ci}
compose_cmd=()
load_pid=

compose() { "${compose_cmd[@]}" -f "$root/docker-compose.yml" "$@"; }

cleanup() {
    local rc=$?
    if [[ -n $load_pid ]]; then
        kill "$load_pid" 2>/dev/null || true
    fi
    if ((${#compose_cmd[@]})); then
        if ((rc != 0)); then
            echo "--- containers of $COMPOSE_PROJECT_NAME" >&2
            docker ps -a --filter "label=com.docker.compose.project=$COMPOSE_PROJECT_NAME" \
                --format '{{.Names}}\t{{.Status}}' >&2 || true
            echo "--- their logs (last 100 lines each)" >&2
            compose logs --no-color --tail=100 >&2 || true
        fi
        compose down -v --remove-orphans --timeout 5 >/dev/null 2>&1 \
            || echo "warning: could not remove the project $COMPOSE_PROJECT_NAME" >&2
    fi
    rm -rf "$work"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ensure_tools() {
    local missing=()
    command -v dockerd >/dev/null || missing+=(docker.io)
    command -v docker-compose >/dev/null || docker compose version >/dev/null 2>&1 \
        || missing+=(docker-compose)
    # For the stand-ins; small enough to install whether or not they are needed.
    command -v debootstrap >/dev/null || missing+=(debootstrap)
    if ((${#missing[@]})); then
        echo "installing ${missing[*]} (apt)"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
    if docker compose version >/dev/null 2>&1; then
        compose_cmd=(docker compose)
    else
        compose_cmd=(docker-compose)
    fi
    echo "compose: $("${compose_cmd[@]}" version --short 2>/dev/null || "${compose_cmd[@]}" version)"
}

ensure_engine() {
    if ! docker info >/dev/null 2>&1; then
        echo "no engine: starting dockerd (log: /var/log/dockerd.log)"
        # Its own session, so it outlives this script as a service would.
        setsid dockerd >>/var/log/dockerd.log 2>&1 </dev/null &
        for _ in $(seq 1 60); do
            docker info >/dev/null 2>&1 && break
            sleep 1
        done
    fi
    docker info --format 'engine: Docker {{.ServerVersion}}, {{.Driver}}' \
        || fail "dockerd did not start (see /var/log/dockerd.log)"
}

# Sets VAR to a stand-in unless it is set or the public image can be had. Unset, the
# compose file and the Dockerfile use the public image.
choose_image() {
    local var=$1 public=$2 standin=$3
    if [[ -n ${!var:-} ]]; then
        echo "$var=${!var} (given)"
    elif docker image inspect "$public" >/dev/null 2>&1 \
        || timeout 600 docker pull --quiet "$public" >/dev/null 2>&1; then
        echo "$var: the public $public"
    else
        printf -v "$var" %s "$(.ci/standins/build.sh "$standin")"
        export "${var?}"
        echo "$var=${!var} (stand-in: $public cannot be pulled)"
    fi
}

image_id() { docker image inspect -f '{{.Id}}' "$1" 2>/dev/null || true; }

# Builds the app's image through the compose file, as `docker compose build` would. The
# builder stage is tagged too: its layers are the next build's cache, and the previous
# build's images, once replaced, are removed (their shared layers stay), so the disk does
# not fill up with one old build per run.
build_app() {
    local old old_app old_builder builder=$APP_IMAGE-builder
    old_app=$(image_id "$APP_IMAGE")
    old_builder=$(image_id "$builder")
    compose build
    docker build --quiet --target builder --build-arg RUST_IMAGE --build-arg RUNTIME_IMAGE \
        -t "$builder" . >/dev/null
    for old in "$old_app" "$old_builder"; do
        if [[ -n $old && $old != "$(image_id "$APP_IMAGE")" && $old != "$(image_id "$builder")" ]]; then
            docker rmi "$old" >/dev/null 2>&1 || true
        fi
    done
    docker image ls "$APP_IMAGE"
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# The project's containers of one service, by compose's labels (the same for v1 and v2).
containers() {
    docker ps -a -q --filter "label=com.docker.compose.project=$COMPOSE_PROJECT_NAME" \
        --filter "label=com.docker.compose.service=$1"
}

# Waits until every container of the services is healthy; fails at once if one exits.
wait_healthy() {
    local deadline=$((SECONDS + 120)) service id state pending
    while :; do
        pending=()
        for service in "$@"; do
            for id in $(containers "$service"); do
                state=$(docker inspect -f '{{.State.Status}}/{{.State.Health.Status}}' "$id")
                [[ $state == running/healthy ]] && continue
                [[ $state == running/* ]] || fail "$service: $id is ${state%/*}"
                pending+=("$service")
            done
        done
        ((${#pending[@]} == 0)) && return
        ((SECONDS < deadline)) || fail "not healthy within 120s: ${pending[*]}"
        sleep 1
    done
}

psql_db() { compose exec -T db psql -U postgres -d game_events -v ON_ERROR_STOP=1 -AXqt "$@"; }

# Waits until the events table holds exactly the ids in $1 (one per line) and no batch
# is left to store; then compares the ids themselves.
wait_stored() {
    local ids=$1 want count pending deadline=$((SECONDS + 120))
    want=$(sort -u "$ids" | wc -l)
    while :; do
        count=$(psql_db -c 'SELECT count(*) FROM events')
        pending=$(psql_db -c "SELECT count(*) FROM batches WHERE status <> 'completed'")
        ((count == want && pending == 0)) && break
        ((SECONDS < deadline)) || fail "after 120s: $count events stored of $want accepted, $pending batches not completed"
        sleep 1
    done
    psql_db -c 'SELECT event_id FROM events' | sort >"$work/stored"
    sort -u "$ids" | diff -q - "$work/stored" >/dev/null \
        || fail "the stored event ids are not the accepted ones"
    echo "stored: all $count accepted events, every batch completed"
}

# Sets `key` to a new ingest key for the game "ci" (created with it): `app keys create`
# prints the key alone on its last line.
create_key() {
    key=$(compose exec -T api app keys create --game ci --scope ingest | tail -n 1)
    [[ -n $key ]] || fail "'app keys create' printed no key"
    echo "created an ingest key for the game ci"
}

# One stored event, read back through the published port with a read key.
read_back() {
    local read_key id=$1
    read_key=$(compose exec -T api app keys create --game ci --scope read | tail -n 1)
    curl -fsS -o /dev/null -H "Authorization: Bearer $read_key" "http://$API_PORT/v1/events/$id" \
        || fail "GET /v1/events/$id with a read key failed"
    echo "read back: GET /v1/events/$id with a read key"
}

load() { python3 .ci/compose_load.py --url "http://$API_PORT" --key "$key" "$@"; }

# Stops the database (it must exit 0, in time), starts it again and waits for its health.
restart_db() {
    local id began
    id=$(containers db)
    began=$SECONDS
    compose stop db || fail "could not stop db"
    [[ $(docker inspect -f '{{.State.ExitCode}}' "$id") == 0 ]] \
        || fail "db exited with $(docker inspect -f '{{.State.ExitCode}}' "$id") on stop"
    compose start db || fail "could not start db"
    wait_healthy db
    echo "db: stopped (exit 0) and healthy again in $((SECONDS - began))s"
}

# `stop` applies each service's stop_grace_period; a container still running at its end is
# killed (exit 137), so exit code 0 everywhere means every one stopped by itself in time.
stop_all() {
    local began=$SECONDS bad
    compose stop || fail "could not stop the stack"
    docker ps -a --filter "label=com.docker.compose.project=$COMPOSE_PROJECT_NAME" \
        --format '{{.Names}}' | sort | xargs docker inspect -f '{{.Name}} {{.State.ExitCode}}' \
        | tee "$work/exits"
    bad=$(awk '$2 != 0' "$work/exits")
    [[ -z $bad ]] || fail "containers that did not exit 0: $bad"
    echo "stopped: every container exited 0, in $((SECONDS - began))s"
    compose down -v --remove-orphans
}

step "Docker engine and compose"
ensure_tools
ensure_engine

step "Base images: public, or local stand-ins"
choose_image DB_IMAGE postgres:16 postgres
choose_image RUST_IMAGE "rust:${RUST_VERSION:-1}-slim-bookworm" rust
choose_image RUNTIME_IMAGE debian:bookworm-slim debian

step "Build $APP_IMAGE with the Dockerfile"
build_app

step "up -d --scale worker=2 (project $COMPOSE_PROJECT_NAME)"
API_PORT=127.0.0.1:$(free_port)
DB_PORT=127.0.0.1:$(free_port)
export API_PORT DB_PORT
echo "API on $API_PORT, database on $DB_PORT"
compose up -d --scale worker=2 || fail "up did not bring the stack up (logs below)"
wait_healthy db api
[[ $(containers worker | wc -l) == 2 ]] || fail "expected 2 worker containers"
[[ $(docker inspect -f '{{.State.ExitCode}}' "$(containers migrate)") == 0 ]] || fail "migrate failed"
compose ps

step "Keys from the api container; events posted to the published port, all stored"
create_key
load --batches 20 --concurrency 2 --ids-out "$work/ids-1"
wait_stored "$work/ids-1"
read_back "$(head -n 1 "$work/ids-1")"

step "The database restarted under load: nothing lost"
load --batches 300 --concurrency 4 --rate 50 --ids-out "$work/ids-2" \
    --signal-after 60 --signal-file "$work/load-running" \
    --wait-file "$work/db-restarted" --after-wait 40 &
load_pid=$!
until [[ -e $work/load-running ]]; do
    kill -0 "$load_pid" 2>/dev/null || fail "the load ended before the restart"
    sleep 0.2
done
restart_db
touch "$work/db-restarted"
wait "$load_pid" || fail "the load failed (output above)"
load_pid=
cat "$work/ids-1" "$work/ids-2" >"$work/ids"
wait_stored "$work/ids"

step "stop (within the grace periods, exit 0), then down"
stop_all

printf '\nCOMPOSE PASSED (%ds)\n' "$SECONDS"
