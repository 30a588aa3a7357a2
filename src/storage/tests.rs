//! `storage/`'s SQL against SQLite with every migration applied (docs/design.md, "Testing"):
//! each test writes through the storage functions and reads back through them, so a query that
//! is wrong for SQLite (and so for D1) fails here. Rooms are written the way the room object
//! writes them: events built and authorised by the real `RoomEngine`, persisted with the same
//! `RoomWrite` batch.
//!
//! One submodule per area; the helpers shared by all of them are here.

mod accounts;
mod directory;
mod e2ee;
mod federation;
mod media;
mod rooms;
mod streams;

use std::future::Future;

use ruma::{server_name, OwnedEventId, OwnedRoomId, UserId};
use serde_json::{json, Value};

use super::accounts::Session;
use super::rooms::{self as stored, NewRoom};
use super::Db;
use crate::http::MatrixError;
use crate::keys::SigningKey;
use crate::rooms::builder::EventTemplate;
use crate::rooms::engine::{LocalServer, RoomEngine};
use crate::rooms::object::{event_write, history_visibility as visibility, room_write};
use crate::rooms::RoomVersion;
use crate::testing::TestServer;

const ALICE: &str = "@alice:test.local";
const BOB: &str = "@bob:test.local";
const CAROL: &str = "@carol:test.local";
/// A user of another server, joined to our rooms as a federated member would be.
const DAVE: &str = "@dave:remote.example";

/// Runs a test's async body to completion (every port of the test platform answers at once).
fn run<T>(test: impl Future<Output = T>) -> T {
    futures::executor::block_on(test)
}

/// A fresh server (SQLite with the migrations applied) and a database handle on it.
fn setup() -> (TestServer, Db) {
    let server = TestServer::new();
    let db = Db::new(&server.platform);
    (server, db)
}

/// The hash stored for a user's first access token (tests never hash: any text will do).
fn token_of(user_id: &str) -> String {
    format!("access:{user_id}")
}

/// Registers a local user with password hash `hash`, one device `DEV` named `phone`, and the
/// access token `token_of(user_id)`.
async fn user(db: &Db, user_id: &str) {
    let token = token_of(user_id);
    let session = Session {
        user_id,
        device_id: "DEV",
        device_display_name: Some("phone"),
        access_token_hash: &token,
        refresh_token_hash: None,
        expires_ts: None,
    };
    super::accounts::register(db, user_id, Some("hash"), false, Some(&session))
        .await
        .expect("registration");
}

/// Another login of a user: device `device_id` with access token `access:<device_id>`.
async fn login(db: &Db, user_id: &str, device_id: &str) {
    let token = format!("access:{device_id}");
    let session = Session {
        user_id,
        device_id,
        device_display_name: None,
        access_token_hash: &token,
        refresh_token_hash: None,
        expires_ts: None,
    };
    super::accounts::start_session(db, &session)
        .await
        .expect("login");
}

fn signing_key() -> SigningKey {
    SigningKey::parse_key_file("ed25519 a_test YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA0")
        .expect("a valid key")
}

/// A room of `test.local` in the making: the real engine, and every accepted event persisted
/// the way `rooms::object` persists it (`event_write` and `room_write` below mirror its own).
struct Room {
    id: OwnedRoomId,
    engine: RoomEngine,
    key: SigningKey,
    /// The next event's `origin_server_ts`: 1001, 1002, ... in the order events are sent.
    clock: u64,
}

impl Room {
    /// A public room (`!<local>:test.local`, version 11, shared history) created by `creator`:
    /// five state events in one write with the `rooms` row and the alias, as `createRoom` does.
    async fn create(db: &Db, local: &str, creator: &str, alias: Option<&str>) -> Room {
        Self::try_create(db, local, creator, alias)
            .await
            .expect("the room is stored")
    }

