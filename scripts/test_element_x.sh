#!/usr/bin/env bash
# `make test-element-x`: matrix-rust-sdk (Element X's client library, pinned in
# tests/element_x/Cargo.toml) against a Synapse from PyPI and then our Worker
# (tests/element_x/run.py). Not part of `make test`: compiling the SDK takes long on 2 cores.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"

bash scripts/setup.sh test
log "building the Worker"
bash scripts/build.sh
log "building the matrix-rust-sdk check (tests/element_x; the first build compiles the SDK)"
start=$(date +%s)
(cd tests/element_x && cargo build --locked --quiet)
log "built in $(( $(date +%s) - start )) s"
export MATRIX_EDGE_PREBUILT=1
"$CACHE/venv/bin/python" tests/element_x/run.py "$@"
