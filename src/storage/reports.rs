//! Users' reports of events and rooms (`content_reports`, migrations/0019), kept for the
//! server's admins.

use super::Db;
use crate::http::MatrixError;
use crate::time::now_ms;

pub struct Report<'a> {
    pub room_id: &'a str,
    /// `None`: the room itself is reported.
    pub event_id: Option<&'a str>,
    pub user_id: &'a str,
    pub reason: Option<&'a str>,
    pub score: Option<i64>,
}

pub async fn store(db: &Db, report: &Report<'_>) -> Result<(), MatrixError> {
    let score = report.score.map_or(super::Arg::Null, super::Arg::Int);
    db.run(
        "INSERT INTO content_reports (room_id, event_id, user_id, reason, score, received_ts)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        &[
            report.room_id.into(),
            report.event_id.into(),
            report.user_id.into(),
            report.reason.into(),
            score,
            now_ms().into(),
        ],
    )
    .await
    .map(|_| ())
}

#[derive(serde::Deserialize)]
pub struct ReportRow {
    pub id: i64,
    pub received_ts: i64,
    pub room_id: String,
    pub event_id: Option<String>,
    pub user_id: String,
    pub reason: Option<String>,
    pub score: Option<i64>,
    /// The reported event's sender, when the event is stored.
    pub sender: Option<String>,
}

/// Which event reports a page of the admin listing holds.
pub struct ReportPage<'a> {
    pub from: u64,
    pub limit: u64,
    pub backwards: bool,
    pub room_id: Option<&'a str>,
    pub user_id: Option<&'a str>,
}

/// Event reports (room reports are not listed, as Synapse's admin API lists events only),
/// newest first when `backwards`, and how many match in all.
pub async fn event_reports(
    db: &Db,
    page: &ReportPage<'_>,
) -> Result<(Vec<ReportRow>, u64), MatrixError> {
    #[derive(serde::Deserialize)]
    struct Total {
        n: u64,
    }
    const WHERE: &str = "WHERE c.event_id IS NOT NULL AND (?1 IS NULL OR c.room_id = ?1)
        AND (?2 IS NULL OR c.user_id = ?2)";
    let order = if page.backwards { "DESC" } else { "ASC" };
    let rows: Vec<ReportRow> = db
        .rows(
            &format!(
                "SELECT c.id, c.received_ts, c.room_id, c.event_id, c.user_id, c.reason, c.score,
                   e.sender FROM content_reports c LEFT JOIN events e ON e.event_id = c.event_id
                 {WHERE} ORDER BY c.id {order} LIMIT ?3 OFFSET ?4"
            ),
            crate::args![page.room_id, page.user_id, page.limit, page.from],
        )
        .await?;
    let total: Option<Total> = db
        .row(
            &format!("SELECT COUNT(*) AS n FROM content_reports c {WHERE}"),
            crate::args![page.room_id, page.user_id],
        )
        .await?;
    Ok((rows, total.map_or(0, |t| t.n)))
}
