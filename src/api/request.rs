//! One request as the handlers see it: named path parameters, query, body, the platform's
//! ports, and the requester once authenticated. Parsing failures become the spec's errors here,
//! so handlers never see bad input.

use std::cell::Cell;
use std::rc::Rc;

use ruma::{OwnedUserId, UserId};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::accounts::tokens::token_hash;
use crate::config::Config;
use crate::http::route::Params;
use crate::http::{ErrorCode, MatrixError};
use crate::platform::{Body, Opaque, Platform};
use crate::storage::{accounts, Db, Usage};
use crate::time::now_ms;

/// A request as it arrived, in plain values: what the runtime hands over.
#[derive(Clone, Debug, Default)]
pub struct IncomingRequest {
    pub method: String,
    /// The path, still percent-encoded.
    pub path: String,
    /// The path and query exactly as sent: what an X-Matrix signature covers.
    pub uri: String,
    pub query: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The body left unread as a platform stream (uploads only; `body` is then empty), so a
    /// big file goes to the object store without passing through the Worker's memory.
    pub body_stream: Option<Opaque>,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub authorization: Option<String>,
    /// The client's address (`CF-Connecting-IP`), for rate limits.
    pub ip: Option<String>,
}

pub(crate) struct Ctx {
    pub platform: Platform,
    pub config: Config,
    params: Params,
    query: Vec<(String, String)>,
    body: Vec<u8>,
    body_stream: Option<Opaque>,
    headers: Vec<(String, String)>,
    authorization: Option<String>,
    pub ip: Option<String>,
    /// What this request's D1 queries cost so far.
    pub usage: Rc<Cell<Usage>>,
    method: String,
    uri: String,
}

/// An authenticated user and the device the token belongs to.
#[derive(Clone, Debug)]
pub(crate) struct Requester {
    pub user_id: OwnedUserId,
    pub device_id: String,
    pub admin: bool,
    /// The application service whose `as_token` made this request (src/appservice/auth.rs).
    pub appservice: Option<std::rc::Rc<crate::appservice::AppService>>,
}

impl Ctx {
    pub fn new(
        request: IncomingRequest,
        platform: Platform,
        config: Config,
        params: Params,
    ) -> Self {
        Self {
            platform,
            config,
            params,
            query: request.query,
            body: request.body,
            body_stream: request.body_stream,
            headers: request.headers,
            authorization: request.authorization,
            ip: request.ip,
            usage: Rc::default(),
            method: request.method,
            uri: request.uri,
        }
    }

    pub fn db(&self) -> Db {
        Db::counting(&self.platform, self.usage.clone())
    }

    /// The path parameter named `{name}` in the route's pattern (percent-decoded); empty when
    /// the route has none of that name.
    pub fn param(&self, name: &str) -> &str {
        self.params.get(name)
    }

    /// A request header (the name in lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as the object store takes it: the platform's stream when the runtime left it
    /// unread, else the bytes read.
    pub fn raw_body(&self) -> (Body, u64) {
        match self.body_stream.as_ref() {
            Some(stream) => {
                let length = self
                    .header("content-length")
                    .and_then(|l| l.parse().ok())
                    .unwrap_or(0);
                (Body::Stream(stream.clone()), length)
            }
            None => (Body::Bytes(self.body.clone()), self.body.len() as u64),
        }
    }

