//! Other servers' signing keys: fetched from their key server (or, when that fails, through
//! the notaries in `TRUSTED_KEY_SERVERS`), checked against the origin's own signature, cached
//! in D1 until `valid_until_ts` and remembered per isolate (`keys::remote_cache`); the check of
//! an inbound request's X-Matrix signature with them; and this server as a notary
//! (`/_matrix/key/v2/query`), serving its own and others' keys.

use ruma::signatures::{PublicKeyMap, PublicKeySet};
use ruma::ServerName;
use serde_json::{json, Value};

use super::outgoing::request;
use super::xmatrix::{verify, XMatrix};
use crate::api::request::Ctx;
use crate::http::{ErrorCode, JsonResponse, MatrixError};
use crate::keys::notary::{self, VerifiedKeys};
use crate::keys::remote_cache::{usable_at, KeyCache, KeyRow};
use crate::keys::server_keys::server_keys_document;
use crate::platform::{Method, Platform};
use crate::signing::sign_json;
use crate::storage::remote_keys;
use crate::storage::{signing_keys, Db};
use crate::time::now_ms;

fn unauthorized(message: impl Into<String>) -> MatrixError {
    MatrixError::new(401, ErrorCode::Unauthorized, message)
}

/// The public key `key_id` of `server`, usable for a signature made at `at_ts`.
pub async fn public_key(
    platform: &Platform,
    db: &Db,
    server: &ServerName,
    key_id: &str,
    at_ts: u64,
) -> Result<Option<String>, MatrixError> {
    key_of(platform, db, server, key_id, at_ts, true).await
}

thread_local! {
    // Keys this isolate has read from D1 (src/keys/remote_cache.rs says what may be served
    // from it): the X-Matrix check of each request and the signature check of each PDU then
    // cost no D1 query for a server we have heard from.
    static REMOTE_KEYS: std::cell::RefCell<KeyCache> = std::cell::RefCell::new(KeyCache::default());
}

/// The key as stored in D1, remembered in this isolate's cache.
async fn stored_key(
    db: &Db,
    server: &ServerName,
    key_id: &str,
) -> Result<Option<KeyRow>, MatrixError> {
    let found = remote_keys::public_key(db, server.as_str(), key_id).await?;
    if let Some(row) = &found {
        REMOTE_KEYS.with(|c| {
            c.borrow_mut()
                .remember(server.as_str(), key_id, row, now_ms())
        });
    }
    Ok(found)
}

/// `public_key`, asking notaries when the server itself fails us only if `via_notaries` (not
/// when looking up a notary's own key: a notary is trusted for others, not for itself).
async fn key_of(
    platform: &Platform,
    db: &Db,
    server: &ServerName,
    key_id: &str,
    at_ts: u64,
    via_notaries: bool,
) -> Result<Option<String>, MatrixError> {
    let usable = |row: &KeyRow| usable_at(row, at_ts).then(|| row.0.clone());
    let remembered =
        REMOTE_KEYS.with(|c| c.borrow().usable(server.as_str(), key_id, at_ts, now_ms()));
    if remembered.is_some() {
        return Ok(remembered);
    }
    if let Some(key) = stored_key(db, server, key_id)
        .await?
        .and_then(|r| usable(&r))
    {
        return Ok(Some(key));
    }
    fetch_keys(platform, db, server, Some(key_id), via_notaries).await?;
    Ok(stored_key(db, server, key_id)
        .await?
        .and_then(|r| usable(&r)))
}

/// Fetches `GET /_matrix/key/v2/server` from the server itself, or failing that (and with
/// `via_notaries`) from each trusted notary in turn, and stores the keys and the document the
/// origin's signature vouches for. Failures leave the cache as it was.
async fn fetch_keys(
    platform: &Platform,
    db: &Db,
    server: &ServerName,
    key_id: Option<&str>,
    via_notaries: bool,
) -> Result<(), MatrixError> {
    let mut found = match direct(platform, server).await {
        Ok(found) => Some(found),
        Err(why) => {
            crate::log_warn!("key fetch from {server} failed: {why}");
            None
        }
    };
    if found.is_none() && via_notaries {
        let config = platform.config()?;
        for by in &config.trusted_key_servers {
            if by == server || *by == config.server_name {
                continue;
            }
            match through_notary(platform, db, server, key_id, by).await {
                Ok(relayed) => {
                    found = Some(relayed);
                    break;
                }
                Err(why) => crate::log_warn!("keys of {server} through {by}: {why}"),
            }
        }
    }
    let Some((document, verified)) = found else {
        return Ok(());
    };
    remote_keys::store(
        db,
        server.as_str(),
        &verified.keys,
        &document.to_string(),
        verified.valid_until_ts,
    )
    .await
}

