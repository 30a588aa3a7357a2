//! The D1 cache of resolved server names (`migrations/0004_server_discovery.sql`).

use serde::Deserialize;

use super::Db;
use crate::args;
use crate::discovery::{Destination, DiscoveryError};
use crate::http::MatrixError;

/// A cached resolution: a destination or the error it ended with, until `expires_ts`.
#[derive(Clone, Debug)]
pub struct CachedResolution {
    pub outcome: Result<Destination, DiscoveryError>,
    pub failures: u32,
    pub expires_ts: u64,
}

#[derive(Deserialize)]
struct Row {
    destination: Option<String>,
    error: Option<String>,
    failures: i64,
    expires_ts: i64,
}

/// The stored entry for `server_name`, fresh or not (callers need stale ones for back-off).
/// A row that no longer parses (an older shape) reads as absent and is overwritten.
pub async fn get(db: &Db, server_name: &str) -> Result<Option<CachedResolution>, MatrixError> {
    let row: Option<Row> = db
        .row(
            "SELECT destination, error, failures, expires_ts FROM server_discovery \
             WHERE server_name = ?1",
            args![server_name],
        )
        .await?;
    Ok(row.and_then(|row| {
        let outcome = match (row.destination, row.error) {
            (Some(destination), _) => Ok(serde_json::from_str(&destination).ok()?),
            (None, Some(error)) => Err(serde_json::from_str(&error).ok()?),
            (None, None) => return None,
        };
        Some(CachedResolution {
            outcome,
            failures: u32::try_from(row.failures).unwrap_or(0),
            expires_ts: u64::try_from(row.expires_ts).unwrap_or(0),
        })
    }))
}

/// Stores (or replaces) the entry for `server_name`.
pub async fn put(db: &Db, server_name: &str, entry: &CachedResolution) -> Result<(), MatrixError> {
    let json = |value: Result<String, serde_json::Error>| {
        value.map_err(|e| MatrixError::internal(format!("cannot encode discovery cache: {e}")))
    };
    let (destination, error) = match &entry.outcome {
        Ok(destination) => (Some(json(serde_json::to_string(destination))?), None),
        Err(error) => (None, Some(json(serde_json::to_string(error))?)),
    };
    db.run(
        "INSERT INTO server_discovery (server_name, destination, error, failures, expires_ts) \
         VALUES (?1, ?2, ?3, ?4, ?5) \
         ON CONFLICT (server_name) DO UPDATE SET destination = excluded.destination, \
         error = excluded.error, failures = excluded.failures, expires_ts = excluded.expires_ts",
        args![
            server_name,
            destination.as_deref(),
            error.as_deref(),
            i64::from(entry.failures),
            entry.expires_ts
        ],
    )
    .await?;
    Ok(())
}