    pub fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a repeated query parameter (`ver=10&ver=11`).
    pub fn query_all(&self, name: &str) -> Vec<&str> {
        self.query
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// A numeric query parameter; a malformed one is the client's error.
    pub fn query_u64(&self, name: &str) -> Result<Option<u64>, MatrixError> {
        self.query(name)
            .map(|v| {
                v.parse()
                    .map_err(|_| MatrixError::invalid_param(format!("{name} must be a number")))
            })
            .transpose()
    }

    /// The body as a JSON object: `M_NOT_JSON` if unparseable, `M_BAD_JSON` if not an object.
    /// An empty body reads as `{}`: several endpoints allow it. Every request body in the spec is
    /// an object, and serde alone would fill a struct from an array field by field, so
    /// `["token"]` would pass as `{"refresh_token": "token"}`.
    pub fn json_object(&self) -> Result<serde_json::Map<String, Value>, MatrixError> {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Default::default());
        }
        let value = serde_json::from_slice(&self.body)
            .map_err(|e| MatrixError::not_json(format!("the body is not valid JSON: {e}")))?;
        match value {
            Value::Object(map) => Ok(map),
            _ => Err(MatrixError::bad_json("the body must be a JSON object")),
        }
    }

    /// The body object as a `Value`, for handlers that read it loosely or pass it on (UIA).
    pub fn json_value(&self) -> Result<Value, MatrixError> {
        self.json_object().map(Value::Object)
    }

    /// The body as a typed request: `M_BAD_JSON` if it has the wrong shape.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, MatrixError> {
        serde_json::from_value(self.json_value()?).map_err(|e| MatrixError::bad_json(e.to_string()))
    }

    pub(crate) fn access_token(&self) -> Option<&str> {
        if let Some(header) = &self.authorization {
            return header
                .strip_prefix("Bearer ")
                .or_else(|| header.strip_prefix("bearer "))
                .map(str::trim);
        }
        self.query("access_token")
    }

    /// The user and device the access token belongs to.
    pub async fn requester(&self) -> Result<Requester, MatrixError> {
        self.requester_on(&self.db()).await
    }

    /// The same, with the token's row read on `db`: reads queued on one handle in the same poll
    /// pass share a D1 round trip, so a handler can read its own first row alongside.
    pub(crate) async fn requester_on(&self, db: &Db) -> Result<Requester, MatrixError> {
        let token = self.bearer()?;
        let owner = accounts::token_owner(db, &token_hash(token)).await?;
        self.requester_from(token, owner).await
    }

    /// The access token presented, or `M_MISSING_TOKEN`.
    pub(crate) fn bearer(&self) -> Result<&str, MatrixError> {
        self.access_token()
            .ok_or_else(|| MatrixError::new(401, ErrorCode::MissingToken, "Missing access token"))
    }

    /// The requester from the token's row as read now from D1 (`accounts::token_owner`, or the
    /// same columns read inside a handler's first statement, as /sync does): every check of a
    /// token is made here, on a row read by this request, never on a remembered one.
    pub(crate) async fn requester_from(
        &self,
        token: &str,
        owner: Option<accounts::TokenOwner>,
    ) -> Result<Requester, MatrixError> {
        let unknown = || MatrixError::new(401, ErrorCode::UnknownToken, "Unknown access token");
        let Some(owner) = owner else {
            // Not a user's token: perhaps an application service's.
            return crate::appservice::auth::requester(self, token)
                .await?
                .ok_or_else(unknown);
        };
        if owner.deactivated != 0 {
            return Err(unknown());
        }
        if let Some(old) = owner.revokes_refresh.as_deref() {
            accounts::first_use(&self.db(), old).await?;
        }
        if owner.expires_ts.is_some_and(|ts| ts as u64 <= now_ms()) {
            // Expired, not revoked: the client should refresh, keeping its local state.
            return Err(
                MatrixError::new(401, ErrorCode::UnknownToken, "Access token expired")
                    .with("soft_logout", Value::Bool(true)),
            );
        }
        Ok(Requester {
            user_id: UserId::parse(owner.user_id)
                .map_err(|_| MatrixError::internal("a stored user id is invalid"))?,
            device_id: owner.device_id,
            admin: owner.admin != 0,
            appservice: None,
        })
    }

    /// The server that sent this federation request, once its X-Matrix signature checks out.
    pub async fn origin(&self) -> Result<ruma::OwnedServerName, MatrixError> {
        let body = self.json_value()?;
        let content = (!self.body.is_empty()).then_some(&body);
        let origin = crate::federation::key_server::authenticate(
            &self.platform,
            &self.db(),
            &self.config.server_name,
            self.authorization.as_deref(),
            &self.method,
            &self.uri,
            content,
        )
        .await?;
        crate::limits::rate::check_origin(self, origin.as_str()).await?;
        Ok(origin)
    }

    /// Path user ids must name the requester (account data, filters, typing...).
    pub fn own_user_param(&self, name: &str, requester: &Requester) -> Result<(), MatrixError> {
        if self.param(name) != requester.user_id.as_str() {
            return Err(MatrixError::forbidden(
                "You cannot act on behalf of another user",
            ));
        }
        Ok(())
    }
}
