//! The rooms' first round of an incremental `/sync`, read by the request's first statement
//! (`sync::sync_start`) instead of a second round trip: the reads of `sync_rooms` (timelines,
//! thread summaries, typing, receipts, gaps, the user's membership history), the unread counts
//! and the device-list changes, for the rooms that changed between the client's token and the
//! positions of the same statement, each as a JSON array of the rows the separate query returns.
//!
//! The windows are the ones `sync::handler` gives a room the user was already in (from the
//! token to the positions read), so the rows are exactly what the separate reads would return
//! in that snapshot; the handler uses them only when every room it builds is such a room (no new
//! membership, no `full_state`), and reads the usual way otherwise. Only an incremental sync in
//! which some stream moved runs these parts (`CASE` in the statement); the statement's text does
//! not depend on the request and it reads the token hash through `args`, so local D1 compiles it
//! once (workerd keeps prepared statements by their text; `sync::through_args` says why the
//! token hash matters), and a quiet sync costs nothing for them.

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;

use super::events::{EventRow, MemberRow};
use super::sync_rooms::{self, GapRow, ReceiptRow, TypingRow};
use super::threads::{Summary, SummaryRow};
use crate::http::MatrixError;
use crate::push::counts::RoomUnread;
use crate::rooms::visibility::MembershipHistory;

/// The user and the positions of the statement, as SQL expressions over its `me` and `pos`.
pub(crate) const ME: &str = "(SELECT user_id FROM me)";
pub(crate) const NOW_EVENTS: &str = "(SELECT IFNULL(e, 0) FROM pos)";
const NOW_RECEIPTS: &str = "(SELECT IFNULL(r, 0) FROM pos)";
const NOW_TYPING: &str = "(SELECT IFNULL(t, 0) FROM pos)";
/// The device-list stream's end, never behind the client's token (`sync::handler::position`).
const NOW_DEVICE_LISTS: &str = "(SELECT MAX(IFNULL(l, 0), ?9) FROM pos)";
const ROOMS: &str = "(SELECT room_id FROM fold)";

/// The statement's common table expressions for the fold, each preceded by a comma: `fold`, the
/// rooms that changed (`sync::changed_rooms_sql` over the statement's positions), and `lim`, the
/// timeline limit plus one (`?15`, or when the filter is stored, its limit as the handler
/// reads it: `default` when unset, at most `max`), an integer (D1 binds JS numbers, which a
/// bare parameter would give back as `11.0`).
pub(crate) fn ctes(changed_rooms: &str, default: u64, max: u64) -> String {
    format!(
        ", fold AS ({changed_rooms}),
         lim AS (SELECT CAST(IFNULL(?15, MIN(IFNULL(json_extract((SELECT filter FROM filters
           WHERE user_id = {ME} AND filter_id = ?2), '$.room.timeline.limit'), {default}), {max}) + 1)
           AS INTEGER) AS n)"
    )
}

/// The SQL expressions `changed_rooms_sql` of `fold` takes: the user, the lower bounds (the
/// client's token) and the upper bounds (the statement's positions) of events, receipts and
/// typing.
pub(crate) const CHANGED_OPERANDS: (&str, [&str; 3], [&str; 3]) = (
    ME,
    ["?4", "?6", "?7"],
    [NOW_EVENTS, NOW_RECEIPTS, NOW_TYPING],
);

/// The column: a JSON object of every part, when `run` (an SQL condition) holds.
pub(crate) fn column(run: &str) -> String {
    let windows = |lo: &str, hi: &str| {
        format!("WITH wanted AS (SELECT room_id, {lo} AS lo, {hi} AS hi FROM fold)")
    };
    let events = windows("?4", NOW_EVENTS);
    let event_fields = event_fields();
    let mut summary_fields = event_fields.clone();
    summary_fields.extend(["thread_root", "thread_count", "thread_replied"].map(plain));
    let parts = [
        ("limit", "(SELECT n FROM lim)".to_owned()),
        (
            "rooms",
            "(SELECT json_group_array(room_id) FROM fold)".to_owned(),
        ),
        (
            "histories",
            rows(
                &["key", "stream_ordering", "membership"].map(plain),
                &sync_rooms::membership_histories_sql(ME, ROOMS),
            ),
        ),
        (
            "timelines",
            rows(
                &event_fields,
                &format!(
                    "{events} {}",
                    sync_rooms::window_ends_rows_sql("DESC", "(SELECT n FROM lim)")
                ),
            ),
        ),
        (
            "threads",
            rows(
                &summary_fields,
                &super::threads::summaries_sql(
                    &format!(
                        "{events}, {}",
                        sync_rooms::thread_roots_cte("(SELECT n FROM lim)")
                    ),
                    "(SELECT event_id FROM roots)",
                    ME,
                ),
            ),
        ),
        (
            "typing",
            rows(
                &["room_id", "user_id", "expires_ts"].map(plain),
                &format!("{} {}", windows("?7", NOW_TYPING), sync_rooms::TYPING),
            ),
        ),
        (
            "receipts",
            rows(
                &[
                    "room_id",
                    "user_id",
                    "receipt_type",
                    "thread_id",
                    "event_id",
                    "ts",
                ]
                .map(plain),
                &format!("{} {}", windows("?6", NOW_RECEIPTS), sync_rooms::RECEIPTS),
            ),
        ),
        (
            "unread",
            rows(
                &["room_id", "thread_id", "n", "h"].map(plain),
                &super::push::unread_sql(ME, &format!("SELECT room_id FROM {ROOMS}")),
            ),
        ),
        (
            "gaps",
            rows(
                &["room_id", "at"].map(plain),
                &format!("{events} {}", sync_rooms::GAPS),
            ),
        ),
        (
            "device_lists",
            rows(
                &["kind", "user_id"].map(plain),
                &super::e2ee::device_list_delta_sql(
                    ME,
                    ["?9", NOW_DEVICE_LISTS],
                    ["?4", NOW_EVENTS],
                ),
            ),
        ),
    ];
    let fields: Vec<String> = parts
        .iter()
        .map(|(name, sql)| format!("'{name}', json({sql})"))
        .collect();
    format!(
        "CASE WHEN {run} THEN json_object({}) END",
        fields.join(", ")
    )
}

