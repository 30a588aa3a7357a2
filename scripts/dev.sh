#!/usr/bin/env bash
# `make dev`: installs what is missing, builds, applies the D1 migrations to local state and
# serves the Worker on 127.0.0.1 until interrupted: scripts/serve.mjs runs it in local workerd
# through Miniflare, the library `wrangler dev` runs, without wrangler dev's proxy in front.
# SIGINT or SIGTERM (to this script or to `make`) stops every process it started. Settings:
# README "Running locally". An argument names another entry module (the benchmark's).
set -euo pipefail
source "$(dirname "$0")/env.sh"
# Relative APPSERVICE_CONFIG paths are the caller's.
export CALLER_DIR="$PWD"
cd "$ROOT"

PORT="${PORT:-8787}"
STATE_DIR="${STATE_DIR:-$ROOT/.wrangler/state-$PORT}"
SERVER_NAME="${SERVER_NAME:-localhost:$PORT}"
REGISTRATION="${REGISTRATION:-open}"
# A development value, documented in the README; never use it on a real deployment.
REGISTRATION_SHARED_SECRET="${REGISTRATION_SHARED_SECRET:-matrix-edge-dev-shared-secret}"
# Local clients and test suites log in often from one address; a deployment keeps 10.
AUTH_REQUESTS_PER_MINUTE="${AUTH_REQUESTS_PER_MINUTE:-1000}"
# Sends, joins, uploads and federation requests per minute (README "Settings"): local test
# suites and Complement send in bursts from one address, so far above a deployment's defaults,
# but still counted (the same D1 statement runs).
RATE_LIMITS="${RATE_LIMITS:-send=100000/100000,join=100000/100000,upload=100000/100000,federation=1000000}"
# Local workerd has no CPU limit per request; a deployment keeps wrangler.toml's free-plan value.
MAX_THUMBNAIL_PIXELS="${MAX_THUMBNAIL_PIXELS:-16000000}"

server_args=()
if [ -n "${TLS_CERT:-}${TLS_KEY:-}" ]; then
  [ -r "${TLS_CERT:-}" ] && [ -r "${TLS_KEY:-}" ] || { log "TLS_CERT and TLS_KEY must both name readable files"; exit 2; }
  server_args=(--tls-cert "$TLS_CERT" --tls-key "$TLS_KEY")
  scheme=https
else
  scheme=http
fi
PUBLIC_BASEURL="${PUBLIC_BASEURL:-$scheme://localhost:$PORT}"

# A debugger port only when asked for (workerd's inspector is off otherwise).
[ -n "${INSPECTOR_PORT:-}" ] && server_args+=(--inspector-port "$INSPECTOR_PORT")

# Settings and secrets reach the Worker as bindings; --var overrides wrangler.toml's [vars].
vars=(--var "SERVER_NAME:$SERVER_NAME" --var "PUBLIC_BASEURL:$PUBLIC_BASEURL"
      --var "REGISTRATION:$REGISTRATION" --var "REGISTRATION_SHARED_SECRET:$REGISTRATION_SHARED_SECRET"
      --var "AUTH_REQUESTS_PER_MINUTE:$AUTH_REQUESTS_PER_MINUTE" --var "MAX_THUMBNAIL_PIXELS:$MAX_THUMBNAIL_PIXELS"
      --var "RATE_LIMITS:$RATE_LIMITS"
      --var "EXPOSE_D1_USAGE:${EXPOSE_D1_USAGE:-true}")
for name in SIGNING_KEY REGISTRATION_TOKEN DEFAULT_ROOM_VERSION DOH_RESOLVER TRUSTED_KEY_SERVERS PASSWORD_ITERATIONS JOIN_STEP_EVENTS PRESENCE SUPPORT_MXID SUPPORT_EMAIL SUPPORT_PAGE MAX_UPLOAD_BYTES MEDIA_QUOTA_BYTES MEDIA_FREEZE_TS URL_PREVIEWS URL_PREVIEW_ALLOW_PRIVATE; do
  [ -n "${!name:-}" ] && vars+=(--var "$name:${!name}")
