#!/usr/bin/env bash
# Prints this server's generated signing key as a Synapse key file line, ready for
# `wrangler secret put SIGNING_KEY` (or Synapse's signing_key_path). With the SIGNING_KEY secret
# set, the key lives only in that secret and nothing is stored to export.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
where=(--remote)
[ -n "${LOCAL_STATE:-}" ] && where=(--local --persist-to "$LOCAL_STATE")
CI=true wrangler d1 execute DB "${where[@]}" --json \
  --command "SELECT key_id, seed FROM server_signing_keys WHERE generated = 1" |
  node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{
    const rows=JSON.parse(s)[0].results;
    if(!rows.length){console.error("no generated key stored (is SIGNING_KEY set?)");process.exit(1)}
    console.log(`ed25519 ${rows[0].key_id.replace(/^ed25519:/,"")} ${rows[0].seed}`)})'
