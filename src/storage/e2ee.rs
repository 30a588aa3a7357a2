//! SQL for end-to-end encryption: device, one-time, fallback and cross-signing keys, signatures
//! on them, the to-device inbox and the device-list stream. Every read over several users or
//! devices is one query over a JSON list (`json_each`), never a query per user or device.

use std::collections::BTreeMap;

use crate::platform::Statement;
use serde::Deserialize;
use serde_json::{json, Value};

use super::Db;
use crate::args;
use crate::e2ee::device_keys::UploadedKey;
use crate::http::MatrixError;
use crate::sync::token::StreamPosition;
use crate::time::now_ms;

/// Records that a user's devices or keys changed: a new, higher position in the stream.
pub(crate) const DEVICE_LIST_CHANGED: &str =
    "INSERT OR REPLACE INTO e2e_device_list_changes (user_id) VALUES (?1)";

fn keys_json(keys: &[UploadedKey]) -> String {
    Value::Array(
        keys.iter()
            .map(|k| json!([k.algorithm, k.key_id, k.key.to_string()]))
            .collect(),
    )
    .to_string()
}

/// What `/keys/upload` stores, in one batch; returns the one-time key counts afterwards and
/// whether the device keys were new or different (then the device list changed).
pub async fn upload(
    db: &Db,
    user_id: &str,
    device_id: &str,
    device_keys: Option<&str>,
    one_time_keys: &[UploadedKey],
    fallback_keys: &[UploadedKey],
) -> Result<(BTreeMap<String, u64>, bool), MatrixError> {
    let mut statements = Vec::new();
    if let Some(keys) = device_keys {
        // Before the upsert, so it sees the old keys: only a real change moves the stream.
        statements.push(db.stmt(
            "INSERT OR REPLACE INTO e2e_device_list_changes (user_id) SELECT ?1 WHERE NOT EXISTS
               (SELECT 1 FROM e2e_device_keys WHERE user_id = ?1 AND device_id = ?2 AND key_json = ?3)",
            args![user_id, device_id, keys],
        ));
        statements.push(db.stmt(
            "INSERT INTO e2e_device_keys (user_id, device_id, key_json) VALUES (?1, ?2, ?3)
             ON CONFLICT (user_id, device_id) DO UPDATE SET key_json = excluded.key_json",
            args![user_id, device_id, keys],
        ));
    }
    if !one_time_keys.is_empty() {
        // A key id already stored keeps its first key: a retried upload changes nothing.
        statements.push(db.stmt(
            "INSERT OR IGNORE INTO e2e_one_time_keys (user_id, device_id, algorithm, key_id, key_json)
             SELECT ?1, ?2, json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]')
             FROM json_each(?3)",
            args![user_id, device_id, &keys_json(one_time_keys)],
        ));
    }
    if !fallback_keys.is_empty() {
        // A new fallback key replaces the old one and is unused; the same key again keeps its state.
        statements.push(db.stmt(
            "INSERT INTO e2e_fallback_keys (user_id, device_id, algorithm, key_id, key_json, used)
             SELECT ?1, ?2, json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'), 0
             FROM json_each(?3) WHERE true
             ON CONFLICT (user_id, device_id, algorithm) DO UPDATE SET
               key_id = excluded.key_id, key_json = excluded.key_json, used = 0
             WHERE e2e_fallback_keys.key_id != excluded.key_id",
            args![user_id, device_id, &keys_json(fallback_keys)],
        ));
    }
    let changed = if statements.is_empty() {
        false
    } else {
        let results = db.batch(statements).await?;
        device_keys.is_some() && results.first().map(|r| r.changes).unwrap_or(0) > 0
    };
    let (counts, _) = key_counts(db, user_id, device_id).await?;
    Ok((counts, changed))
}

