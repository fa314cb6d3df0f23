#!/usr/bin/env bash
# Entrypoint of CI's stand-in for the official postgres image. It honours what
# docker-compose.yml uses of that image:
#   - POSTGRES_PASSWORD (required), POSTGRES_USER (postgres), POSTGRES_DB (the user's name);
#   - the cluster in PGDATA (/var/lib/postgresql/data), made on first start;
#   - password (scram-sha-256) logins from any address, trust on the local socket, which
#     pg_isready in the healthcheck uses;
#   - `command: ["postgres", "-c", "name=value", ...]`, or the flags alone;
#   - runs the server as the postgres user;
#   - SIGTERM (docker stop) is a fast shutdown: open connections are closed, the server
#     checkpoints and exits 0. PostgreSQL itself takes SIGTERM as a smart shutdown, which
#     waits for every client to disconnect, so this script stays PID 1 and forwards it.
# Any other command (bash, psql ...) is run as given.
set -euo pipefail

export PGDATA=${PGDATA:-/var/lib/postgresql/data}

main() {
    if [[ ${1:-} == -* ]]; then
        set -- postgres "$@"
    fi
    if [[ ${1:-} != postgres ]]; then
        exec "$@"
    fi
    if [[ $(id -u) == 0 ]]; then
        prepare_dirs
        exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
    fi
    shift
    if [[ ! -s $PGDATA/PG_VERSION ]]; then
        init_cluster
    fi
    run_server "$@"
}

# As root: a bind mount or an old volume may belong to someone else.
prepare_dirs() {
    mkdir -p "$PGDATA" /run/postgresql
    chown postgres:postgres "$PGDATA" /run/postgresql
    chmod 700 "$PGDATA"
    chmod 2775 /run/postgresql
}

init_cluster() {
    local user=${POSTGRES_USER:-postgres}
    local db=${POSTGRES_DB:-$user}
    if [[ -z ${POSTGRES_PASSWORD:-} ]]; then
        echo "entrypoint: POSTGRES_PASSWORD is required (clients log in with a password)" >&2
        exit 1
    fi
    echo "entrypoint: initialising a cluster in $PGDATA"
    initdb --username="$user" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") \
        --auth-local=trust --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 >/dev/null
    printf '\n# Clients on the container network.\nhost all all all scram-sha-256\n' \
        >>"$PGDATA/pg_hba.conf"
    printf "\nlisten_addresses = '*'\n" >>"$PGDATA/postgresql.conf"
    if [[ $db != postgres ]]; then
        create_database "$user" "$db"
    fi
}

# Through a server on a private socket and no TCP, so neither clients nor the
# healthcheck's pg_isready see a server until the real one starts.
create_database() {
    local user=$1 db=$2 sock
    sock=$(mktemp -d)
    pg_ctl --wait --silent -o "-c listen_addresses= -c unix_socket_directories=$sock" start
    psql --quiet --no-psqlrc -v ON_ERROR_STOP=1 -h "$sock" -U "$user" -d postgres \
        -v db="$db" <<<'CREATE DATABASE :"db";'
    pg_ctl --wait --silent --mode=fast stop
    rmdir "$sock"
}

run_server() {
    local pid status
    postgres "$@" &
    pid=$!
    trap 'kill -INT "$pid" 2>/dev/null || true' TERM INT
    trap 'kill -QUIT "$pid" 2>/dev/null || true' QUIT
    trap 'kill -HUP "$pid" 2>/dev/null || true' HUP
    # `wait` also returns when a trapped signal arrives: wait again until the server is gone.
    while :; do
        status=0
        wait "$pid" || status=$?
        kill -0 "$pid" 2>/dev/null || break
    done
    exit "$status"
}

main "$@"
