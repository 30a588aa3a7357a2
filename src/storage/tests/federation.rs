//! What this server keeps about other servers and about itself as one:
//! `storage::destinations` (back-off), `storage::discovery` (resolved names),
//! `storage::remote_keys` (their keys, transactions, rejections) and `storage::signing_keys`
//! (our own key).

use std::rc::Rc;
use std::sync::{Arc, Mutex};

use futures::FutureExt;

use super::{run, setup};
use crate::discovery::{Destination, DiscoveryError};
use crate::keys::notary::RemoteKey;
use crate::keys::SigningKey;
use crate::platform::{Fut, QueryResult, SqlExecutor, Statement};
use crate::storage::discovery::{self, CachedResolution};
use crate::storage::{destinations, remote_keys, signing_keys};
use crate::testing::{Sqlite, TestServer};

// --- destinations ---------------------------------------------------------------------------

#[test]
fn a_destination_s_backoff_is_set_replaced_and_cleared() {
    run(async {
        let (_server, db) = setup();
        // The backoff as an inbound transaction from the server reads it.
        let backing_off = |server: &'static str| {
            let db = &db;
            async move {
                remote_keys::transaction_start(db, server, "t", &[])
                    .await
                    .map(|start| start.retry_ts)
            }
        };
        assert_eq!(backing_off("remote.example").await.unwrap(), None);
        destinations::set_backoff(&db, "remote.example", 1, 5_000)
            .await
            .unwrap();
        destinations::set_backoff(&db, "other.example", 1, 7_000)
            .await
            .unwrap();
        assert_eq!(backing_off("remote.example").await.unwrap(), Some(5_000));
        destinations::set_backoff(&db, "remote.example", 2, 9_000)
            .await
            .unwrap();
        assert_eq!(backing_off("remote.example").await.unwrap(), Some(9_000));
        destinations::clear_backoff(&db, "remote.example")
            .await
            .unwrap();
        assert_eq!(backing_off("remote.example").await.unwrap(), None);
        assert_eq!(backing_off("other.example").await.unwrap(), Some(7_000));
    })
}

// --- discovery ------------------------------------------------------------------------------

#[test]
fn a_resolution_is_cached_with_its_outcome_and_replaced() {
    run(async {
        let (_server, db) = setup();
        assert!(discovery::get(&db, "remote.example")
            .await
            .unwrap()
            .is_none());
        let destination = Destination {
            connect_host: "matrix.remote.example".into(),
            connect_port: 8448,
            host_header: "remote.example".into(),
            tls_server_name: "remote.example".into(),
        };
        let found = CachedResolution {
            outcome: Ok(destination.clone()),
            failures: 0,
            expires_ts: 1_000,
        };
        discovery::put(&db, "remote.example", &found).await.unwrap();
        let cached = discovery::get(&db, "remote.example")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(cached.outcome, Ok(destination));
        assert_eq!((cached.failures, cached.expires_ts), (0, 1_000));
        let failed = CachedResolution {
            outcome: Err(DiscoveryError::Dns("timeout".into())),
            failures: 3,
            expires_ts: 2_000,
        };
        discovery::put(&db, "remote.example", &failed)
            .await
            .unwrap();
        let cached = discovery::get(&db, "remote.example")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(cached.outcome, Err(DiscoveryError::Dns("timeout".into())));
        assert_eq!((cached.failures, cached.expires_ts), (3, 2_000));
    })
}

// --- remote keys, transactions and rejections -----------------------------------------------

fn remote_key(key_id: &str, valid_until_ts: u64, expired_ts: Option<u64>) -> RemoteKey {
    RemoteKey {
        key_id: key_id.to_owned(),
        public_key: format!("public {key_id}"),
        valid_until_ts,
        expired_ts,
    }
}

