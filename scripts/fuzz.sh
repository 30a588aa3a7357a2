#!/usr/bin/env bash
# `make fuzz`: the property tests of src/fuzz/ with FUZZ_CASES cases per target (default
# 100000). Prints one `fuzz <target>: <n> executions` line per target, and for a failure the
# shrunk input; exits non-zero if any target failed.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
export PROPTEST_CASES="${FUZZ_CASES:-100000}"
log "fuzzing: $PROPTEST_CASES cases per target"
set +e
cargo test --lib fuzz:: -- --nocapture --test-threads 2 2>&1 \
  | sed -E 's/^test .* \.\.\. //' \
  | grep -vE '^\s+([0-9]+: |at )|^stack backtrace|^note: |^running |^ok$|^$'
status=${PIPESTATUS[0]}
set -e
exit "$status"
