//! A server in one test: the real handlers, the real room objects and SQLite, and fakes that
//! record what would have left the process (wake-ups, queued federation traffic, requests to
//! other servers) for the test to inspect.

use std::cell::{OnceCell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use ruma::ServerName;
use serde_json::{json, Value};

use super::Sqlite;
use crate::api::{IncomingRequest, Reply};
use crate::http::route::percent_decode;
use crate::http::MatrixError;
use crate::platform::{
    BlobStore, Body, Crypto, FederationQueue, Fut, Http, HttpRequest, HttpResponse, ObjectStorage,
    Opaque, Platform, RoomObjects, Settings, Slice, Wakeups,
};
use crate::rooms::command::RoomCommand;
use crate::rooms::object::RoomObject;
use crate::sync::token::StreamPosition;

type Responder = Box<dyn FnMut(&HttpRequest) -> Result<HttpResponse, String>>;

/// What the fakes saw, in order.
#[derive(Default)]
pub(crate) struct Recorded {
    /// Users whose syncs were woken, one entry per user per wake-up.
    pub notified: RefCell<Vec<String>>,
    /// `(server, pdus, edus)` handed to the outbound federation queue.
    pub queued: RefCell<Vec<(String, Vec<Value>, Vec<Value>)>>,
    /// Requests to the network, `fetch` and socket alike.
    pub requests: RefCell<Vec<HttpRequest>>,
    /// Users whose syncs parked (the fake answers at once, as a timeout).
    pub waits: RefCell<Vec<String>>,
    /// The object store's contents: key -> (content type, bytes).
    pub blobs: RefCell<HashMap<String, (String, Vec<u8>)>>,
    /// Users whose push queues were poked.
    pub push_pokes: RefCell<Vec<String>>,
    /// The kind (`command` tag) of every request to a room object, in order.
    pub room_commands: RefCell<Vec<String>>,
}

struct Fakes {
    vars: RefCell<HashMap<String, String>>,
    recorded: Rc<Recorded>,
    responder: RefCell<Responder>,
    platform: OnceCell<Platform>,
    rooms: RefCell<HashMap<String, Rc<RoomObject>>>,
}

pub(crate) struct TestServer {
    pub platform: Platform,
    pub recorded: Rc<Recorded>,
    fakes: Rc<Fakes>,
    sqlite: Rc<Sqlite>,
}

/// The server name every test server has.
pub(crate) const SERVER_NAME: &str = "test.local";

impl TestServer {
    pub fn new() -> Self {
        let vars = [
            ("SERVER_NAME", SERVER_NAME),
            ("REGISTRATION", "open"),
            ("PASSWORD_ITERATIONS", "10000"),
            ("AUTH_REQUESTS_PER_MINUTE", "10000"),
            // Every test request comes from one address; tests of the limits set their own.
            ("RATE_LIMITS", "off"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let recorded = Rc::new(Recorded::default());
        let fakes = Rc::new(Fakes {
            vars: RefCell::new(vars),
            recorded: recorded.clone(),
            responder: RefCell::new(Box::new(|request| {
                Err(format!("no network in tests ({})", request.url))
            })),
            platform: OnceCell::new(),
            rooms: RefCell::default(),
        });
        let sqlite = Rc::new(Sqlite::migrated());
        let platform = Platform {
            sql: sqlite.clone(),
            settings: fakes.clone(),
            rooms: fakes.clone(),
            wakeups: fakes.clone(),
            queue: fakes.clone(),
            appservices: fakes.clone(),
            pushers: fakes.clone(),
            http: fakes.clone(),
            crypto: fakes.clone(),
            blobs: fakes.clone(),
        };
        // The room objects need the platform they are part of (a cycle a test can afford).
        let _ = fakes.platform.set(platform.clone());
        Self {
            platform,
            recorded,
            fakes,
            sqlite,
        }
    }

    /// D1 round trips so far (a query or a batch each), for tests of a path's cost.
    pub fn d1_round_trips(&self) -> u64 {
        self.sqlite.round_trips()
    }

    /// Sets a `[vars]` setting or a secret (both read by name).
    pub fn set_var(&self, name: &str, value: &str) {
        self.fakes
            .vars
            .borrow_mut()
            .insert(name.to_owned(), value.to_owned());
    }

    /// Answers the server's outbound requests (both `fetch` and sockets) with `responder`.
    pub fn respond_with(
        &self,
        responder: impl FnMut(&HttpRequest) -> Result<HttpResponse, String> + 'static,
    ) {
        *self.fakes.responder.borrow_mut() = Box::new(responder);
    }

    /// Sends a request as a client would (`path` may carry a query) and returns the status and
    /// the JSON body.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let authorization = token.map(|t| format!("Bearer {t}"));
        let body = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        self.request_raw(method, path, authorization.as_deref(), body)
            .await
    }

    /// `request` with the `Authorization` header as given (an `X-Matrix` one, say) and the body
    /// as raw bytes (which need not be JSON).
    pub async fn request_raw(
        &self,
        method: &str,
        path: &str,
        authorization: Option<&str>,
        body: Vec<u8>,
    ) -> (u16, Value) {
        let (status, _, body) = self
            .request_with_headers(method, path, authorization, &[], body)
            .await;
        let body = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&body).unwrap_or_else(|_| json!({ "bytes": body.len() }))
        };
        (status, body)
    }

    /// A request with headers (names in lower case); the answer's status, headers and body
    /// bytes, for media. A JSON answer comes back as its text, with `content-type` set.
    pub async fn request_with_headers(
        &self,
        method: &str,
        path: &str,
        authorization: Option<&str>,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> (u16, Vec<(String, String)>, Vec<u8>) {
        let (route, query) = path.split_once('?').unwrap_or((path, ""));
        let query = query
            .split('&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                let decode = |s: &str| percent_decode(&s.replace('+', " ")).unwrap_or_default();
                (decode(k), decode(v))
            })
            .collect();
        let request = IncomingRequest {
            method: method.to_owned(),
            path: route.to_owned(),
            uri: path.to_owned(),
            query,
            body,
            body_stream: None,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            authorization: authorization.map(str::to_owned),
            // As the runtime reads it (`CF-Connecting-IP`); one address unless a test says.
            ip: Some(
                headers
                    .iter()
                    .find(|(k, _)| *k == "cf-connecting-ip")
                    .map_or("127.0.0.1", |(_, v)| *v)
                    .to_owned(),
            ),
        };
        // The same answer the runtime turns into a response.
        match crate::api::respond(self.platform.clone(), request).await.0 {
            Reply::Json(json) => (
                json.status,
                vec![("content-type".into(), "application/json".into())],
                json.body.to_string().into_bytes(),
            ),
            Reply::Media(media) => (media.status, media.headers, flatten(media.body)),
            Reply::Preflight => (204, Vec::new(), Vec::new()),
        }
    }

    /// Registers `localpart` through the user-interactive flow; returns its user id and token.
    pub async fn register(&self, localpart: &str) -> (String, String) {
        let path = "/_matrix/client/v3/register";
        let body = json!({ "username": localpart, "password": "correct horse battery" });
        let (status, challenge) = self.request("POST", path, None, Some(body.clone())).await;
        assert_eq!(status, 401, "{challenge}");
        let mut body = body;
        body["auth"] = json!({ "type": "m.login.dummy", "session": challenge["session"] });
        let (status, answer) = self.request("POST", path, None, Some(body)).await;
        assert_eq!(status, 200, "{answer}");
        (
            answer["user_id"].as_str().unwrap().to_owned(),
            answer["access_token"].as_str().unwrap().to_owned(),
        )
    }

    /// Rows of a query run straight on the database, for assertions.
    pub async fn rows(&self, sql: &str) -> Vec<Value> {
        let statement = crate::platform::Statement {
            sql: sql.to_owned(),
            args: Vec::new(),
        };
        self.platform.sql.query(statement).await.unwrap().rows
    }
}