/// The server's own key document, checked against its own signature.
async fn direct(platform: &Platform, server: &ServerName) -> Result<(Value, VerifiedKeys), String> {
    let (status, body) = request(
        platform,
        server,
        Method::Get,
        "/_matrix/key/v2/server",
        None,
        false,
    )
    .await
    .map_err(|e| e.to_string())?;
    if status != 200 {
        return Err(format!("status {status}"));
    }
    let verified = notary::verify_self_signed(&body, server)?;
    Ok((body, verified))
}

/// The server's key document as the notary `by` relays it: the origin's own signature and the
/// notary's, checked with the notary's key as the notary itself serves it.
async fn through_notary(
    platform: &Platform,
    db: &Db,
    server: &ServerName,
    key_id: Option<&str>,
    by: &ServerName,
) -> Result<(Value, VerifiedKeys), String> {
    let body = notary::notary_request(server, key_id);
    let (status, answer) = request(
        platform,
        by,
        Method::Post,
        "/_matrix/key/v2/query",
        Some(&body),
        false,
    )
    .await
    .map_err(|e| e.to_string())?;
    if status != 200 {
        return Err(format!("status {status}"));
    }
    let mut last = format!("no key document of {server}");
    for doc in answer["server_keys"].as_array().into_iter().flatten() {
        if doc["server_name"].as_str() != Some(server.as_str()) {
            continue;
        }
        let mut keys = PublicKeySet::new();
        let signed_with = doc["signatures"][by.as_str()]
            .as_object()
            .cloned()
            .unwrap_or_default();
        for id in signed_with.keys() {
            let key = Box::pin(key_of(platform, db, by, id, now_ms(), false))
                .await
                .map_err(|e| e.message)?;
            if let Some(key) = key.and_then(|k| ruma::serde::Base64::parse(k).ok()) {
                keys.insert(id.clone(), key);
            }
        }
        match notary::verify_notarised(doc, server, by, keys) {
            Ok(verified) => return Ok((doc.clone(), verified)),
            Err(why) => last = why,
        }
    }
    Err(last)
}

// -- this server as a notary --------------------------------------------------------------------

/// How many servers one notary query may make us fetch from (each fetch is a subrequest, and
/// possibly a few more through notaries): the others are answered from the cache.
const MAX_FETCHES_PER_QUERY: usize = 10;

/// This server's own key document (`GET /_matrix/key/v2/server`).
pub(crate) async fn own_document(
    platform: &Platform,
    server_name: &ServerName,
) -> Result<Value, MatrixError> {
    let keys = signing_keys::server_keys(platform).await?;
    server_keys_document(server_name.as_str(), &keys.current, &keys.old, now_ms())
        .map_err(|e| MatrixError::internal(e.to_string()))
}

/// `server`'s key document valid until at least `minimum` when we have or can get one (else
/// the newest we ever had: the spec asks a notary to keep serving the last answer when the
/// origin is gone), with our signature added.
async fn notarised(
    ctx: &Ctx,
    server: &ServerName,
    minimum: u64,
    may_fetch: bool,
) -> Result<Option<Value>, MatrixError> {
    let us = &ctx.config.server_name;
    if server == us {
        return own_document(&ctx.platform, us).await.map(Some);
    }
    let db = ctx.db();
    let mut cached = remote_keys::document(&db, server.as_str()).await?;
    if may_fetch
        && cached
            .as_ref()
            .is_none_or(|(_, until)| !notary::fresh_enough(*until, minimum))
    {
        fetch_keys(&ctx.platform, &db, server, None, true).await?;
        cached = remote_keys::document(&db, server.as_str())
            .await?
            .or(cached);
    }
    let Some(document) = cached.and_then(|(text, _)| serde_json::from_str::<Value>(&text).ok())
    else {
        return Ok(None);
    };
    let keys = signing_keys::server_keys(&ctx.platform).await?;
    sign_json(us.as_str(), keys.current.key_pair(), document)
        .map(Some)
        .map_err(|e| MatrixError::internal(e.to_string()))
}

