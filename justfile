# Everyday commands. Each recipe is a plain command you can also type yourself.
# `just --list` shows them all.

set dotenv-load := false

# Migrate, then serve the API and run a worker in one process (http://localhost:8080/docs)
run:
    cargo run -- run

# The whole test suite (needs PostgreSQL on 127.0.0.1:5432)
test:
    cargo test

# Serve the HTTP API only
serve:
    cargo run -- serve

# Run one worker
work:
    cargo run -- work

# Create the database if missing and apply every migration
migrate:
    cargo run -- migrate

# Regenerate openapi.yaml from the code
openapi:
    cargo run --quiet -- openapi > openapi.yaml

# Start PostgreSQL from docker-compose.yml (for machines without a local one)
db:
    docker compose up -d db

# Regenerate .sqlx/ (offline query data) after changing a query or a migration
sqlx-prepare:
    ./scripts/sqlx-prepare.sh

# The standard benchmark (issue 4): a scratch database game_events_bench, release
# builds of serve and work, scenarios a, b, c; see scripts/bench.sh and BENCHMARKS.md
bench:
    ./scripts/bench.sh

# The fault-test soak: SOAK_SECS (default 600) of mixed traffic, a worker killed every SOAK_KILL_EVERY_SECS (60)
soak:
    cargo test --release --test faults soak -- --ignored --nocapture

# The checks CI runs
ci:
    bash .ci/run

# Generate the Python client from openapi.yaml into sdk/python (git-ignored)
sdk:
    e2e/sdk/generate.sh

# Generate the TypeScript client from openapi.yaml into sdk/typescript (git-ignored)
sdk-ts:
    e2e/ts/generate.sh

# Lint openapi.yaml with Redocly CLI and Spectral (pinned in .ci/lint/), as CI does
lint:
    bash .ci/lint-openapi.sh

# Fuzz a real `app run` against openapi.yaml with Schemathesis (pinned in .ci/fuzz/), as CI does
fuzz:
    bash .ci/fuzz.sh

# End-to-end tests against a real `app run`: the generated Python and TypeScript clients, Swagger UI, a page on another origin sending events (fetch, sendBeacon) in headless Chromium, and /metrics through promtool and a Prometheus server
e2e:
    bash .ci/e2e.sh

# The compose stack on a Docker engine: build, scale, load, database restart, shutdown
compose:
    bash .ci/compose.sh
