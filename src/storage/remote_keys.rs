//! Other servers' verify keys and the key documents that list them, as fetched from their key
//! servers or through notaries.

use serde::Deserialize;
use serde_json::Value;

use super::Db;
use crate::args;
use crate::http::MatrixError;
use crate::keys::notary::RemoteKey;
use crate::rooms::RoomVersion;
use crate::time::now_ms;

/// A key that may verify a signature made now (`valid_until_ts` not passed), or made before the
/// key expired.
pub async fn public_key(
    db: &Db,
    server: &str,
    key_id: &str,
) -> Result<Option<(String, u64, Option<u64>)>, MatrixError> {
    #[derive(Deserialize)]
    struct Row {
        public_key: String,
        valid_until_ts: i64,
        expired_ts: Option<i64>,
    }
    Ok(db
        .row::<Row>(
            "SELECT public_key, valid_until_ts, expired_ts FROM remote_server_keys
             WHERE server_name = ?1 AND key_id = ?2",
            args![server, key_id],
        )
        .await?
        .map(|r| {
            (
                r.public_key,
                r.valid_until_ts as u64,
                r.expired_ts.map(|t| t as u64),
            )
        }))
}

/// Caches the keys a verified document of `server` lists, and keeps the document itself as its
/// origin signed it (the newest one), in one batch.
pub async fn store(
    db: &Db,
    server: &str,
    keys: &[RemoteKey],
    document: &str,
    valid_until_ts: u64,
) -> Result<(), MatrixError> {
    let mut statements = vec![db.stmt(
        "INSERT INTO remote_server_key_documents (server_name, document, valid_until_ts, fetched_ts)
         VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (server_name) DO UPDATE SET document = excluded.document,
           valid_until_ts = excluded.valid_until_ts, fetched_ts = excluded.fetched_ts
         WHERE excluded.valid_until_ts >= remote_server_key_documents.valid_until_ts",
        args![server, document, valid_until_ts, now_ms()],
    )];
    for key in keys {
        statements.push(db.stmt(
            "INSERT INTO remote_server_keys (server_name, key_id, public_key, valid_until_ts, expired_ts, fetched_ts)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (server_name, key_id) DO UPDATE SET
               valid_until_ts = MAX(remote_server_keys.valid_until_ts, excluded.valid_until_ts),
               expired_ts = excluded.expired_ts, fetched_ts = excluded.fetched_ts",
            args![server, &key.key_id, &key.public_key, key.valid_until_ts, key.expired_ts.map(|t| t as i64), now_ms()],
        ));
    }
    db.batch(statements).await.map(|_| ())
}

/// The stored key document of `server` and its `valid_until_ts`.
pub async fn document(db: &Db, server: &str) -> Result<Option<(String, u64)>, MatrixError> {
    #[derive(Deserialize)]
    struct Row {
        document: String,
        valid_until_ts: i64,
    }
    Ok(db
        .row::<Row>(
            "SELECT document, valid_until_ts FROM remote_server_key_documents WHERE server_name = ?1",
            args![server],
        )
        .await?
        .map(|r| (r.document, r.valid_until_ts as u64)))
}

/// What an inbound `/send` transaction needs to know before its PDUs go to their rooms.
#[derive(Debug, Default)]
pub struct TransactionStart {
    /// The answer to the same transaction id from the same origin, if it came before.
    pub previous: Option<String>,
    /// When our queue to the origin next retries, if it is backing off from it.
    pub retry_ts: Option<u64>,
    /// Per room of the transaction that we know: its version, and the content of its
    /// `m.room.server_acl` if it has one.
    pub rooms: std::collections::HashMap<String, (RoomVersion, Option<Value>)>,
}

/// Everything `TransactionStart` holds, in one D1 round trip (a batch of two reads): the
/// transaction id seen before, the backoff to the origin, and the version and server ACL of
/// each room in `rooms`.
pub async fn transaction_start(
    db: &Db,
    origin: &str,
    txn: &str,
    rooms: &[&str],
) -> Result<TransactionStart, MatrixError> {
    #[derive(Deserialize)]
    struct Seen {
        response: Option<String>,
        retry_ts: Option<i64>,
    }
    #[derive(Deserialize)]
    struct Room {
        room_id: String,
        room_version: String,
        acl: Option<String>,
    }
    let mut statements = vec![db.stmt(
        "SELECT (SELECT response FROM federation_transactions WHERE origin = ?1 AND txn_id = ?2)
                  AS response,
                (SELECT retry_ts FROM destination_backoff WHERE server_name = ?1) AS retry_ts",
        args![origin, txn],
    )];
    if !rooms.is_empty() {
        let list = Value::from(rooms.to_vec()).to_string();
        statements.push(db.stmt(
            "SELECT r.room_id, r.room_version,
                (SELECT json_extract(e.pdu, '$.content') FROM room_state s
                   JOIN events e ON e.event_id = s.event_id
                   WHERE s.room_id = r.room_id AND s.type = 'm.room.server_acl'
                     AND s.state_key = '') AS acl
             FROM rooms r WHERE r.room_id IN (SELECT value FROM json_each(?1))",
            args![&list],
        ));
    }
    let results = db.batch(statements).await?;
    let mut out = TransactionStart::default();
    if let Some(seen) = results.first().and_then(|r| r.rows::<Seen>().ok()?.pop()) {
        out.previous = seen.response;
        out.retry_ts = seen.retry_ts.map(|t| t.max(0) as u64);
    }
    for room in results
        .get(1)
        .map(|r| r.rows::<Room>())
        .transpose()?
        .unwrap_or_default()
    {
        let version = RoomVersion::parse(&room.room_version)
            .ok_or_else(|| MatrixError::internal("stored room version is unsupported"))?;
        let acl = room.acl.and_then(|text| serde_json::from_str(&text).ok());
        out.rooms.insert(room.room_id, (version, acl));
    }
    Ok(out)
}

pub async fn save_transaction(
    db: &Db,
    origin: &str,
    txn: &str,
    response: &str,
) -> Result<(), MatrixError> {
    db.run(
        "INSERT OR IGNORE INTO federation_transactions (origin, txn_id, response, received_ts) VALUES (?1, ?2, ?3, ?4)",
        args![origin, txn, response, now_ms()],
    )
    .await
    .map(|_| ())
}

pub async fn record_rejection(
    db: &Db,
    event_id: &str,
    room_id: &str,
    origin: &str,
    reason: &str,
    pdu: &str,
) -> Result<(), MatrixError> {
    db.run(
        "INSERT OR IGNORE INTO rejected_events (event_id, room_id, origin, reason, pdu, received_ts)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        args![event_id, room_id, origin, reason, pdu, now_ms()],
    )
    .await
    .map(|_| ())
}