/// `GET /_matrix/key/v2/query/{serverName}`: every key of one server we have or can get.
pub(crate) async fn query_server(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    let server = ServerName::parse(ctx.param("serverName"))
        .map_err(|_| MatrixError::invalid_param("not a server name"))?;
    let minimum = ctx
        .query_u64("minimum_valid_until_ts")?
        .unwrap_or_else(now_ms);
    let found = notarised(ctx, &server, minimum, true).await?;
    Ok(JsonResponse::ok(
        json!({ "server_keys": found.into_iter().collect::<Vec<_>>() }),
    ))
}

/// `POST /_matrix/key/v2/query`: the keys of several servers (all keys of each: the spec lets a
/// notary return more than the key ids asked for).
pub(crate) async fn query_servers(ctx: &Ctx) -> Result<JsonResponse, MatrixError> {
    let body = ctx.json_value()?;
    let criteria = notary::query_criteria(&body, now_ms()).map_err(MatrixError::bad_json)?;
    let mut server_keys = Vec::new();
    for (i, (server, minimum)) in criteria.iter().enumerate() {
        if let Some(doc) = notarised(ctx, server, *minimum, i < MAX_FETCHES_PER_QUERY).await? {
            server_keys.push(doc);
        }
    }
    Ok(JsonResponse::ok(json!({ "server_keys": server_keys })))
}

/// Authenticates an inbound federation request; returns the origin server.
pub async fn authenticate(
    platform: &Platform,
    db: &Db,
    us: &ServerName,
    authorization: Option<&str>,
    method: &str,
    uri: &str,
    content: Option<&Value>,
) -> Result<ruma::OwnedServerName, MatrixError> {
    let header = authorization.ok_or_else(|| unauthorized("Missing X-Matrix authorization"))?;
    let header = XMatrix::parse(header).map_err(|e| unauthorized(e.0))?;
    let key = public_key(platform, db, &header.origin, &header.key_id, now_ms())
        .await?
        .ok_or_else(|| {
            unauthorized(format!(
                "No usable key {} for {}",
                header.key_id, header.origin
            ))
        })?;
    verify(&header, us, method, uri, content, &key).map_err(|e| {
        crate::log_warn!("refused request from {}: {e}", header.origin);
        unauthorized(e.0)
    })?;
    Ok(header.origin)
}

/// Keys already looked up in one run of verifications (a join's state and auth chain, a fetched
/// auth chain), by server, key id and the time they must be valid at: hundreds of events signed
/// by a handful of keys then cost a handful of lookups, not one D1 query per event.
#[derive(Default)]
pub struct KeyMemo(std::collections::HashMap<(String, String, u64), Option<String>>);

/// Checks a PDU from another server: the signatures of every server that must have signed it,
/// with their keys valid at `at_ts`, and its content hash. Returns the form to accept (redacted
/// when only the hash failed), or why it is refused.
pub async fn verify_pdu(
    platform: &Platform,
    db: &Db,
    object: ruma::CanonicalJsonObject,
    version: crate::rooms::RoomVersion,
    at_ts: u64,
) -> Result<ruma::CanonicalJsonObject, String> {
    verify_pdu_with(
        platform,
        db,
        object,
        version,
        at_ts,
        &mut KeyMemo::default(),
    )
    .await
}

/// `verify_pdu`, reusing (and filling) `memo`.
pub async fn verify_pdu_with(
    platform: &Platform,
    db: &Db,
    object: ruma::CanonicalJsonObject,
    version: crate::rooms::RoomVersion,
    at_ts: u64,
    memo: &mut KeyMemo,
) -> Result<ruma::CanonicalJsonObject, String> {
    let mut key_map = PublicKeyMap::new();
    for (server, key_ids) in crate::rooms::verify::required_keys(&object, version)? {
        let mut set = PublicKeySet::new();
        for key_id in key_ids {
            let slot = (server.to_string(), key_id.clone(), at_ts);
            let key = match memo.0.get(&slot) {
                Some(key) => key.clone(),
                None => {
                    let key = public_key(platform, db, &server, &key_id, at_ts)
                        .await
                        .map_err(|e| e.message)?;
                    memo.0.insert(slot, key.clone());
                    key
                }
            };
            if let Some(key) = key.and_then(|k| ruma::serde::Base64::parse(k).ok()) {
                set.insert(key_id, key);
            }
        }
        key_map.insert(server.to_string(), set);
    }
    crate::rooms::verify::verified_form(object, version, &key_map)
}
