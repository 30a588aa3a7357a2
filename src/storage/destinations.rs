//! Which remote servers our outbound queues are backing off from (migration 0012).

use serde::Deserialize;

use super::Db;
use crate::args;
use crate::http::MatrixError;

pub async fn backing_off(db: &Db, server: &str) -> Result<Option<u64>, MatrixError> {
    #[derive(Deserialize)]
    struct Row {
        retry_ts: i64,
    }
    let row: Option<Row> = db
        .row(
            "SELECT retry_ts FROM destination_backoff WHERE server_name = ?1",
            args![server],
        )
        .await?;
    Ok(row.map(|r| r.retry_ts.max(0) as u64))
}

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
