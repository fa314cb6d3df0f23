#!/usr/bin/env bash
# Ensures the Python virtualenv for the SDK generator and test, with the pinned versions of
# requirements.txt, and prints its directory. Idempotent: the venv is keyed by a hash of
# requirements.txt, so a change of pins builds a new one and an unchanged one is reused.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
py="${PYTHON:-python3}"
hash="$( (cat "$here/requirements.txt"; "$py" --version) | sha256sum | cut -c1-12)"
venv="${XDG_CACHE_HOME:-$HOME/.cache}/app-ci/venv-sdk-$hash"
if [[ ! -f "$venv/.complete" ]]; then
  echo "creating $venv (pip install -r e2e/sdk/requirements.txt)" >&2
  rm -rf "$venv"
  "$py" -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt" >&2
  touch "$venv/.complete"
fi
echo "$venv"