/// The device's unclaimed one-time keys per algorithm, and the algorithms of its unused
/// fallback keys: one query.
pub async fn key_counts(
    db: &Db,
    user_id: &str,
    device_id: &str,
) -> Result<(BTreeMap<String, u64>, Vec<String>), MatrixError> {
    #[derive(Deserialize)]
    struct Row {
        kind: String,
        algorithm: String,
        n: i64,
    }
    let rows: Vec<Row> = db
        .rows(
            "SELECT 'otk' AS kind, algorithm, COUNT(*) AS n FROM e2e_one_time_keys
               WHERE user_id = ?1 AND device_id = ?2 GROUP BY algorithm
             UNION ALL
             SELECT 'fallback' AS kind, algorithm, 0 AS n FROM e2e_fallback_keys
               WHERE user_id = ?1 AND device_id = ?2 AND used = 0",
            args![user_id, device_id],
        )
        .await?;
    // Clients read a missing signed_curve25519 count as "unknown"; 0 makes them upload keys.
    let mut counts = BTreeMap::from([("signed_curve25519".to_owned(), 0)]);
    let mut fallback = Vec::new();
    for row in rows {
        if row.kind == "otk" {
            counts.insert(row.algorithm, row.n as u64);
        } else {
            fallback.push(row.algorithm);
        }
    }
    Ok((counts, fallback))
}

#[derive(Deserialize)]
pub struct DeviceKeysRow {
    pub user_id: String,
    pub device_id: String,
    pub key_json: String,
    pub display_name: Option<String>,
}

/// Device keys of `(user, device)` pairs; an empty device id means all of the user's devices.
pub async fn device_keys(
    db: &Db,
    wanted: &[(&str, &str)],
) -> Result<Vec<DeviceKeysRow>, MatrixError> {
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    db.rows(
        "WITH wanted AS (SELECT json_extract(value, '$[0]') AS user_id, json_extract(value, '$[1]') AS device_id
                         FROM json_each(?1))
         SELECT DISTINCT k.user_id, k.device_id, k.key_json, d.display_name
         FROM e2e_device_keys k JOIN wanted w
           ON w.user_id = k.user_id AND (w.device_id = '' OR w.device_id = k.device_id)
         LEFT JOIN devices d ON d.user_id = k.user_id AND d.device_id = k.device_id",
        args![&json!(wanted).to_string()],
    )
    .await
}

#[derive(Deserialize)]
pub struct CrossSigningRow {
    pub user_id: String,
    pub key_type: String,
    pub public_key: String,
    pub key_json: String,
}

pub async fn cross_signing_keys(
    db: &Db,
    users: &[&str],
) -> Result<Vec<CrossSigningRow>, MatrixError> {
    if users.is_empty() {
        return Ok(Vec::new());
    }
    db.rows(
        "SELECT user_id, key_type, public_key, key_json FROM e2e_cross_signing_keys
         WHERE user_id IN (SELECT value FROM json_each(?1))",
        args![&json!(users).to_string()],
    )
    .await
}

/// Stores cross-signing keys `(type, public key, json)` and marks the user's keys changed.
pub async fn store_cross_signing_keys(
    db: &Db,
    user_id: &str,
    keys: &[(&str, String, String)],
) -> Result<(), MatrixError> {
    let mut statements = Vec::new();
    for (kind, public, key) in keys {
        statements.push(db.stmt(
            "INSERT OR REPLACE INTO e2e_cross_signing_keys (user_id, key_type, public_key, key_json)
             VALUES (?1, ?2, ?3, ?4)",
            args![user_id, *kind, public, key],
        ));
    }
    statements.push(db.stmt(DEVICE_LIST_CHANGED, args![user_id]));
    db.batch(statements).await.map(|_| ())
}

#[derive(Deserialize)]
pub struct SignatureRow {
    pub target_user_id: String,
    pub target_key_id: String,
    pub signer_user_id: String,
    pub signer_key_id: String,
    pub signature: String,
}

