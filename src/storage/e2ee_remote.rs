//! SQL for end-to-end encryption across servers: the cache of remote users' devices and
//! cross-signing keys (kept in the same tables as our users' keys, so `/keys/query` and `/sync`
//! read both alike), its position in each remote user's device-list stream, what we last told
//! other servers about our users, and to-device messages arriving from other servers.

use serde::Deserialize;
use serde_json::{json, Value};

use super::e2ee::DEVICE_LIST_CHANGED;
use super::Db;
use crate::args;
use crate::http::MatrixError;

/// The events' stream position now: a device list written now is current as of every
/// membership stored so far (`tracked_users`).
const CONFIRMED_NOW: &str = "(SELECT IFNULL(MAX(stream_ordering), 0) FROM events)";

#[derive(Deserialize)]
struct UserRow {
    user_id: String,
}

#[derive(Deserialize)]
struct StreamRow {
    stream_id: Option<i64>,
}

/// Which of these remote users have a cached device list that is kept up to date: their keys
/// are answered locally. Only while one of our users shares a joined room with them, joined
/// (both) before the list was last confirmed: once no room is shared their server stops sending
/// us updates (spec: device list tracking ends with the last shared room), so a list cached
/// before a leave and a re-join may be stale, and their server is asked instead.
pub async fn tracked_users(db: &Db, users: &[&str]) -> Result<Vec<String>, MatrixError> {
    if users.is_empty() {
        return Ok(Vec::new());
    }
    Ok(db
        .rows::<UserRow>(
            "SELECT d.user_id FROM e2e_remote_device_lists d
             WHERE d.user_id IN (SELECT value FROM json_each(?1))
               AND EXISTS (SELECT 1 FROM memberships them
                 JOIN memberships m ON m.room_id = them.room_id AND m.membership = 'join'
                 JOIN users u ON u.user_id = m.user_id
                 WHERE them.user_id = d.user_id AND them.membership = 'join'
                   AND them.stream_ordering <= d.confirmed_at
                   AND m.stream_ordering <= d.confirmed_at)",
            args![&json!(users).to_string()],
        )
        .await?
        .into_iter()
        .map(|r| r.user_id)
        .collect())
}

/// The last device-list update of a remote user we applied, if we track the user.
pub async fn remote_stream_id(db: &Db, user_id: &str) -> Result<Option<i64>, MatrixError> {
    Ok(db
        .row::<StreamRow>(
            "SELECT stream_id FROM e2e_remote_device_lists WHERE user_id = ?1",
            args![user_id],
        )
        .await?
        .and_then(|r| r.stream_id))
}

/// The keys we hold of a remote user, as sorted `(device id or key type, json)`: what a resync
/// compares its answer with.
async fn cached_keys(db: &Db, user_id: &str) -> Result<Vec<(String, String)>, MatrixError> {
    #[derive(Deserialize)]
    struct KeyRow {
        id: String,
        key_json: String,
    }
    let mut keys: Vec<(String, String)> = db
        .rows::<KeyRow>(
            "SELECT 'device:' || device_id AS id, key_json FROM e2e_device_keys WHERE user_id = ?1
             UNION ALL
             SELECT 'cross:' || key_type AS id, key_json FROM e2e_cross_signing_keys
               WHERE user_id = ?1 AND key_type != 'user_signing'",
            args![user_id],
        )
        .await?
        .into_iter()
        .map(|r| (r.id, r.key_json))
        .collect();
    keys.sort();
    Ok(keys)
}

/// A remote user's whole device list, as a resync fetched it: replaces every cached device and
/// the master and self-signing keys and moves the user's position to `stream_id`, in one batch,
/// which records a device-list change only when the keys differ from those we held (the first
/// resync of a user without keys, or one that finds what we had, is no news to our users).
/// `devices` are `(device id, key json)`, `cross` `(key type, public key, key json)`.
pub async fn replace_remote_devices(
    db: &Db,
    user_id: &str,
    stream_id: i64,
    devices: &[(String, String)],
    cross: &[(&str, String, String)],
) -> Result<(), MatrixError> {
    let mut fetched: Vec<(String, String)> = devices
        .iter()
        .map(|(device, keys)| (format!("device:{device}"), keys.clone()))
        .chain(
            cross
                .iter()
                .map(|(kind, _, keys)| (format!("cross:{kind}"), keys.clone())),
        )
        .collect();
    fetched.sort();
    let changed = cached_keys(db, user_id).await? != fetched;
    let list = json!(devices).to_string();
    let mut statements = vec![
        db.stmt("DELETE FROM e2e_device_keys WHERE user_id = ?1", args![user_id]),
        db.stmt(
            "INSERT OR REPLACE INTO e2e_device_keys (user_id, device_id, key_json)
             SELECT ?1, json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each(?2)",
            args![user_id, &list],
        ),
        db.stmt(
            "DELETE FROM e2e_cross_signing_keys WHERE user_id = ?1 AND key_type != 'user_signing'",
            args![user_id],
        ),
    ];
    for (kind, public, key) in cross {
        statements.push(db.stmt(
            "INSERT OR REPLACE INTO e2e_cross_signing_keys (user_id, key_type, public_key, key_json)
             VALUES (?1, ?2, ?3, ?4)",
            args![user_id, *kind, public, key],
        ));
    }
    statements.push(db.stmt(
        &format!(
            "INSERT OR REPLACE INTO e2e_remote_device_lists (user_id, stream_id, confirmed_at)
             VALUES (?1, ?2, {CONFIRMED_NOW})"
        ),
        args![user_id, stream_id],
    ));
    if changed {
        statements.push(db.stmt(DEVICE_LIST_CHANGED, args![user_id]));
    }
    db.batch(statements).await.map(|_| ())
}

