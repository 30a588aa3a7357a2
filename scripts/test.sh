#!/usr/bin/env bash
# `make test`: native unit tests (protocol logic, spec test vectors), then the integration tests
# against the built Worker served in workerd (scripts/serve.mjs, as `make dev`) with local D1 and
# Durable Objects.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"

bash scripts/setup.sh test
log "dependency rule: only src/runtime/ names worker:: or crate::runtime (docs/design.md)"
if grep -rn -e 'worker::' -e 'crate::runtime' src | grep -v '^src/runtime/'; then
  echo "the lines above break the dependency rule" >&2
  exit 1
fi
log "native unit tests (cargo test)"
cargo test --quiet
log "building the Worker"
bash scripts/build.sh
log "integration tests (pytest, against the Worker in workerd)"
export MATRIX_EDGE_PREBUILT=1
# The Node that setup.sh ensured (first on PATH), for the tests that drive real JS clients.
MATRIX_EDGE_NODE="$(command -v node)"
export MATRIX_EDGE_NODE
"$CACHE/venv/bin/python" -m pytest -q -p no:cacheprovider tests/integration "$@"
