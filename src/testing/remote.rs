//! Another server, for tests of the federation endpoints: its own signing key, the key document
//! and discovery answers a `TestServer` fetches from it, X-Matrix headers for its requests, and
//! PDUs hashed and signed by it.

use std::rc::Rc;

use ruma::{OwnedServerName, ServerName};
use serde_json::{json, Value};

use super::fakes::SERVER_NAME;
use super::TestServer;
use crate::keys::server_keys::server_keys_document;
use crate::keys::SigningKey;
use crate::platform::{HttpRequest, HttpResponse};
use crate::rooms::RoomVersion;
use crate::signing::event::{hash_and_sign, into_json, reference_hash};
use crate::time::now_ms;

/// A remote homeserver. Cheap to clone (the key is shared), so a responder can own one.
#[derive(Clone)]
pub(crate) struct RemoteServer {
    pub name: OwnedServerName,
    key: Rc<SigningKey>,
}

/// A JSON answer to an outbound request.
pub(crate) fn json_response(status: u16, body: &Value) -> HttpResponse {
    HttpResponse {
        status,
        headers: vec![("Content-Type".to_owned(), "application/json".to_owned())],
        body: body.to_string().into_bytes(),
    }
}

/// The path and query of an outbound request's URL (`fetch` URLs are absolute).
pub(crate) fn path_of(request: &HttpRequest) -> &str {
    let url = request.url.as_str();
    match url.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("/", |i| &rest[i..]),
        None => url,
    }
}

/// The JSON body of an outbound request (`Null` when it has none).
pub(crate) fn body_of(request: &HttpRequest) -> Value {
    request
        .body
        .as_deref()
        .and_then(|b| serde_json::from_slice(b).ok())
        .unwrap_or(Value::Null)
}

impl RemoteServer {
    pub fn new(name: &str) -> Self {
        Self {
            name: ServerName::parse(name).expect("a server name"),
            key: Rc::new(SigningKey::generate()),
        }
    }

    /// Its `GET /_matrix/key/v2/server` document, self-signed as ours is.
    pub fn key_document(&self) -> Value {
        server_keys_document(self.name.as_str(), &self.key, &[], now_ms())
            .expect("the document signs")
    }

    /// Whether `request` is addressed to this server (by `fetch` URL; socket requests carry
    /// only a path, and are taken to be).
    pub fn addressed(&self, request: &HttpRequest) -> bool {
        let Some((_, rest)) = request.url.split_once("://") else {
            return true;
        };
        let authority = rest.split('/').next().unwrap_or_default();
        let host = authority.split(':').next().unwrap_or_default();
        host == self.name.as_str()
    }

    /// What every remote answers the same way: its well-known (delegating to port 8448, so no
    /// SRV lookup is needed) and its key document. `None` for any other request.
    pub fn standard_answer(&self, request: &HttpRequest) -> Option<HttpResponse> {
        if !self.addressed(request) {
            return None;
        }
        match path_of(request) {
            "/.well-known/matrix/server" => Some(json_response(
                200,
                &json!({ "m.server": format!("{}:8448", self.name) }),
            )),
            "/_matrix/key/v2/server" => Some(json_response(200, &self.key_document())),
            _ => None,
        }
    }

    /// A responder for `TestServer::respond_with`: the standard answers, then `more` (which
    /// sees every other request), else 404 `M_UNRECOGNIZED`.
    pub fn responder(
        &self,
        mut more: impl FnMut(&HttpRequest) -> Option<HttpResponse> + 'static,
    ) -> impl FnMut(&HttpRequest) -> Result<HttpResponse, String> + 'static {
        let remote = self.clone();
        move |request| {
            Ok(remote
                .standard_answer(request)
                .or_else(|| more(request))
                .unwrap_or_else(|| {
                    json_response(404, &json!({ "errcode": "M_UNRECOGNIZED", "error": "no" }))
                }))
        }
    }

    /// The `Authorization` header of a request from this server to the test server.
    pub fn authorization(&self, method: &str, uri: &str, content: Option<&Value>) -> String {
        let us = ServerName::parse(SERVER_NAME).expect("the test server's name");
        crate::federation::xmatrix::authorization(&self.name, &us, &self.key, method, uri, content)
            .expect("the header signs")
    }

    /// Sends a federation request to `server`, signed by this server.
    pub async fn request(
        &self,
        server: &TestServer,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let header = self.authorization(method, path, body.as_ref());
        let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        server.request_raw(method, path, Some(&header), bytes).await
    }

    /// Hashes and signs `event` as this server; returns its event id (the reference hash) and
    /// the PDU as sent.
    pub fn sign(&self, event: Value, version: RoomVersion) -> (String, Value) {
        sign_with(self.name.as_str(), &self.key, event, version)
    }

    /// `sign`, but with another key under this server's key id: a signature that does not
    /// verify. The event id is the same as `sign`'s (signatures are not hashed).
    pub fn forge(&self, event: Value, version: RoomVersion) -> (String, Value) {
        let forger = SigningKey::from_seed(self.key.version(), [7; 32]).expect("a key");
        sign_with(self.name.as_str(), &forger, event, version)
    }

    /// Joins `user_id` (of this server) to `room_id` through `make_join` and `send_join` (v2);
    /// returns the join's event id.
    pub async fn join(&self, server: &TestServer, room_id: &str, user_id: &str) -> String {
        let path = format!("/_matrix/federation/v1/make_join/{room_id}/{user_id}?ver=12");
        let (status, answer) = self.request(server, "GET", &path, None).await;
        assert_eq!(status, 200, "make_join: {answer}");
        let version = RoomVersion::parse(answer["room_version"].as_str().unwrap()).unwrap();
        let (event_id, event) = self.sign(answer["event"].clone(), version);
        let path = format!("/_matrix/federation/v2/send_join/{room_id}/{event_id}");
        let (status, answer) = self.request(server, "PUT", &path, Some(event)).await;
        assert_eq!(status, 200, "send_join: {answer}");
        event_id
    }

    /// Sends `pdus` in one transaction (`PUT /send/{txn}`); returns the status and answer.
    pub async fn send(&self, server: &TestServer, txn: &str, pdus: Vec<Value>) -> (u16, Value) {
        let path = format!("/_matrix/federation/v1/send/{txn}");
        let body = json!({ "origin": self.name, "origin_server_ts": now_ms(), "pdus": pdus });
        self.request(server, "PUT", &path, Some(body)).await
    }
}

fn sign_with(
    server: &str,
    key: &SigningKey,
    event: Value,
    version: RoomVersion,
) -> (String, Value) {
    let rules = version.rules();
    let signed = hash_and_sign(server, key, event, &rules).expect("the event signs");
    let hash = reference_hash(&signed, &rules).expect("the event hashes");
    (format!("${hash}"), into_json(signed))
}

/// A message event of `sender` in `room_id`, ready for `RemoteServer::sign`.
pub(crate) fn message(
    room_id: &str,
    sender: &str,
    body: &str,
    prev_events: &[&str],
    auth_events: &[&str],
    depth: u64,
) -> Value {
    json!({
        "room_id": room_id,
        "sender": sender,
        "type": "m.room.message",
        "content": { "msgtype": "m.text", "body": body },
        "origin_server_ts": now_ms(),
        "prev_events": prev_events,
        "auth_events": auth_events,
        "depth": depth,
    })
}
