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