impl Settings for Fakes {
    fn var(&self, name: &str) -> Option<String> {
        self.vars.borrow().get(name).cloned()
    }

    fn secret(&self, name: &str) -> Option<String> {
        self.var(name)
    }
}

impl RoomObjects for Fakes {
    fn command<'a>(
        &'a self,
        room_id: &'a str,
        command: &'a RoomCommand,
    ) -> Fut<'a, Result<Value, MatrixError>> {
        Box::pin(async move {
            let object = self
                .rooms
                .borrow_mut()
                .entry(room_id.to_owned())
                .or_insert_with(|| {
                    let platform = self.platform.get().expect("the platform is set").clone();
                    Rc::new(RoomObject::new(platform, Rc::new(MemoryStorage::default())))
                })
                .clone();
            // The command crosses the boundary as JSON, as it does to a Durable Object.
            let text = command.to_body().expect("a command serializes");
            let head = text.split('\n').next().unwrap_or_default();
            let kind = serde_json::from_str::<Value>(head).expect("a command is JSON")["command"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            self.recorded.room_commands.borrow_mut().push(kind);
            let command = RoomCommand::from_body(text).expect("and deserializes");
            match object.handle(command).await {
                Ok(answer) => Ok(answer),
                Err(error) => {
                    let status = error.status;
                    Err(MatrixError::from_response(
                        status,
                        &error.into_response().body,
                    ))
                }
            }
        })
    }
}