/// Signatures on the users' keys that `viewer` may see: a user's own signatures, and those the
/// viewer made (the spec keeps user-signing signatures private to their author).
pub async fn signatures(
    db: &Db,
    users: &[&str],
    viewer: &str,
) -> Result<Vec<SignatureRow>, MatrixError> {
    if users.is_empty() {
        return Ok(Vec::new());
    }
    db.rows(
        "SELECT target_user_id, target_key_id, signer_user_id, signer_key_id, signature
         FROM e2e_signatures WHERE target_user_id IN (SELECT value FROM json_each(?1))
           AND (signer_user_id = target_user_id OR signer_user_id = ?2)",
        args![&json!(users).to_string(), viewer],
    )
    .await
}

/// Stores verified signatures and marks every target user's keys changed, in one batch.
pub async fn store_signatures(db: &Db, rows: &[SignatureRow]) -> Result<(), MatrixError> {
    if rows.is_empty() {
        return Ok(());
    }
    let list: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!([
                r.target_user_id,
                r.target_key_id,
                r.signer_user_id,
                r.signer_key_id,
                r.signature
            ])
        })
        .collect();
    let list = Value::Array(list).to_string();
    let statements = vec![
        db.stmt(
            "INSERT OR REPLACE INTO e2e_signatures
               (target_user_id, target_key_id, signer_user_id, signer_key_id, signature)
             SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'),
                    json_extract(value, '$[3]'), json_extract(value, '$[4]') FROM json_each(?1)",
            args![&list],
        ),
        db.stmt(
            "INSERT OR REPLACE INTO e2e_device_list_changes (user_id)
             SELECT DISTINCT json_extract(value, '$[0]') FROM json_each(?1)",
            args![&list],
        ),
    ];
    db.batch(statements).await.map(|_| ())
}

#[derive(Deserialize)]
pub struct ClaimedKey {
    pub user_id: String,
    pub device_id: String,
    pub algorithm: String,
    pub key_id: String,
    pub key_json: String,
}

/// Claims one one-time key per `(user, device, algorithm)`. One statement: SQLite runs it
/// alone, so a key it deletes and returns is returned to no other claim, however many run at
/// once (D1 has no interactive transactions; a select-then-delete would hand a key out twice).
pub async fn claim_one_time_keys(
    db: &Db,
    wanted: &[(&str, &str, &str)],
) -> Result<Vec<ClaimedKey>, MatrixError> {
    claim(
        db,
        "DELETE FROM e2e_one_time_keys WHERE id IN (
           SELECT (SELECT o.id FROM e2e_one_time_keys o
                   WHERE o.user_id = json_extract(w.value, '$[0]') AND o.device_id = json_extract(w.value, '$[1]')
                     AND o.algorithm = json_extract(w.value, '$[2]')
                   ORDER BY o.id LIMIT 1)
           FROM json_each(?1) w)",
        wanted,
    )
    .await
}

/// The fallback keys of devices that had no one-time key left, marked used (the client then
/// uploads a new one). A fallback key may go to several claimers: that is what it is for.
pub async fn claim_fallback_keys(
    db: &Db,
    wanted: &[(&str, &str, &str)],
) -> Result<Vec<ClaimedKey>, MatrixError> {
    claim(
        db,
        "UPDATE e2e_fallback_keys SET used = 1
         WHERE (user_id, device_id, algorithm) IN (
           SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]')
           FROM json_each(?1))",
        wanted,
    )
    .await
}

/// Runs a claiming statement over the JSON list of `(user, device, algorithm)` and returns
/// the keys it took.
async fn claim(
    db: &Db,
    statement: &str,
    wanted: &[(&str, &str, &str)],
) -> Result<Vec<ClaimedKey>, MatrixError> {
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    db.rows(
        &format!("{statement} RETURNING user_id, device_id, algorithm, key_id, key_json"),
        args![&json!(wanted).to_string()],
    )
    .await
}

