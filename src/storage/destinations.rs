//! Which remote servers our outbound queues are backing off from (migration 0012). An inbound
//! transaction reads it with its other first reads (`remote_keys::transaction_start`).

use super::Db;
use crate::args;
use crate::http::MatrixError;

// The destination queue (a Durable Object in runtime/) is the only caller: natively unused.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
pub async fn set_backoff(
    db: &Db,
    server: &str,
    failures: u32,
    retry_ts: u64,
) -> Result<(), MatrixError> {
    db.run(
        "INSERT INTO destination_backoff (server_name, failures, retry_ts) VALUES (?1, ?2, ?3)
         ON CONFLICT (server_name) DO UPDATE SET failures = excluded.failures,
           retry_ts = excluded.retry_ts",
        args![server, i64::from(failures), retry_ts],
    )
    .await
    .map(|_| ())
}

#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
pub async fn clear_backoff(db: &Db, server: &str) -> Result<(), MatrixError> {
    db.run(
        "DELETE FROM destination_backoff WHERE server_name = ?1",
        args![server],
    )
    .await
    .map(|_| ())
}