impl Wakeups for Fakes {
    fn notify(&self, users: Vec<String>) -> Fut<'_, ()> {
        self.recorded.notified.borrow_mut().extend(users);
        Box::pin(async {})
    }

    fn wait<'a>(&'a self, user_id: &'a str, _: &'a StreamPosition, _: u64) -> Fut<'a, ()> {
        self.recorded.waits.borrow_mut().push(user_id.to_owned());
        Box::pin(async {})
    }
}

impl FederationQueue for Fakes {
    fn enqueue<'a>(
        &'a self,
        server: &'a ServerName,
        pdus: Vec<Value>,
        edus: Vec<Value>,
    ) -> Fut<'a, ()> {
        self.recorded
            .queued
            .borrow_mut()
            .push((server.to_string(), pdus, edus));
        Box::pin(async {})
    }

    fn wake<'a>(&'a self, _: &'a ServerName) -> Fut<'a, ()> {
        Box::pin(async {})
    }
}

impl crate::platform::AppServiceQueues for Fakes {
    fn retry_now<'a>(&'a self, _: &'a str) -> Fut<'a, ()> {
        Box::pin(async {})
    }
}

impl crate::platform::PushQueues for Fakes {
    fn poke(&self, users: Vec<String>) -> Fut<'_, ()> {
        self.recorded.push_pokes.borrow_mut().extend(users);
        Box::pin(async {})
    }
}

impl Fakes {
    fn answer(&self, request: HttpRequest) -> Result<HttpResponse, String> {
        self.recorded.requests.borrow_mut().push(request.clone());
        (self.responder.borrow_mut())(&request)
    }
}

impl Http for Fakes {
    fn fetch(&self, request: HttpRequest) -> Fut<'_, Result<HttpResponse, String>> {
        let answer = self.answer(request);
        Box::pin(async move { answer })
    }

    fn over_socket<'a>(
        &'a self,
        _: &'a crate::discovery::Destination,
        request: HttpRequest,
    ) -> Fut<'a, Result<HttpResponse, String>> {
        let answer = self.answer(request);
        Box::pin(async move { answer })
    }

    /// No time passes: other futures get one turn.
    fn sleep(&self, _: u64) -> Fut<'_, ()> {
        let mut yielded = false;
        Box::pin(std::future::poll_fn(move |cx| {
            if yielded {
                return std::task::Poll::Ready(());
            }
            yielded = true;
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }))
    }
}

impl Crypto for Fakes {
    fn pbkdf2_sha256<'a>(
        &'a self,
        password: &'a str,
        salt: &'a [u8],
        iterations: u32,
        bytes: usize,
    ) -> Fut<'a, Result<Vec<u8>, MatrixError>> {
        let mut out = vec![0u8; bytes];
        pbkdf2::pbkdf2_hmac::<sha2::Sha256>(password.as_bytes(), salt, iterations, &mut out);
        Box::pin(async move { Ok(out) })
    }

    fn hmac_sha1<'a>(
        &'a self,
        key: &'a [u8],
        message: &'a [u8],
    ) -> Fut<'a, Result<Vec<u8>, MatrixError>> {
        use hmac::{KeyInit, Mac};
        let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(key).expect("any key length");
        mac.update(message);
        let out = mac.finalize().into_bytes().to_vec();
        Box::pin(async move { Ok(out) })
    }
}