/// Users whose device lists changed between two positions, as the requester sees them: the
/// users who share a room with `user_id` (and the user itself), plus everyone who joined a
/// room of the user, or whose room the user joined, in the gap (a new member's devices are new
/// to the others; a room the user joined lists the user too, for its other devices); `left`: users who stopped sharing any room with the user in the gap.
/// One query, whatever the number of rooms.
pub async fn device_list_delta(
    db: &Db,
    user_id: &str,
    since: &StreamPosition,
    now: &StreamPosition,
) -> Result<(Vec<String>, Vec<String>), MatrixError> {
    let rows: Vec<DeltaRow> = db
        .rows(
            &device_list_delta_sql("?1", ["?2", "?3"], ["?4", "?5"]),
            args![
                user_id,
                since.device_lists,
                now.device_lists,
                since.events,
                now.events
            ],
        )
        .await?;
    Ok(device_list_delta_from(rows))
}

/// The query of `device_list_delta`, its operands as SQL expressions: the user, then the
/// bounds of the device-list stream and of the events stream.
///
/// Its cost follows what moved, not how many rooms and members the user has (D1 bills every
/// row read, and this runs in every /sync with news): a membership can only have changed in a
/// room with an event in the gap (`moved`, one index seek per room of the user), so only those
/// rooms' members are read; and whether someone shares a room with the user is asked of their
/// own rooms (`shares`), for the few users a change names.
pub(crate) fn device_list_delta_sql(user: &str, lists: [&str; 2], events: [&str; 2]) -> String {
    let [l0, l1] = lists;
    let [e0, e1] = events;
    let shares = |other: &str| {
        format!(
            "EXISTS (SELECT 1 FROM memberships b JOIN memberships a ON a.room_id = b.room_id
                       AND a.user_id = {user} AND a.membership = 'join'
                     WHERE b.user_id = {other} AND b.membership = 'join')"
        )
    };
    format!(
        "WITH moved AS (SELECT me.room_id, me.membership, me.stream_ordering FROM memberships me
                        WHERE me.user_id = {user}
                          AND EXISTS (SELECT 1 FROM events x WHERE x.room_id = me.room_id
                                        AND x.stream_ordering > {e0} AND x.stream_ordering <= {e1}))
         SELECT 'changed' AS kind, c.user_id FROM e2e_device_list_changes c
           WHERE c.stream_id > {l0} AND c.stream_id <= {l1}
             AND (c.user_id = {user} OR {})
         UNION
         SELECT 'changed' AS kind, m.user_id FROM moved me CROSS JOIN memberships m ON m.room_id = me.room_id
           WHERE me.membership = 'join' AND m.membership = 'join' AND m.stream_ordering <= {e1}
             AND (m.user_id != {user} OR me.stream_ordering > {e0})
             AND (m.stream_ordering > {e0} OR me.stream_ordering > {e0})
         UNION
         SELECT 'left' AS kind, m.user_id FROM moved me CROSS JOIN memberships m ON m.room_id = me.room_id
           WHERE m.user_id != {user} AND NOT {}
             AND ((m.membership IN ('leave', 'ban') AND m.stream_ordering > {e0} AND m.stream_ordering <= {e1})
               OR (me.membership IN ('leave', 'ban') AND me.stream_ordering > {e0} AND me.stream_ordering <= {e1}))",
        shares("c.user_id"),
        shares("m.user_id"),
    )
}

/// A row of `device_list_delta_sql`.
#[derive(Deserialize)]
pub(crate) struct DeltaRow {
    kind: String,
    user_id: String,
}

/// `(changed, left)` from the rows of `device_list_delta_sql`.
pub(crate) fn device_list_delta_from(rows: Vec<DeltaRow>) -> (Vec<String>, Vec<String>) {
    let (mut changed, mut left) = (Vec::new(), Vec::new());
    for row in rows {
        if row.kind == "changed" {
            changed.push(row.user_id);
        } else {
            left.push(row.user_id);
        }
    }
    (changed, left)
}