    async fn try_create(
        db: &Db,
        local: &str,
        creator: &str,
        alias: Option<&str>,
    ) -> Result<Room, MatrixError> {
        let id = OwnedRoomId::try_from(format!("!{local}:test.local")).expect("a room id");
        let mut room = Room {
            id: id.clone(),
            engine: RoomEngine::new(RoomVersion::V11, Some(id)),
            key: signing_key(),
            clock: 1_000,
        };
        let sender = UserId::parse(creator).expect("a user id");
        let templates = [
            EventTemplate::state("m.room.create", "", json!({ "room_version": "11" })),
            EventTemplate::state("m.room.member", creator, json!({ "membership": "join" })),
            EventTemplate::state(
                "m.room.power_levels",
                "",
                json!({ "users": { creator: 100 }, "invite": 0, "redact": 50, "state_default": 50 }),
            ),
            EventTemplate::state("m.room.join_rules", "", json!({ "join_rule": "public" })),
            EventTemplate::state(
                "m.room.history_visibility",
                "",
                json!({ "history_visibility": "shared" }),
            ),
        ];
        let mut accepted = Vec::new();
        let mut visibilities = Vec::new();
        for template in templates {
            visibilities.push(visibility(&room.engine));
            room.clock += 1;
            let server = LocalServer {
                name: server_name!("test.local"),
                key: &room.key,
            };
            let event = room
                .engine
                .create_local(&sender, template, room.clock, &server)
                .expect("the creation events are authorised");
            accepted.push(event);
        }
        let events = accepted
            .iter()
            .zip(&visibilities)
            .map(|(a, v)| event_write(a, &room.id, v, None))
            .collect();
        let mut write = room_write(&accepted, events);
        write.new_room = Some(NewRoom {
            version: RoomVersion::V11,
            creator,
            alias,
            publish: false,
        });
        stored::persist(db, write).await?;
        Ok(room)
    }

    /// Room "one" of local users alice (creator), bob (joined) and carol (invited), and of
    /// remote dave (joined).
    async fn shared(db: &Db) -> Room {
        for local in [ALICE, BOB, CAROL] {
            user(db, local).await;
        }
        let mut room = Room::create(db, "one", ALICE, None).await;
        room.join(db, BOB).await;
        room.join(db, DAVE).await;
        room.member(db, ALICE, CAROL, "invite").await;
        room
    }

    /// Sends one event at the tip as `RoomObject::send` does: prepared, persisted, committed.
    async fn send(&mut self, db: &Db, sender: &str, template: EventTemplate) -> OwnedEventId {
        self.try_send(db, sender, template, None)
            .await
            .expect("the event is stored")
    }

    /// `send` with a client transaction `(device, txn id)`; the engine is left as it was when
    /// the write fails.
    async fn try_send(
        &mut self,
        db: &Db,
        sender: &str,
        template: EventTemplate,
        transaction: Option<(&str, &str)>,
    ) -> Result<OwnedEventId, MatrixError> {
        self.clock += 1;
        let user = UserId::parse(sender).expect("a user id");
        let server = LocalServer {
            name: server_name!("test.local"),
            key: &self.key,
        };
        let pdu = self
            .engine
            .prepare_local(&user, template, self.clock, &server)
            .expect("the event is authorised");
        let accepted = self.engine.accept_local(pdu);
        let visibility = visibility(&self.engine);
        let transaction = transaction.map(|(device, txn)| (sender, device, txn));
        let event = event_write(&accepted, &self.id, &visibility, transaction);
        stored::persist(db, room_write(std::slice::from_ref(&accepted), vec![event])).await?;
        self.engine.commit(&accepted);
        Ok(accepted.pdu.event_id().to_owned())
    }

    async fn member(
        &mut self,
        db: &Db,
        sender: &str,
        target: &str,
        membership: &str,
    ) -> OwnedEventId {
        let content = json!({ "membership": membership });
        self.send(
            db,
            sender,
            EventTemplate::state("m.room.member", target, content),
        )
        .await
    }

    async fn join(&mut self, db: &Db, user: &str) -> OwnedEventId {
        self.member(db, user, user, "join").await
    }

    async fn message(&mut self, db: &Db, sender: &str, body: &str) -> OwnedEventId {
        let content = json!({ "msgtype": "m.text", "body": body });
        self.send(
            db,
            sender,
            EventTemplate::message("m.room.message", content),
        )
        .await
    }

