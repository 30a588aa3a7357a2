//! Other servers' signing keys: fetched from their key server, checked against its own
//! signature, cached in D1 until `valid_until_ts`; and the check of an inbound request's
//! X-Matrix signature with them.

use ruma::signatures::{verify_json, PublicKeyMap, PublicKeySet};
use ruma::ServerName;
use serde_json::Value;
use worker::{Env, Method};

use super::client::request;
use super::xmatrix::{verify, XMatrix};
use crate::http::{ErrorCode, MatrixError};
use crate::signing::to_canonical_object;
use crate::storage::remote_keys::{self, FetchedKey};
use crate::storage::Db;
use crate::time::now_ms;

fn unauthorized(message: impl Into<String>) -> MatrixError {
    MatrixError::new(401, ErrorCode::Unauthorized, message)
}

/// The public key `key_id` of `server`, usable for a signature made at `at_ts`.
pub async fn public_key(
    env: &Env,
    db: &Db,
    server: &ServerName,
    key_id: &str,
    at_ts: u64,
) -> Result<Option<String>, MatrixError> {
    let usable = |(key, valid_until, expired): &(String, u64, Option<u64>)| {
        let good_until = expired.unwrap_or(*valid_until);
        (at_ts <= good_until).then(|| key.clone())
    };
    if let Some(found) = remote_keys::public_key(db, server.as_str(), key_id).await? {
        if let Some(key) = usable(&found) {
            return Ok(Some(key));
        }
    }
    fetch_keys(env, db, server).await?;
    Ok(remote_keys::public_key(db, server.as_str(), key_id)
        .await?
        .and_then(|found| usable(&found)))
}

/// Fetches `GET /_matrix/key/v2/server` from the server itself and stores the keys its own
/// signature vouches for. Failures leave the cache as it was.
async fn fetch_keys(env: &Env, db: &Db, server: &ServerName) -> Result<(), MatrixError> {
    let (status, body) = match request(
        env,
        server,
        Method::Get,
        "/_matrix/key/v2/server",
        None,
        false,
    )
    .await
    {
        Ok(answer) => answer,
        Err(e) => {
            worker::console_warn!("key fetch from {server} failed: {e}");
            return Ok(());
        }
    };
    if status != 200 || body["server_name"].as_str() != Some(server.as_str()) {
        worker::console_warn!(
            "key fetch from {server}: status {status}, wrong or missing server_name"
        );
        return Ok(());
    }
    let Some(verify_keys) = body["verify_keys"].as_object() else {
        return Ok(());
    };
    let mut set = PublicKeySet::new();
    for (id, key) in verify_keys {
        if let Some(Ok(key)) = key["key"].as_str().map(ruma::serde::Base64::parse) {
            set.insert(id.clone(), key);
        }
    }
    let mut map = PublicKeyMap::new();
    map.insert(server.to_string(), set);
    let Ok(object) = to_canonical_object(body.clone()) else {
        return Ok(());
    };
    if let Err(e) = verify_json(&map, &object) {
        worker::console_warn!("key document of {server} does not verify: {e}");
        return Ok(());
    }
    let valid_until = body["valid_until_ts"].as_u64().unwrap_or(0);
    let mut keys: Vec<FetchedKey<'_>> = verify_keys
        .iter()
        .filter_map(|(id, key)| {
            Some(FetchedKey {
                key_id: id,
                public_key: key["key"].as_str()?,
                valid_until_ts: valid_until,
                expired_ts: None,
            })
        })
        .collect();
    if let Some(old) = body["old_verify_keys"].as_object() {
        keys.extend(old.iter().filter_map(|(id, key)| {
            Some(FetchedKey {
                key_id: id,
                public_key: key["key"].as_str()?,
                valid_until_ts: 0,
                expired_ts: key["expired_ts"].as_u64(),
            })
        }));
    }
    remote_keys::store(db, server.as_str(), &keys).await
}

/// Authenticates an inbound federation request; returns the origin server.
pub async fn authenticate(
    env: &Env,
    db: &Db,
    us: &ServerName,
    authorization: Option<&str>,
    method: &str,
    uri: &str,
    content: Option<&Value>,
) -> Result<ruma::OwnedServerName, MatrixError> {
    let header = authorization.ok_or_else(|| unauthorized("Missing X-Matrix authorization"))?;
    let header = XMatrix::parse(header).map_err(|e| unauthorized(e.0))?;
    let key = public_key(env, db, &header.origin, &header.key_id, now_ms())
        .await?
        .ok_or_else(|| {
            unauthorized(format!(
                "No usable key {} for {}",
                header.key_id, header.origin
            ))
        })?;
    verify(&header, us, method, uri, content, &key).map_err(|e| {
        worker::console_warn!("refused request from {}: {e}", header.origin);
        unauthorized(e.0)
    })?;
    Ok(header.origin)
}

/// Checks a PDU from another server: the signatures of every server that must have signed it,
/// with their keys valid at `at_ts`, and its content hash. Returns the form to accept (redacted
/// when only the hash failed), or why it is refused.
pub async fn verify_pdu(
    env: &Env,
    db: &Db,
    object: ruma::CanonicalJsonObject,
    version: crate::rooms::RoomVersion,
    at_ts: u64,
) -> Result<ruma::CanonicalJsonObject, String> {
    let mut key_map = PublicKeyMap::new();
    for (server, key_ids) in crate::rooms::verify::required_keys(&object, version)? {
        let mut set = PublicKeySet::new();
        for key_id in key_ids {
            let key = public_key(env, db, &server, &key_id, at_ts)
                .await
                .map_err(|e| e.message)?;
            if let Some(key) = key.and_then(|k| ruma::serde::Base64::parse(k).ok()) {
                set.insert(key_id, key);
            }
        }
        key_map.insert(server.to_string(), set);
    }
    crate::rooms::verify::verified_form(object, version, &key_map)
}
