# Sourced by the other scripts: where the cached toolchain lives, and the environment that keeps
# wrangler, workerd and worker-build local (no telemetry, no update checks, no downloads).
# Facts behind each setting: shared TOOLCHAIN.md.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# Tools are cached outside the checkout so fresh clones (and CI) reuse them.
CACHE="${MATRIX_EDGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/matrix-edge}"
TOOLS="$CACHE/tools"

WORKER_BUILD_VERSION=0.8.7
NODE_WHEEL_VERSION=24.19.0
NODE_MIN_MAJOR=22

export PATH="$CACHE/node/bin:$TOOLS/bin:$ROOT/node_modules/.bin:$PATH"
export WASM_BINDGEN_BIN="$TOOLS/bin/wasm-bindgen"
export ESBUILD_BIN="$ROOT/node_modules/@esbuild/linux-x64/bin/esbuild"
# worker-build would download wasm-opt; we build with --no-opt (see TOOLCHAIN.md).

export DO_NOT_TRACK=1
export WRANGLER_SEND_METRICS=false
export CLOUDFLARE_CF_FETCH_ENABLED=false
export WRANGLER_LOG_PATH="${WRANGLER_LOG_PATH:-$ROOT/.wrangler/logs}"

# wrangler has no switch for its update check; a fresh cache entry makes it skip the lookup.
_tmp="${TMPDIR:-/tmp}"
mkdir -p "$_tmp/update-check"
printf '{"latest":"%s","lastUpdate":%s}\n' "$(sed -n 's/.*"wrangler": "\(.*\)".*/\1/p' "$ROOT/package.json")" \
  "$(date +%s)000" > "$_tmp/update-check/wrangler-latest.json"

log() { printf '[matrix-edge] %s\n' "$*" >&2; }

# The wasm-bindgen CLI must match the library version in Cargo.lock exactly.
wasm_bindgen_version() {
  awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' "$ROOT/Cargo.lock"
}
