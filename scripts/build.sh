#!/usr/bin/env bash
# Builds the Worker into build/ (index.js + index_bg.wasm). Also wrangler's [build] command.
set -euo pipefail
source "$(dirname "$0")/env.sh"
# Test runs and side-by-side instances build once up front; their wrangler must not rebuild.
[ "${MATRIX_EDGE_PREBUILT:-}" = 1 ] && exit 0
cd "$ROOT"

# A build with nothing new to build is skipped: worker-build would still run cargo and
# wasm-bindgen and regenerate the JavaScript shim, seconds on every `make dev` and again in
# wrangler's own [build] step. The stamp holds the profile overrides the build was made with;
# its mtime is the moment the build started, so a file saved during a build is seen next time.
stamp=build/.inputs
inputs() { env | grep '^CARGO_PROFILE_' | sort || true; }
if [ -f build/index_bg.wasm ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$(inputs)" ] \
   && [ -z "$(find src Cargo.toml Cargo.lock scripts/build.sh -newer "$stamp" -print -quit)" ]; then
  exit 0
fi

command -v worker-build >/dev/null || bash scripts/setup.sh
out=$(mktemp)
trap 'rm -f "$out"' EXIT
started=$(date +%s)
if ! worker-build --release --no-opt >"$out" 2>&1; then
  cat "$out" >&2
  log "build failed"
  exit 1
fi
# Keep the compiler's warnings and errors visible, drop worker-build's progress chatter.
grep -E 'warning|error' "$out" | grep -v 'target_features' >&2 || true
inputs > "$stamp"
touch -d "@$started" "$stamp"
