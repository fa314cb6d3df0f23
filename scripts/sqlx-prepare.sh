#!/usr/bin/env bash
# Regenerates .sqlx/, the offline query data that lets `sqlx::query!` type-check our SQL
# without a database at build time (CI, Docker). Run it after changing a query or a
# migration, and commit .sqlx/ with the change.
#
# It builds a scratch database from the migrations (sqlxmq's, from the resolved sqlxmq
# package, then ours, in version order, as the binary applies them) and compiles the
# crate against it with SQLX_OFFLINE_DIR set, which makes the macros write their data.
set -euo pipefail
cd "$(dirname "$0")/.."

admin_url=${PREPARE_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
db=app_sqlx_prepare
db_url=${admin_url%/*}/$db

# build.rs and the lookup below read package sources offline: make sure they are here.
cargo fetch --quiet
host=$(rustc -vV | sed -n "s/^host: //p")
sqlxmq_dir=$(cargo metadata --offline --format-version 1 --filter-platform "$host" | python3 -c '
import json, os, sys
meta = json.load(sys.stdin)
print(next(os.path.dirname(p["manifest_path"]) for p in meta["packages"] if p["name"] == "sqlxmq"))
')

psql -q -v ON_ERROR_STOP=1 "$admin_url" -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
{
  for f in "$sqlxmq_dir"/migrations/*.up.sql migrations/*.sql; do
    printf '%s\t%s\n' "$(basename "$f" | cut -d_ -f1)" "$f"
  done
} | sort -n | cut -f2 | while read -r f; do
  psql -q -v ON_ERROR_STOP=1 "$db_url" -f "$f" >/dev/null
done

rm -rf .sqlx
mkdir -p .sqlx
# Touch the sources so every query macro expands again.
touch src/lib.rs
SQLX_OFFLINE=false SQLX_OFFLINE_DIR="$PWD/.sqlx" DATABASE_URL="$db_url" cargo check --all-targets --quiet
echo "wrote $(ls .sqlx | wc -l) query files to .sqlx/"
