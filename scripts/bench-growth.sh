#!/usr/bin/env bash
# The growth benchmark (GitHub issue 11): the storing rate as stored data grows, on a
# PostgreSQL configured for production rather than this machine's defaults.
#
# It initdb's a throwaway cluster on a spare port with the settings below (the README's
# recommendations, or the issue's baseline with GROWTH_PG_SETTINGS=issue), starts one
# `app serve` and one `app work` (release builds) against it, runs `app bench --growth`,
# and deletes the cluster. Results land in $GROWTH_OUT (the JSON report, the curve as
# TSV, the processes' logs, and pg_stat_statements' top statements).
#
# Environment (all optional):
#   GROWTH_IDS        v4 or v7                          (default v4)
#   GROWTH_EVENTS     events to send                    (default 20000000)
#   GROWTH_PLAYERS    distinct players                  (default 50000)
#   GROWTH_WINDOW     seconds per window                (default 10)
#   GROWTH_HOLD_AT    hold a snapshot from this second  (default: no snapshot)
#   GROWTH_HOLD_FOR   for this many seconds             (default 100)
#   GROWTH_PG_SETTINGS readme | issue                   (default readme)
#   GROWTH_PG_EXTRA   more settings, space-separated name=value (default none)
#   GROWTH_PORT       the cluster's port                (default 5499)
#   GROWTH_DIR        where the cluster lives, DELETED  (default /var/tmp/app-growth-pg)
#   GROWTH_OUT        results directory                 (default target/bench/growth-<UTC time>)
#   PG_BIN            initdb and pg_ctl                 (default: the newest /usr/lib/postgresql/*/bin)
set -euo pipefail
cd "$(dirname "$0")/.."

ids=${GROWTH_IDS:-v4}
events=${GROWTH_EVENTS:-20000000}
players=${GROWTH_PLAYERS:-50000}
window=${GROWTH_WINDOW:-10}
port=${GROWTH_PORT:-5499}
dir=${GROWTH_DIR:-/var/tmp/app-growth-pg}
api_port=18081
target_dir=${CARGO_TARGET_DIR:-target}
out=${GROWTH_OUT:-$target_dir/bench/growth-$(date -u +%Y%m%dT%H%M%SZ)}
app=$target_dir/release/app
pg_bin=${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)}

# What the issue measured against (shared buffers, WAL, checkpoints, autovacuum), and
# what the README recommends on top of it (see the README's "PostgreSQL settings").
settings=(
  -c shared_buffers=4GB -c max_wal_size=16GB -c checkpoint_timeout=15min
  -c wal_compression=lz4 -c autovacuum=on
  -c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track=all
  -c listen_addresses=127.0.0.1 -c port="$port" -c max_connections=100
)
if [ "${GROWTH_PG_SETTINGS:-readme}" = readme ] && [ -f scripts/postgresql-settings.conf ]; then
  while read -r line; do
    line=${line%%#*}
    [ -n "${line// }" ] && settings+=(-c "$(echo "$line" | tr -d ' ')")
  done <scripts/postgresql-settings.conf
fi

for extra in ${GROWTH_PG_EXTRA:-}; do settings+=(-c "$extra"); done

as_postgres() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

cargo build --release --quiet
mkdir -p "$out"
echo "results in $out"

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  as_postgres "$pg_bin/pg_ctl" -D "$dir" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

rm -rf "$dir"
mkdir -p "$dir"
[ "$(id -u)" = 0 ] && chown postgres:postgres "$dir"
as_postgres "$pg_bin/initdb" -D "$dir" -U postgres --auth=trust >/dev/null
as_postgres "$pg_bin/pg_ctl" -D "$dir" -l "$dir/postgres.log" -w -o "${settings[*]}" start >/dev/null
printf '%s\n' "${settings[@]}" | paste - - | sed 's/^-c\t//' >"$out/postgresql-settings.txt"

db_url="postgres://postgres@127.0.0.1:$port/game_events"
"$app" migrate --database-url "$db_url" >/dev/null
psql -q "$db_url" -c "CREATE EXTENSION IF NOT EXISTS pg_stat_statements"
"$app" serve --database-url "$db_url" --bind "127.0.0.1:$api_port" >"$out/serve.log" 2>&1 &
pids+=("$!")
"$app" work --database-url "$db_url" >"$out/work.log" 2>&1 &
pids+=("$!")
for _ in $(seq 1 300); do
  curl -fsS -o /dev/null "http://127.0.0.1:$api_port/readyz" 2>/dev/null && break
  sleep 0.2
done

hold=()
[ -n "${GROWTH_HOLD_AT:-}" ] && hold=(--hold-snapshot-at "$GROWTH_HOLD_AT" --hold-snapshot-for "${GROWTH_HOLD_FOR:-100}")
"$app" bench --url "http://127.0.0.1:$api_port" --database-url "$db_url" --growth \
  --events "$events" --ids "$ids" --players "$players" --window-secs "$window" "${hold[@]}" \
  --json "$out/growth.json" 2>&1 | tee "$out/growth.txt"

jq -r '["end_s", "stored_before", "events_per_s", "wal_bytes_per_event", "buffers_written_per_s", "blocks_read_per_s", "checkpoints", "snapshot_held"],
       (.windows[] | [.end_secs, .stored_before, .stored_per_sec, .wal_bytes_per_event, .buffers_written_per_sec, .blocks_read_per_sec, .checkpoints, .snapshot_held])
       | @tsv' "$out/growth.json" >"$out/curve.tsv"
psql -q "$db_url" -X -A -F $'\t' -c "
  SELECT round(total_exec_time) AS total_ms, calls, round((total_exec_time / calls)::numeric, 3) AS mean_ms,
         shared_blks_hit, shared_blks_read, shared_blks_dirtied, wal_bytes,
         left(regexp_replace(query, '\s+', ' ', 'g'), 160) AS query
  FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT 25" >"$out/statements.tsv"
psql -q "$db_url" -X -A -F $'\t' -c "
  SELECT relname, pg_size_pretty(pg_relation_size(c.oid)) AS size
  FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace
  WHERE n.nspname = 'public' AND c.relkind IN ('r', 'i', 'p', 'I')
  ORDER BY pg_relation_size(c.oid) DESC LIMIT 40" >"$out/sizes.tsv"
echo "curve in $out/curve.tsv; top statements in $out/statements.tsv; sizes in $out/sizes.tsv"