done

if [ "${MATRIX_EDGE_PREBUILT:-}" = 1 ]; then
  # Tests and the benchmark build once up front (scripts/build.sh does nothing then).
  bash scripts/setup.sh serve
else
  bash scripts/setup.sh
  bash scripts/build.sh
fi
mkdir -p "$STATE_DIR"
# Applying migrations starts a separate wrangler (seconds). It runs only when the state has not
# seen this set of migrations: the state records the set it has, and a fresh state starts as a
# copy of a template that has them all (one per set, made once, in .wrangler/migrated/).
migrations_id=$(cat migrations/*.sql | sha256sum | cut -c1-16)
if [ "$(cat "$STATE_DIR/.migrations" 2>/dev/null)" != "$migrations_id" ]; then
  template="$ROOT/.wrangler/migrated/$migrations_id"
  if [ ! -d "$STATE_DIR/v3/d1" ] && [ -f "$template/.migrations" ]; then
    cp -a "$template/v3" "$STATE_DIR/"
  else
    log "applying D1 migrations to $STATE_DIR"
    CI=true wrangler d1 migrations apply DB --local --persist-to "$STATE_DIR" >"$STATE_DIR/migrations.log" 2>&1 \
      || { cat "$STATE_DIR/migrations.log" >&2; exit 1; }
    if [ ! -d "$template" ] && [ ! -d "$STATE_DIR/v3/do" ]; then
      # Only a state that holds nothing but the migrated database becomes the template; made
      # aside and renamed into place, so instances starting together never see half of one.
      mkdir -p "$ROOT/.wrangler"
      part=$(mktemp -d "$ROOT/.wrangler/migrated.XXXXXX")
      cp -a "$STATE_DIR/v3" "$part/" && echo "$migrations_id" > "$part/.migrations"
      mkdir -p "$ROOT/.wrangler/migrated"
      mv -T "$part" "$template" 2>/dev/null || rm -rf "$part"
    fi
  fi
  echo "$migrations_id" > "$STATE_DIR/.migrations"
fi
# The benchmark prepares the template this way before it times a start (bench/servers.py).
[ "${MATRIX_EDGE_PREPARE_ONLY:-}" = 1 ] && exit 0
# Application services (Synapse's registration YAML files, comma-separated): checked, then stored
# as this instance's whole set. A bad file stops the start here, naming the file and the key.
if [ -n "${APPSERVICE_CONFIG:-}" ]; then
  bash scripts/appservice.sh local "$STATE_DIR" "$SERVER_NAME" "$APPSERVICE_CONFIG"
fi

# The server runs in its own process group so that stopping it also stops workerd, its child.
# NODE_EXTRA_CA_CERTS, when set, is inherited: Miniflare adds that CA to workerd's trust store.
ready_file="$STATE_DIR/.serving"
rm -f "$ready_file"
setsid node scripts/serve.mjs --state "$STATE_DIR" --port "$PORT" --ready-file "$ready_file" \
  ${server_args[@]+"${server_args[@]}"} "${vars[@]}" "$@" &
server_pid=$!

stop() {
  trap - INT TERM EXIT
  if kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM -- "-$server_pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$server_pid" 2>/dev/null || true
  fi
}
trap 'stop; exit 130' INT
trap 'stop; exit 143' TERM
trap stop EXIT

# Ready when workerd accepts (scripts/serve.mjs writes the file then): no request is sent from
# here, so a client's first request is the Worker's first, as after a deploy.
ready=
parent=$PPID
while kill -0 "$server_pid" 2>/dev/null; do
  if [ -z "$ready" ] && [ -e "$ready_file" ]; then
    ready=1
    log "ready: $PUBLIC_BASEURL (server name $SERVER_NAME, state in $STATE_DIR)"
  fi
  # If whoever started us died without passing the signal on, do not outlive it.
  [ "$(ps -o ppid= -p $$ | tr -d ' ')" = "$parent" ] || exit 0
  [ -n "$ready" ] && sleep 0.3 || sleep 0.02
done
wait "$server_pid"
