//! Threads (spec: "Threading"): a thread is a root event and the events relating to it with
//! `rel_type` `m.thread`. Read from the events table's relation columns; the partial index
//! `events_thread_replies` (migrations/0019) lists a room's replies by position.

use std::collections::HashMap;

use serde::Deserialize;

use super::events::{EventRow, COLUMNS};
use super::Db;
use crate::args;
use crate::http::MatrixError;

/// A thread as a root's `unsigned.m.relations.m.thread` tells it.
pub struct Summary {
    pub count: u64,
    /// Whether the reader sent one of the replies (the root's sender counts too: the caller
    /// knows the root).
    pub replied: bool,
    pub latest: EventRow,
}

/// The summaries of the threads rooted at `roots` (ids without replies are left out), for
/// `user`: one query whatever the number of roots. Redacted replies are not counted (their
/// relation is redacted with them).
pub async fn summaries(
    db: &Db,
    roots: &[&str],
    user: &str,
) -> Result<HashMap<String, Summary>, MatrixError> {
    if roots.is_empty() {
        return Ok(HashMap::new());
    }
    let roots = serde_json::to_string(roots).unwrap_or_else(|_| "[]".into());
    summaries_of(
        db,
        "WITH",
        "(SELECT value FROM json_each(?1))",
        args![&roots, user],
    )
    .await
}

/// `summaries` of the roots the SQL expression `roots` lists; `with` opens the statement
/// (`WITH`, or `WITH` and common table expressions `roots` reads, each followed by a comma).
/// `?2` is the reader.
pub(super) async fn summaries_of(
    db: &Db,
    with: &str,
    roots: &str,
    args: &[crate::storage::Arg<'_>],
) -> Result<HashMap<String, Summary>, MatrixError> {
    let rows: Vec<SummaryRow> = db.rows(&summaries_sql(with, roots, "?2"), args).await?;
    Ok(summaries_from(rows))
}

/// The query of `summaries_of`, the reader `user` an SQL expression.
pub(crate) fn summaries_sql(with: &str, roots: &str, user: &str) -> String {
    format!(
        "{with} s AS (
           SELECT relates_to AS root, COUNT(*) AS n, MAX(stream_ordering) AS latest,
             MAX(sender = {user}) AS replied
           FROM events
           WHERE relates_to IN {roots} AND rel_type = 'm.thread'
             AND outlier = 0 AND redacted_by IS NULL
           GROUP BY relates_to)
         SELECT {COLUMNS}, s.root AS thread_root, s.n AS thread_count,
           s.replied AS thread_replied
         FROM s JOIN events e ON e.stream_ordering = s.latest
         LEFT JOIN events r ON r.event_id = e.redacted_by"
    )
}

/// A row of `summaries_sql`.
#[derive(Deserialize)]
pub(crate) struct SummaryRow {
    #[serde(flatten)]
    latest: EventRow,
    thread_root: String,
    thread_count: u64,
    thread_replied: i64,
}

pub(crate) fn summaries_from(rows: Vec<SummaryRow>) -> HashMap<String, Summary> {
    rows.into_iter()
        .map(|r| {
            let summary = Summary {
                count: r.thread_count,
                replied: r.thread_replied != 0,
                latest: r.latest,
            };
            (r.thread_root, summary)
        })
        .collect()
}

/// One page of a room's threads, by latest reply, newest first: `(root id, latest reply's
/// position)`, for threads whose latest reply is below `before`. With `participant`, only
/// threads that user started or replied to.
pub async fn threads(
    db: &Db,
    room_id: &str,
    participant: Option<&str>,
    before: i64,
    limit: u64,
) -> Result<Vec<(String, i64)>, MatrixError> {
    #[derive(Deserialize)]
    struct Row {
        root: String,
        latest: i64,
    }
    let rows: Vec<Row> = db
        .rows(
            "SELECT t.relates_to AS root, MAX(t.stream_ordering) AS latest FROM events t
             WHERE t.room_id = ?1 AND t.rel_type = 'm.thread' AND t.outlier = 0
               AND t.redacted_by IS NULL
             GROUP BY t.relates_to
             HAVING latest < ?2 AND (?3 IS NULL OR MAX(t.sender = ?3) = 1
               OR (SELECT x.sender FROM events x WHERE x.event_id = t.relates_to) = ?3)
             ORDER BY latest DESC LIMIT ?4",
            args![room_id, before, participant, limit],
        )
        .await?;
    Ok(rows.into_iter().map(|r| (r.root, r.latest)).collect())
}