/// Local users who share a joined room with any of `users`, and those users: who to wake when
/// their devices or keys change.
pub async fn users_sharing_rooms(db: &Db, users: &[&str]) -> Result<Vec<String>, MatrixError> {
    #[derive(Deserialize)]
    struct Row {
        user_id: String,
    }
    let list = json!(users).to_string();
    Ok(db
        .rows::<Row>(
            "SELECT DISTINCT m.user_id FROM memberships m JOIN users u ON u.user_id = m.user_id
             WHERE m.membership = 'join' AND m.room_id IN
               (SELECT room_id FROM memberships WHERE membership = 'join'
                  AND user_id IN (SELECT value FROM json_each(?1)))
             UNION SELECT value FROM json_each(?1)",
            args![&list],
        )
        .await?
        .into_iter()
        .map(|r| r.user_id)
        .collect())
}

/// Statements that forget a device's keys and inbox and record the change, to run in the
/// batch that deletes the device.
pub fn forget_device(db: &Db, user_id: &str, device_id: &str) -> Vec<Statement> {
    let mut statements = Vec::new();
    for sql in [
        "DELETE FROM e2e_device_keys WHERE user_id = ?1 AND device_id = ?2",
        "DELETE FROM e2e_one_time_keys WHERE user_id = ?1 AND device_id = ?2",
        "DELETE FROM e2e_fallback_keys WHERE user_id = ?1 AND device_id = ?2",
        "DELETE FROM e2e_to_device WHERE user_id = ?1 AND device_id = ?2",
        "DELETE FROM e2e_signatures WHERE target_user_id = ?1 AND target_key_id = ?2",
    ] {
        statements.push(db.stmt(sql, args![user_id, device_id]));
    }
    statements.push(db.stmt(DEVICE_LIST_CHANGED, args![user_id]));
    statements
}

/// Statements that forget all of a user's device keys and inboxes (deactivation). Cross-signing
/// keys go too: nobody should trust new devices signed in a dead account's name.
pub fn forget_user(db: &Db, user_id: &str) -> Vec<Statement> {
    let mut statements = Vec::new();
    for sql in [
        "DELETE FROM e2e_device_keys WHERE user_id = ?1",
        "DELETE FROM e2e_one_time_keys WHERE user_id = ?1",
        "DELETE FROM e2e_fallback_keys WHERE user_id = ?1",
        "DELETE FROM e2e_to_device WHERE user_id = ?1",
        "DELETE FROM e2e_cross_signing_keys WHERE user_id = ?1",
        "DELETE FROM e2e_signatures WHERE target_user_id = ?1",
        DEVICE_LIST_CHANGED,
    ] {
        statements.push(db.stmt(sql, args![user_id]));
    }
    statements
}

/// Queues to-device messages `[user, device or "*", content]` from `sender` once per
/// transaction: the inserts only happen if the transaction id is new, in the same batch that
/// records it. Messages for unknown devices are dropped (the spec allows it). Returns how many
/// messages were queued, and whether the transaction id was new (then remote recipients' EDUs
/// are due too).
pub async fn send_to_device(
    db: &Db,
    sender: &str,
    sender_device: &str,
    event_type: &str,
    txn_id: &str,
    messages: &[Value],
) -> Result<(u64, bool), MatrixError> {
    let scope = format!("sendToDevice/{event_type}");
    let statements = vec![
        db.stmt(
            "INSERT INTO e2e_to_device (user_id, device_id, sender, type, content)
             SELECT d.user_id, d.device_id, ?1, ?2, json_extract(w.value, '$[2]')
             FROM json_each(?3) w JOIN devices d ON d.user_id = json_extract(w.value, '$[0]')
               AND (json_extract(w.value, '$[1]') = '*' OR d.device_id = json_extract(w.value, '$[1]'))
             WHERE NOT EXISTS (SELECT 1 FROM client_transactions
                               WHERE user_id = ?1 AND device_id = ?4 AND scope = ?5 AND txn_id = ?6)",
            args![
                sender,
                event_type,
                &Value::Array(messages.to_vec()).to_string(),
                sender_device,
                &scope,
                txn_id
            ],
        ),
        db.stmt(
            "INSERT OR IGNORE INTO client_transactions (user_id, device_id, scope, txn_id, result, created_ts)
             VALUES (?1, ?2, ?3, ?4, '{}', ?5)",
            args![sender, sender_device, &scope, txn_id, now_ms()],
        ),
    ];
    let results = db.batch(statements).await?;
    Ok((
        results.first().map(|r| r.changes).unwrap_or(0),
        results.get(1).map(|r| r.changes).unwrap_or(0) > 0,
    ))
}

