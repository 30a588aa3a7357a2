//! Request counters for rate limits, in D1 so every isolate and every location counts into the
//! same row (src/client/rate_limit.rs says why D1 and not memory or a Durable Object).

use serde::Deserialize;

use crate::http::MatrixError;
use crate::storage::{Arg, Db};

/// Rows whose window started this long ago are nobody's current window any more.
const IDLE_MS: u64 = 24 * 3_600_000;

/// Counts one request for each of `keys` in the window of `window_ms` holding `now_ms`, and
/// returns each key's count in that window (in the order of `keys`), with one statement.
pub async fn count(
    db: &Db,
    keys: &[&str],
    window_ms: u64,
    now_ms: u64,
) -> Result<Vec<u64>, MatrixError> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let window = now_ms - now_ms % window_ms;
    // One multi-row upsert: a key in a new window starts again at 1.
    let values = (0..keys.len())
        .map(|i| format!("(?{}, ?1, 1)", i + 2))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "INSERT INTO rate_counters (key, window_start, count) VALUES {values}
         ON CONFLICT (key) DO UPDATE SET
           count = CASE WHEN window_start = excluded.window_start THEN count + 1 ELSE 1 END,
           window_start = excluded.window_start
         RETURNING key, count"
    );
    let mut args = vec![Arg::from(window)];
    args.extend(keys.iter().map(|k| Arg::from(*k)));
    #[derive(Deserialize)]
    struct Row {
        key: String,
        count: u64,
    }
    let rows: Vec<Row> = db.rows(&sql, &args).await?;
    Ok(keys
        .iter()
        .map(|key| rows.iter().find(|r| r.key == *key).map_or(1, |r| r.count))
        .collect())
}

/// Deletes counters idle for a day (callers do it now and then, not per request).
pub async fn forget_idle(db: &Db, now_ms: u64) -> Result<(), MatrixError> {
    db.run(
        "DELETE FROM rate_counters WHERE window_start < ?1",
        crate::args![now_ms.saturating_sub(IDLE_MS)],
    )
    .await?;
    Ok(())
}
