#!/usr/bin/env bash
# Stores application service registrations (Synapse's YAML files) in D1, after checking every
# file with scripts/appservice.py (nothing is stored when one is wrong). README, "Application
# services".
#   scripts/appservice.sh local STATE_DIR SERVER_NAME a.yaml[,b.yaml]   (make dev: the files
#       become the whole set of the local instance)
#   scripts/appservice.sh remote a.yaml[,b.yaml]                        (a deployment: adds or
#       replaces these, keeps the others; SERVER_NAME from wrangler.toml unless set)
set -euo pipefail
source "$(dirname "$0")/env.sh"

mode=${1:?local or remote}; shift

# A Python with PyYAML: the test environment's if there is one, else a small cached venv.
python_with_yaml() {
  local py
  for py in "$CACHE/venv/bin/python" "$CACHE/yaml-venv/bin/python"; do
    if [ -x "$py" ] && "$py" -c 'import yaml' 2>/dev/null; then echo "$py"; return; fi
  done
  log "installing PyYAML (for reading application service registrations) into $CACHE/yaml-venv"
  python3 -m venv "$CACHE/yaml-venv" >&2
  "$CACHE/yaml-venv/bin/pip" install --quiet --disable-pip-version-check "pyyaml==6.0.3" >&2
  echo "$CACHE/yaml-venv/bin/python"
}

split_files() { # a.yaml,b.yaml -> absolute paths, one a line
  local IFS=, f
  for f in $1; do
    [ -n "$f" ] || continue
    case "$f" in /*) echo "$f" ;; *) echo "$CALLER_DIR/$f" ;; esac
  done
}

CALLER_DIR="${CALLER_DIR:-$PWD}"
PY=$(python_with_yaml)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

case "$mode" in
  local)
    state_dir=$1 server=$2 files=$3
    mapfile -t paths < <(split_files "$files")
    "$PY" "$ROOT/scripts/appservice.py" --server "$server" --only "${paths[@]}" > "$work/register.sql"
    (cd "$ROOT" && CI=true wrangler d1 execute DB --local --persist-to "$state_dir" --file "$work/register.sql" \
      > "$work/execute.log" 2>&1) || { cat "$work/execute.log" >&2; exit 1; }
    log "registered application services from $files"
    ;;
  remote)
    files=$1
    server="${SERVER_NAME:-$(sed -n 's/^SERVER_NAME *= *"\(.*\)".*/\1/p' "$ROOT/wrangler.toml")}"
    mapfile -t paths < <(split_files "$files")
    (cd "$ROOT" && CI=true wrangler d1 execute DB --remote --json \
      --command "SELECT id, as_token, registration FROM appservices" > "$work/existing.json")
    "$PY" "$ROOT/scripts/appservice.py" --server "$server" --existing "$work/existing.json" "${paths[@]}" \
      > "$work/register.sql"
    (cd "$ROOT" && CI=true wrangler d1 execute DB --remote --file "$work/register.sql")
    log "stored the registrations of $files (seen by the Worker within a few seconds)"
    ;;
  *) log "unknown mode $mode"; exit 2 ;;
esac