#[derive(Deserialize)]
pub struct ToDeviceRow {
    pub stream_id: i64,
    pub sender: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub content: String,
}

impl ToDeviceRow {
    /// The message as a client receives it in a sync.
    pub fn to_client(&self) -> serde_json::Value {
        serde_json::json!({
            "sender": self.sender,
            "type": self.kind,
            "content": serde_json::from_str::<serde_json::Value>(&self.content)
                .unwrap_or_else(|_| serde_json::json!({})),
        })
    }
}

/// The device's inbox for one sync, in one batch: deletes what the client acknowledged (at or
/// below `acknowledged`, the position of the token it came back with), then reads up to
/// `limit` messages above it and at or below `up_to`.
pub async fn to_device_inbox(
    db: &Db,
    user_id: &str,
    device_id: &str,
    acknowledged: u64,
    up_to: u64,
    limit: u64,
) -> Result<Vec<ToDeviceRow>, MatrixError> {
    let statements = vec![
        db.stmt(
            "DELETE FROM e2e_to_device WHERE user_id = ?1 AND device_id = ?2 AND stream_id <= ?3",
            args![user_id, device_id, acknowledged],
        ),
        db.stmt(
            INBOX_READ,
            args![user_id, device_id, acknowledged, up_to, limit],
        ),
    ];
    let results = db.batch(statements).await?;
    match results.get(1) {
        Some(result) => result.rows(),
        None => Ok(Vec::new()),
    }
}

/// The read of `to_device_inbox`.
const INBOX_READ: &str = "SELECT stream_id, sender, type, content FROM e2e_to_device
    WHERE user_id = ?1 AND device_id = ?2 AND stream_id > ?3 AND stream_id <= ?4
    ORDER BY stream_id LIMIT ?5";

/// `to_device_inbox` when the inbox's bounds are known (`storage::sync::Inbox`, read by the
/// sync's first statement): nothing acknowledged left to delete and nothing new is no query at
/// all, only new messages is a plain read that shares the sync's batch of reads; only a delete
/// takes the write batch of its own.
pub async fn to_device_inbox_within(
    db: &Db,
    user_id: &str,
    device_id: &str,
    (acknowledged, up_to, limit): (u64, u64, u64),
    inbox: super::sync::Inbox,
) -> Result<Vec<ToDeviceRow>, MatrixError> {
    if inbox.holds_acknowledged(acknowledged) {
        to_device_inbox(db, user_id, device_id, acknowledged, up_to, limit).await
    } else if inbox.holds_new(acknowledged) {
        db.rows(
            INBOX_READ,
            args![user_id, device_id, acknowledged, up_to, limit],
        )
        .await
    } else {
        Ok(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    /// The delta seeks everything it reads: no step walks a table (the rooms of the user, each
    /// room's events in the gap, the members of the rooms that moved, the changes in the gap).
    #[test]
    fn the_device_list_delta_reads_by_index_only() {
        let db = crate::testing::Sqlite::migrated();
        let plan = db.plan(&super::device_list_delta_sql(
            "?1",
            ["?2", "?3"],
            ["?4", "?5"],
        ));
        assert!(!plan.lines().any(|step| step.starts_with("SCAN")), "{plan}");
        assert!(plan.contains("SEARCH m USING INDEX sqlite_autoindex_memberships_1 (room_id=?)"));
    }
}