    async fn state(&mut self, db: &Db, sender: &str, kind: &str, content: Value) -> OwnedEventId {
        self.send(db, sender, EventTemplate::state(kind, "", content))
            .await
    }
}

/// The event ids of rows, in their order.
fn ids(rows: &[super::events::EventRow]) -> Vec<&str> {
    rows.iter().map(|r| r.event_id.as_str()).collect()
}

/// One column of the first row of a query run straight on the database.
async fn scalar(server: &TestServer, sql: &str) -> Value {
    let rows = server.rows(sql).await;
    let row = rows.first().unwrap_or_else(|| panic!("no row for {sql}"));
    row.as_object()
        .and_then(|o| o.values().next())
        .cloned()
        .unwrap_or(Value::Null)
}

/// Reads started together share one D1 batch; writes go alone; each caller gets its own rows.
#[test]
fn reads_started_together_share_one_round_trip() {
    use crate::platform::{Fut, QueryResult, SqlExecutor, Statement};
    use std::cell::RefCell;
    use std::rc::Rc;

    /// The test server's SQLite, recording how the statements arrive.
    struct Recording {
        inner: Rc<dyn SqlExecutor>,
        calls: RefCell<Vec<usize>>,
    }
    impl SqlExecutor for Recording {
        fn query(&self, statement: Statement) -> Fut<'_, Result<QueryResult, String>> {
            self.calls.borrow_mut().push(1);
            self.inner.query(statement)
        }
        fn batch(&self, statements: Vec<Statement>) -> Fut<'_, Result<Vec<QueryResult>, String>> {
            self.calls.borrow_mut().push(statements.len());
            self.inner.batch(statements)
        }
    }
    run(async {
        let server = TestServer::new();
        let recording = Rc::new(Recording {
            inner: server.platform.sql.clone(),
            calls: RefCell::default(),
        });
        let mut platform = server.platform.clone();
        platform.sql = recording.clone();
        let db = Db::new(&platform);
        user(&db, ALICE).await;
        user(&db, BOB).await;
        recording.calls.borrow_mut().clear();
        let (a, b, c) = futures::join!(
            super::accounts::credentials(&db, ALICE),
            super::accounts::credentials(&db, BOB),
            super::accounts::user_exists(&db, "@nobody:test.local"),
        );
        assert_eq!(*recording.calls.borrow(), [3], "one batch of three reads");
        assert!(a.unwrap().is_some() && b.unwrap().is_some() && !c.unwrap());
        // A read alone is a plain query; a write never shares a batch.
        recording.calls.borrow_mut().clear();
        let (write, read) = futures::join!(
            super::accounts::set_password(&db, ALICE, "new"),
            super::accounts::credentials(&db, ALICE),
        );
        write.unwrap();
        assert!(read.unwrap().is_some());
        assert!(recording.calls.borrow().iter().all(|&n| n == 1));
    })
}

/// A read is told by its words: event rows' columns (`replaces_state`, `redacted_by`) do not
/// make a read a write, while any write keyword as a word keeps a statement alone.
#[test]
fn a_read_of_event_rows_may_share_a_batch_and_writes_never_do() {
    use super::plainly_a_read;
    assert!(plainly_a_read(&format!(
        "SELECT {} FROM events e LEFT JOIN events r ON r.event_id = e.redacted_by",
        super::events::COLUMNS
    )));
    assert!(plainly_a_read(
        "WITH x AS (SELECT 1 AS n) SELECT replaces_state FROM x"
    ));
    for write in [
        "INSERT INTO t VALUES (1)",
        "WITH x AS (SELECT 1) INSERT INTO t SELECT * FROM x",
        "WITH x AS (SELECT 1) DELETE FROM t",
        "SELECT 1; UPDATE t SET a = 1",
        "SELECT replace(a, 'x', 'y') FROM t",
        "WITH x AS (SELECT 1) INSERT OR REPLACE INTO t SELECT * FROM x",
        "with x as (select 1) update t set a = 1 returning a",
    ] {
        assert!(!plainly_a_read(write), "{write}");
    }
}