#[test]
fn remote_keys_are_cached_and_never_lose_validity() {
    run(async {
        let (_server, db) = setup();
        let keys = [
            remote_key("ed25519:new", 5_000, None),
            remote_key("ed25519:old", 0, Some(100)),
        ];
        remote_keys::store(&db, "remote.example", &keys, r#"{"doc":1}"#, 5_000)
            .await
            .unwrap();
        assert_eq!(
            remote_keys::public_key(&db, "remote.example", "ed25519:new")
                .await
                .unwrap(),
            Some(("public ed25519:new".to_owned(), 5_000, None))
        );
        assert_eq!(
            remote_keys::public_key(&db, "remote.example", "ed25519:old")
                .await
                .unwrap(),
            Some(("public ed25519:old".to_owned(), 0, Some(100)))
        );
        assert!(remote_keys::public_key(&db, "other.example", "ed25519:new")
            .await
            .unwrap()
            .is_none());
        assert_eq!(
            remote_keys::document(&db, "remote.example").await.unwrap(),
            Some((r#"{"doc":1}"#.to_owned(), 5_000))
        );
        // An older document (a notary's stale copy) changes neither the document nor a key's
        // validity; a newer one replaces the document and extends the key.
        let stale = [remote_key("ed25519:new", 3_000, None)];
        remote_keys::store(&db, "remote.example", &stale, r#"{"doc":0}"#, 3_000)
            .await
            .unwrap();
        assert_eq!(
            remote_keys::document(&db, "remote.example").await.unwrap(),
            Some((r#"{"doc":1}"#.to_owned(), 5_000))
        );
        let key = remote_keys::public_key(&db, "remote.example", "ed25519:new")
            .await
            .unwrap();
        assert_eq!(key.map(|k| k.1), Some(5_000));
        let fresh = [remote_key("ed25519:new", 9_000, None)];
        remote_keys::store(&db, "remote.example", &fresh, r#"{"doc":2}"#, 9_000)
            .await
            .unwrap();
        assert_eq!(
            remote_keys::document(&db, "remote.example").await.unwrap(),
            Some((r#"{"doc":2}"#.to_owned(), 9_000))
        );
        let key = remote_keys::public_key(&db, "remote.example", "ed25519:new")
            .await
            .unwrap();
        assert_eq!(key.map(|k| k.1), Some(9_000));
    })
}

#[test]
fn a_transaction_s_start_reads_its_rooms_acls_and_the_origin_s_backoff_at_once() {
    run(async {
        let (_server, db) = setup();
        let mut open = super::Room::create(&db, "open", super::ALICE, None).await;
        let mut guarded = super::Room::create(&db, "guarded", super::ALICE, None).await;
        guarded
            .state(
                &db,
                super::ALICE,
                "m.room.server_acl",
                serde_json::json!({"allow": ["*"], "deny": ["evil.example"]}),
            )
            .await;
        open.message(&db, super::ALICE, "hello").await;
        destinations::set_backoff(&db, "remote.example", 3, 1_234)
            .await
            .unwrap();
        let rooms = [open.id.as_str(), guarded.id.as_str(), "!unknown:test.local"];
        let start = remote_keys::transaction_start(&db, "remote.example", "t9", &rooms)
            .await
            .unwrap();
        assert_eq!(start.previous, None);
        assert_eq!(start.retry_ts, Some(1_234));
        assert_eq!(start.rooms.len(), 2, "the unknown room is not listed");
        let (version, acl) = &start.rooms[open.id.as_str()];
        assert_eq!(*version, crate::rooms::RoomVersion::V11);
        assert_eq!(*acl, None);
        let (_, acl) = &start.rooms[guarded.id.as_str()];
        assert_eq!(acl.as_ref().unwrap()["deny"][0], "evil.example");
        // Another origin: no backoff; no rooms asked, only the first read runs.
        let other = remote_keys::transaction_start(&db, "other.example", "t9", &[])
            .await
            .unwrap();
        assert_eq!((other.previous, other.retry_ts), (None, None));
        assert!(other.rooms.is_empty());
    })
}

#[test]
fn a_federation_transaction_keeps_its_first_response() {
    run(async {
        let (server, db) = setup();
        let start = |origin: &'static str| {
            let db = &db;
            async move {
                remote_keys::transaction_start(db, origin, "t1", &[])
                    .await
                    .unwrap()
                    .previous
            }
        };
        assert!(start("remote.example").await.is_none());
        remote_keys::save_transaction(&db, "remote.example", "t1", r#"{"pdus":{}}"#)
            .await
            .unwrap();
        remote_keys::save_transaction(&db, "remote.example", "t1", "second")
            .await
            .unwrap();
        assert_eq!(
            start("remote.example").await.as_deref(),
            Some(r#"{"pdus":{}}"#)
        );
        assert!(start("other.example").await.is_none());
        remote_keys::record_rejection(
            &db,
            "$bad",
            "!r:remote.example",
            "remote.example",
            "auth",
            "{}",
        )
        .await
        .unwrap();
        remote_keys::record_rejection(
            &db,
            "$bad",
            "!r:remote.example",
            "remote.example",
            "again",
            "{}",
        )
        .await
        .unwrap();
        let rows = server
            .rows("SELECT event_id, reason FROM rejected_events")
            .await;
        assert_eq!(
            rows,
            [serde_json::json!({ "event_id": "$bad", "reason": "auth" })]
        );
    })
}

// --- our signing key ------------------------------------------------------------------------
//
// `server_keys` caches the key per isolate (a thread-local); each test runs on its own thread.
// To see what a later isolate reads from D1, a test runs each "isolate" on a thread of its own,
// all of them on one shared database.

/// One SQLite shared by several test servers on several threads, as isolates share D1.
struct SharedSql(Arc<Mutex<Sqlite>>);

impl SqlExecutor for SharedSql {
    fn query(&self, statement: Statement) -> Fut<'_, Result<QueryResult, String>> {
        let sqlite = self.0.lock().unwrap();
        let result = sqlite
            .query(statement)
            .now_or_never()
            .expect("SQLite answers at once");
        Box::pin(async move { result })
    }

    fn batch(&self, statements: Vec<Statement>) -> Fut<'_, Result<Vec<QueryResult>, String>> {
        let sqlite = self.0.lock().unwrap();
        let result = sqlite
            .batch(statements)
            .now_or_never()
            .expect("SQLite answers at once");
        Box::pin(async move { result })
    }
}

/// What one isolate's first `server_keys` saw: the current key's id and public key, and the
/// old keys' ids with when they stopped being used.
#[derive(Debug, PartialEq)]
struct Seen {
    current: (String, String),
    old: Vec<(String, String, u64)>,
}

/// Calls `server_keys` twice in a new isolate on `sql`, with `SIGNING_KEY` set to `secret` if
/// given, and checks that both calls agree.
fn isolate(sql: &Arc<Mutex<Sqlite>>, secret: Option<&str>) -> Seen {
    let sql = sql.clone();
    let secret = secret.map(str::to_owned);
    std::thread::spawn(move || {
        run(async move {
            let server = TestServer::new();
            if let Some(secret) = &secret {
                server.set_var("SIGNING_KEY", secret);
            }
            let mut platform = server.platform.clone();
            platform.sql = Rc::new(SharedSql(sql));
            let keys = signing_keys::server_keys(&platform).await.unwrap();
            let again = signing_keys::server_keys(&platform).await.unwrap();
            assert_eq!(again.current.key_id(), keys.current.key_id());
            Seen {
                current: (keys.current.key_id(), keys.current.public_key_base64()),
                old: keys
                    .old
                    .iter()
                    .map(|k| (k.key_id.clone(), k.public_key_base64.clone(), k.expired_ts))
                    .collect(),
            }
        })
    })
    .join()
    .expect("the isolate's thread")
}

const SECRET: &str = "ed25519 a_bcde YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA0";

#[test]
fn the_signing_key_is_generated_once_and_every_isolate_reads_the_same_one() {
    let sql = Arc::new(Mutex::new(Sqlite::migrated()));
    let first = isolate(&sql, None);
    assert!(first.current.0.starts_with("ed25519:"));
    assert!(first.old.is_empty());
    let second = isolate(&sql, None);
    assert_eq!(second, first);
    let generated = sql
        .lock()
        .unwrap()
        .query(Statement {
            sql: "SELECT key_id, seed IS NOT NULL AS has_seed FROM server_signing_keys".into(),
            args: Vec::new(),
        })
        .now_or_never()
        .unwrap()
        .unwrap()
        .rows;
    assert_eq!(
        generated,
        [serde_json::json!({ "key_id": first.current.0, "has_seed": 1 })]
    );
}

#[test]
fn the_signing_key_secret_is_used_and_the_previous_key_published_as_old() {
    let sql = Arc::new(Mutex::new(Sqlite::migrated()));
    let generated = isolate(&sql, None);
    let secret = SigningKey::parse_key_file(SECRET).unwrap();
    let with_secret = isolate(&sql, Some(SECRET));
    assert_eq!(
        with_secret.current,
        (secret.key_id(), secret.public_key_base64())
    );
    assert_eq!(with_secret.current.0, "ed25519:a_bcde");
    assert_eq!(with_secret.old.len(), 1);
    let (old_id, old_public, expired_ts) = &with_secret.old[0];
    assert_eq!(
        (old_id, old_public),
        (&generated.current.0, &generated.current.1)
    );
    assert!(*expired_ts > 0);
    // The same secret again: nothing else retires.
    assert_eq!(isolate(&sql, Some(SECRET)), with_secret);
    // Without the secret, the generated key comes back and the secret's is old.
    let back = isolate(&sql, None);
    assert_eq!(back.current, generated.current);
    let old: Vec<&str> = back.old.iter().map(|k| k.0.as_str()).collect();
    assert_eq!(old, [secret.key_id().as_str()]);
}

#[test]
fn a_malformed_signing_key_secret_is_an_error() {
    run(async {
        let server = TestServer::new();
        server.set_var("SIGNING_KEY", "not a key");
        let error = signing_keys::server_keys(&server.platform)
            .await
            .err()
            .unwrap();
        assert!(error.message.contains("SIGNING_KEY"), "{error:?}");
    })
}