/// A column of a folded query and whether its value must be made plain text: a value computed
/// by a JSON function would otherwise go into the object as JSON rather than as its text.
pub(crate) type Field = (String, bool);

pub(crate) fn plain(name: &str) -> Field {
    (name.to_owned(), false)
}

/// The columns of `events::COLUMNS` by their names in a row (an alias, else the column).
pub(crate) fn event_fields() -> Vec<Field> {
    let mut fields = Vec::new();
    let (mut depth, mut start) = (0, 0);
    let columns = super::events::COLUMNS;
    for (i, c) in columns.char_indices().chain([(columns.len(), ',')]) {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                let item = columns[start..i].trim();
                let name = match item.rfind(" AS ") {
                    Some(at) => item[at + 4..].trim(),
                    None => item.rsplit('.').next().unwrap_or(item),
                };
                fields.push((name.to_owned(), item.contains("json_")));
                start = i + 1;
            }
            _ => {}
        }
    }
    fields
}

/// `query`'s rows as a JSON array of objects with `fields`.
pub(crate) fn rows(fields: &[Field], query: &str) -> String {
    let pairs: Vec<String> = fields
        .iter()
        .map(|(name, text)| {
            if *text {
                format!("'{name}', '' || {name}")
            } else {
                format!("'{name}', {name}")
            }
        })
        .collect();
    format!(
        "(SELECT json_group_array(json_object({})) FROM ({query}))",
        pairs.join(", ")
    )
}

/// What the fold read, as the separate reads return it.
pub struct Prefetched {
    /// The timeline limit plus one that the timelines were read with.
    pub limit: u64,
    /// The rooms covered: those that changed in the windows.
    pub rooms: Vec<String>,
    pub histories: BTreeMap<String, MembershipHistory>,
    pub timelines: HashMap<String, Vec<EventRow>>,
    pub thread_summaries: HashMap<String, Summary>,
    pub typing: Vec<TypingRow>,
    pub receipts: Vec<ReceiptRow>,
    pub unread: HashMap<String, RoomUnread>,
    pub gaps: HashMap<String, u64>,
    /// `(changed, left)` of the device lists.
    pub device_lists: (Vec<String>, Vec<String>),
}

#[derive(Deserialize)]
struct Parts {
    limit: u64,
    rooms: Vec<String>,
    histories: Vec<MemberRow>,
    timelines: Vec<EventRow>,
    threads: Vec<SummaryRow>,
    typing: Vec<TypingRow>,
    receipts: Vec<ReceiptRow>,
    unread: Vec<super::push::UnreadRow>,
    gaps: Vec<GapRow>,
    device_lists: Vec<super::e2ee::DeltaRow>,
}

/// The column's value, parsed.
pub(crate) fn parse(text: &str) -> Result<Prefetched, MatrixError> {
    let parts: Parts = serde_json::from_str(text).map_err(super::storage_error)?;
    let mut histories = super::events::member_rows_from(parts.histories);
    histories.sort_by_key(|(_, position, _)| *position);
    // Newest first, as `sync_rooms::timelines` returns them.
    let mut timelines = parts.timelines;
    timelines.sort_by_key(|row| std::cmp::Reverse(row.stream_ordering));
    let mut by_room: HashMap<String, Vec<EventRow>> = HashMap::new();
    for row in timelines {
        by_room.entry(row.room_id.clone()).or_default().push(row);
    }
    Ok(Prefetched {
        limit: parts.limit,
        rooms: parts.rooms,
        histories: MembershipHistory::grouped(histories),
        timelines: by_room,
        thread_summaries: super::threads::summaries_from(parts.threads),
        typing: parts.typing,
        receipts: parts.receipts,
        unread: super::push::unread_from(parts.unread),
        gaps: sync_rooms::gaps_from(parts.gaps),
        device_lists: super::e2ee::device_list_delta_from(parts.device_lists),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_fields_are_the_row_names() {
        let names: Vec<String> = event_fields().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names.first().map(String::as_str), Some("stream_ordering"));
        assert!(names.iter().any(|n| n == "redaction"));
        assert!(event_fields()
            .iter()
            .any(|(name, text)| name == "replaced" && *text));
        assert!(names.iter().all(|n| !n.contains(' ') && !n.contains('.')));
    }
}