/// One device of a tracked remote user changed (`keys` set) or went away (`None`); the user's
/// position moves to `stream_id`. One batch, which also records the device-list change.
pub async fn apply_remote_device_update(
    db: &Db,
    user_id: &str,
    device_id: &str,
    keys: Option<&str>,
    stream_id: i64,
) -> Result<(), MatrixError> {
    let device = match keys {
        Some(keys) => db.stmt(
            "INSERT INTO e2e_device_keys (user_id, device_id, key_json) VALUES (?1, ?2, ?3)
             ON CONFLICT (user_id, device_id) DO UPDATE SET key_json = excluded.key_json",
            args![user_id, device_id, keys],
        ),
        None => db.stmt(
            "DELETE FROM e2e_device_keys WHERE user_id = ?1 AND device_id = ?2",
            args![user_id, device_id],
        ),
    };
    let statements = vec![
        device,
        db.stmt(
            &format!(
                "UPDATE e2e_remote_device_lists SET stream_id = ?2, confirmed_at = {CONFIRMED_NOW}
                 WHERE user_id = ?1"
            ),
            args![user_id, stream_id],
        ),
        db.stmt(DEVICE_LIST_CHANGED, args![user_id]),
    ];
    db.batch(statements).await.map(|_| ())
}

/// Whether any of our users shares a joined room with this user: only then do we keep its
/// device list (and take updates about it).
pub async fn shares_room_with_local(db: &Db, user_id: &str, us: &str) -> Result<bool, MatrixError> {
    Ok(db
        .row::<UserRow>(
            "SELECT m.user_id FROM memberships m JOIN memberships them ON them.room_id = m.room_id
             WHERE them.user_id = ?1 AND them.membership = 'join' AND m.membership = 'join'
               AND substr(m.user_id, instr(m.user_id, ':') + 1) = ?2
             LIMIT 1",
            args![user_id, us],
        )
        .await?
        .is_some())
}

/// The other servers with users in a joined room of `user_id`: who hears of its device changes.
pub async fn servers_sharing_rooms(
    db: &Db,
    user_id: &str,
    us: &str,
) -> Result<Vec<String>, MatrixError> {
    #[derive(Deserialize)]
    struct Row {
        server: String,
    }
    Ok(db
        .rows::<Row>(
            "SELECT DISTINCT substr(m.user_id, instr(m.user_id, ':') + 1) AS server
             FROM memberships m JOIN memberships mine ON mine.room_id = m.room_id
             WHERE mine.user_id = ?1 AND mine.membership = 'join' AND m.membership = 'join'",
            args![user_id],
        )
        .await?
        .into_iter()
        .map(|r| r.server)
        .filter(|s| s != us)
        .collect())
}

/// Our user's current device-list position and the one we last sent to other servers (the new
/// update's prev_id), and records the current one as sent: one batch.
pub async fn take_sent_position(
    db: &Db,
    user_id: &str,
) -> Result<(Option<i64>, Option<i64>), MatrixError> {
    let statements = vec![
        db.stmt(
            "SELECT stream_id FROM e2e_device_list_changes WHERE user_id = ?1",
            args![user_id],
        ),
        db.stmt(
            "SELECT stream_id FROM e2e_device_list_sent WHERE user_id = ?1",
            args![user_id],
        ),
        db.stmt(
            "INSERT OR REPLACE INTO e2e_device_list_sent (user_id, stream_id)
             SELECT user_id, stream_id FROM e2e_device_list_changes WHERE user_id = ?1",
            args![user_id],
        ),
    ];
    let results = db.batch(statements).await?;
    let position = |i: usize| -> Result<Option<i64>, MatrixError> {
        Ok(match results.get(i) {
            Some(r) => r
                .rows::<StreamRow>()?
                .into_iter()
                .next()
                .and_then(|r| r.stream_id),
            None => None,
        })
    };
    Ok((position(0)?, position(1)?))
}

/// Our user's current device-list position (0 before any change): the `stream_id` of
/// `user/devices`.
pub async fn local_stream_id(db: &Db, user_id: &str) -> Result<i64, MatrixError> {
    Ok(db
        .row::<StreamRow>(
            "SELECT stream_id FROM e2e_device_list_changes WHERE user_id = ?1",
            args![user_id],
        )
        .await?
        .and_then(|r| r.stream_id)
        .unwrap_or(0))
}

/// To-device messages `[user, device or "*", content]` from another server's user into our
/// users' inboxes; unknown devices are dropped. Returns how many were queued.
pub async fn deliver_to_device(
    db: &Db,
    sender: &str,
    event_type: &str,
    messages: &[Value],
) -> Result<u64, MatrixError> {
    if messages.is_empty() {
        return Ok(0);
    }
    let statement = db.stmt(
        "INSERT INTO e2e_to_device (user_id, device_id, sender, type, content)
         SELECT d.user_id, d.device_id, ?1, ?2, json_extract(w.value, '$[2]')
         FROM json_each(?3) w JOIN devices d ON d.user_id = json_extract(w.value, '$[0]')
           AND (json_extract(w.value, '$[1]') = '*' OR d.device_id = json_extract(w.value, '$[1]'))",
        args![sender, event_type, &Value::Array(messages.to_vec()).to_string()],
    );
    let results = db.batch(vec![statement]).await?;
    Ok(results.first().map(|r| r.changes).unwrap_or(0))
}
