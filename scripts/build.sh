#!/usr/bin/env bash
# Builds the Worker into build/ (index.js + index_bg.wasm). Also wrangler's [build] command.
set -euo pipefail
source "$(dirname "$0")/env.sh"
# Test runs and side-by-side instances build once up front; their wrangler must not rebuild.
[ "${MATRIX_EDGE_PREBUILT:-}" = 1 ] && exit 0
cd "$ROOT"
command -v worker-build >/dev/null || bash scripts/setup.sh
out=$(mktemp)
trap 'rm -f "$out"' EXIT
if ! worker-build --release --no-opt >"$out" 2>&1; then
  cat "$out" >&2
  log "build failed"
  exit 1
fi
# Keep the compiler's warnings and errors visible, drop worker-build's progress chatter.
grep -E 'warning|error' "$out" | grep -v 'target_features' >&2 || true