/// The bytes of a body the fakes made (streams hold a `Vec<u8>`).
fn flatten(body: Body) -> Vec<u8> {
    let bytes_of = |opaque: Opaque| {
        *opaque
            .take()
            .expect("a stream is read once")
            .downcast::<Vec<u8>>()
            .expect("fake streams hold bytes")
    };
    match body {
        Body::Bytes(bytes) => bytes,
        Body::Stream(inner) => bytes_of(inner),
        Body::Framed { head, inner, tail } => [head, bytes_of(inner), tail].concat(),
    }
}

impl BlobStore for Fakes {
    fn put<'a>(
        &'a self,
        key: &'a str,
        body: Body,
        length: u64,
        content_type: &'a str,
    ) -> Fut<'a, Result<(), String>> {
        let bytes = flatten(body);
        let result = if bytes.len() as u64 == length {
            self.recorded
                .blobs
                .borrow_mut()
                .insert(key.to_owned(), (content_type.to_owned(), bytes));
            Ok(())
        } else {
            Err(format!(
                "{} bytes where {length} were declared",
                bytes.len()
            ))
        };
        Box::pin(async move { result })
    }

    fn get<'a>(
        &'a self,
        key: &'a str,
        slice: Option<Slice>,
    ) -> Fut<'a, Result<Option<Body>, String>> {
        let found = self.recorded.blobs.borrow().get(key).map(|(_, bytes)| {
            let bytes = match slice {
                Some(Slice { offset, length }) => {
                    bytes[offset as usize..(offset + length) as usize].to_vec()
                }
                None => bytes.clone(),
            };
            Body::Stream(Opaque::new(Box::new(bytes)))
        });
        Box::pin(async move { Ok(found) })
    }

    fn read<'a>(&'a self, key: &'a str) -> Fut<'a, Result<Option<Vec<u8>>, String>> {
        let found = self
            .recorded
            .blobs
            .borrow()
            .get(key)
            .map(|(_, b)| b.clone());
        Box::pin(async move { Ok(found) })
    }

    fn delete(&self, keys: Vec<String>) -> Fut<'_, Result<(), String>> {
        let mut blobs = self.recorded.blobs.borrow_mut();
        for key in keys {
            blobs.remove(&key);
        }
        Box::pin(async { Ok(()) })
    }
}

/// A room object's storage in memory.
#[derive(Default)]
struct MemoryStorage {
    values: RefCell<HashMap<String, String>>,
    alarm: RefCell<Option<u64>>,
}

impl ObjectStorage for MemoryStorage {
    fn get(&self, key: &str) -> Fut<'_, Result<Option<String>, String>> {
        let value = self.values.borrow().get(key).cloned();
        Box::pin(async move { Ok(value) })
    }

    fn put(&self, key: &str, value: String) -> Fut<'_, Result<(), String>> {
        self.values.borrow_mut().insert(key.to_owned(), value);
        Box::pin(async { Ok(()) })
    }

    fn delete(&self, keys: Vec<String>) -> Fut<'_, Result<(), String>> {
        let mut values = self.values.borrow_mut();
        for key in keys {
            values.remove(&key);
        }
        Box::pin(async { Ok(()) })
    }

    fn set_alarm(&self, in_ms: u64) -> Fut<'_, Result<(), String>> {
        *self.alarm.borrow_mut() = Some(in_ms);
        Box::pin(async { Ok(()) })
    }

    fn delete_alarm(&self) -> Fut<'_, Result<(), String>> {
        *self.alarm.borrow_mut() = None;
        Box::pin(async { Ok(()) })
    }
}

/// `TestServer::request` as a signed-in client, with a body: the short form for tests that
/// make many calls.
pub(crate) async fn call(
    server: &TestServer,
    method: &str,
    path: &str,
    token: &str,
    body: Value,
) -> (u16, Value) {
    server.request(method, path, Some(token), Some(body)).await
}

/// `TestServer::request` as a signed-in client that expects success: the answer of a 200,
/// anything else fails the test with the method, path and answer.
pub(crate) async fn ok_call(
    server: &TestServer,
    method: &str,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> Value {
    let (status, answer) = server.request(method, path, Some(token), body).await;
    assert_eq!(status, 200, "{method} {path}: {answer}");
    answer
}

/// Creates a room with `body` as `token`'s user, expecting success; returns its id.
pub(crate) async fn create_room(server: &TestServer, token: &str, body: Value) -> String {
    let path = "/_matrix/client/v3/createRoom";
    let created = ok_call(server, "POST", path, token, Some(body)).await;
    created["room_id"].as_str().unwrap().to_owned()
}
