//! Ports: everything the server's logic needs from the platform it runs on, as traits and plain
//! values. `runtime/` implements them with the Workers runtime (D1, Durable Objects, `fetch`,
//! WebCrypto); native tests implement them with SQLite and in-memory fakes. Nothing here names
//! a `worker` type, and nothing outside `runtime/` may either (docs/design.md, "Layers").

pub mod blob;
pub mod http;
pub mod log;
pub mod sql;

use std::rc::Rc;

use futures::future::LocalBoxFuture;
use ruma::ServerName;
use serde_json::Value;

use crate::config::{Config, ConfigError};
use crate::http::MatrixError;
use crate::rooms::command::RoomCommand;
use crate::sync::token::StreamPosition;

pub use self::blob::{BlobStore, Body, Opaque, Slice};
pub use self::http::{Http, HttpRequest, HttpResponse, Method};
pub use self::sql::{QueryResult, SqlExecutor, SqlValue, Statement};

/// The future every port method returns: not `Send`, as nothing in a Worker isolate is.
pub type Fut<'a, T> = LocalBoxFuture<'a, T>;

/// Settings and secrets of the deployment (`[vars]` and Worker secrets).
pub trait Settings {
    fn var(&self, name: &str) -> Option<String>;
    fn secret(&self, name: &str) -> Option<String>;
    /// The `[vars]` parsed. The Worker parses them once per isolate (`runtime/ports.rs`); this
    /// default parses them at every call, so that tests may change a setting between requests.
    fn config(&self) -> Result<Config, ConfigError> {
        Config::from_lookup(|name| self.var(name))
    }
}

/// The room objects: one writer per room (docs/design.md, invariant 1). A command goes to the
/// room's object and its answer comes back; an error keeps its status, code and extra fields.
pub trait RoomObjects {
    fn command<'a>(
        &'a self,
        room_id: &'a str,
        command: &'a RoomCommand,
    ) -> Fut<'a, Result<Value, MatrixError>>;
}

/// Where `/sync` waits. Failures are the port's to log: a sync that is not woken still returns at
/// its timeout, and the write that asked for a wake-up has already succeeded.
pub trait Wakeups {
    fn notify(&self, users: Vec<String>) -> Fut<'_, ()>;
    /// Parks until one of the user's streams moves past `seen`, or the timeout.
    fn wait<'a>(
        &'a self,
        user_id: &'a str,
        seen: &'a StreamPosition,
        timeout_ms: u64,
    ) -> Fut<'a, ()>;
}

/// The outbound federation queues, one per destination server.
pub trait FederationQueue {
    /// Queues PDUs and EDUs for a server. Failures are logged by the port.
    fn enqueue<'a>(
        &'a self,
        server: &'a ServerName,
        pdus: Vec<Value>,
        edus: Vec<Value>,
    ) -> Fut<'a, ()>;
    /// Asks a queue that waits out a backoff to try now.
    fn wake<'a>(&'a self, server: &'a ServerName) -> Fut<'a, ()>;
}

/// The application services' transaction queues (src/runtime/appservice.rs): writers poke
/// them through `Wakeups::notify`; this asks one to retry a backed-off transaction at once.
pub trait AppServiceQueues {
    /// The service answered (a ping): its queue should not wait out its backoff.
    fn retry_now<'a>(&'a self, id: &'a str) -> Fut<'a, ()>;
}

/// The users' push queues (src/runtime/pusher.rs): a user with a pusher was just notified, and
/// their queue reads what is new from D1.
pub trait PushQueues {
    fn poke(&self, users: Vec<String>) -> Fut<'_, ()>;
}

/// Key derivation and MACs: WebCrypto in the Worker (much faster than wasm), a Rust
/// implementation in native tests.
pub trait Crypto {
    fn pbkdf2_sha256<'a>(
        &'a self,
        password: &'a str,
        salt: &'a [u8],
        iterations: u32,
        bytes: usize,
    ) -> Fut<'a, Result<Vec<u8>, MatrixError>>;
    fn hmac_sha1<'a>(
        &'a self,
        key: &'a [u8],
        message: &'a [u8],
    ) -> Fut<'a, Result<Vec<u8>, MatrixError>>;
}

/// A room object's own durable storage: it holds a remote join under way and nothing else (D1
/// is the truth), plus the object's alarm.
pub trait ObjectStorage {
    fn get(&self, key: &str) -> Fut<'_, Result<Option<String>, String>>;
    fn put(&self, key: &str, value: String) -> Fut<'_, Result<(), String>>;
    fn delete(&self, keys: Vec<String>) -> Fut<'_, Result<(), String>>;
    /// Sets the alarm `in_ms` from now (0: at once).
    fn set_alarm(&self, in_ms: u64) -> Fut<'_, Result<(), String>>;
    fn delete_alarm(&self) -> Fut<'_, Result<(), String>>;
}

/// The platform as one value, cheap to clone, handed to every handler and to the room writer.
#[derive(Clone)]
pub struct Platform {
    pub sql: Rc<dyn SqlExecutor>,
    pub settings: Rc<dyn Settings>,
    pub rooms: Rc<dyn RoomObjects>,
    pub wakeups: Rc<dyn Wakeups>,
    pub queue: Rc<dyn FederationQueue>,
    pub appservices: Rc<dyn AppServiceQueues>,
    pub pushers: Rc<dyn PushQueues>,
    pub http: Rc<dyn Http>,
    pub crypto: Rc<dyn Crypto>,
    /// Media bytes (R2 in the Worker).
    pub blobs: Rc<dyn BlobStore>,
}

impl Platform {
    /// Reads the deployment settings. A bad setting is the operator's fault: a 500 that names it.
    pub fn config(&self) -> Result<Config, MatrixError> {
        self.settings
            .config()
            .map_err(|e| MatrixError::internal(format!("server misconfigured: {e}")))
    }

    /// A secret's value, `None` when unset or empty.
    pub fn secret(&self, name: &str) -> Option<String> {
        self.settings
            .secret(name)
            .filter(|value| !value.trim().is_empty())
    }
}
