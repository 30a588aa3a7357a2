//! Which signing key this server uses, persisted so that it never changes by accident.
//!
//! With the `SIGNING_KEY` secret set, that key is used. Without it, a key is generated on first
//! use and stored; a partial unique index lets only one generated key ever exist, so two
//! isolates racing on first use agree on the winner. Every key used before and no longer in use
//! is published as an old verify key with the time it stopped being used.

use std::cell::RefCell;
use std::rc::Rc;

use serde::Deserialize;

use super::Db;
use crate::args;
use crate::http::MatrixError;
use crate::keys::server_keys::OldVerifyKey;
use crate::keys::signing_key::decode_seed;
use crate::keys::SigningKey;
use crate::platform::Platform;
use crate::time::now_ms;

pub struct ServerKeys {
    pub current: SigningKey,
    pub old: Vec<OldVerifyKey>,
}

thread_local! {
    // One isolate serves many requests; the key changes only with a deployment (new secret),
    // which also starts new isolates, so loading it once per isolate is enough.
    static CACHE: RefCell<Option<Rc<ServerKeys>>> = const { RefCell::new(None) };
}

pub async fn server_keys(platform: &Platform) -> Result<Rc<ServerKeys>, MatrixError> {
    if let Some(keys) = CACHE.with(|cache| cache.borrow().clone()) {
        return Ok(keys);
    }
    let db = Db::new(platform);
    let current = match platform.secret("SIGNING_KEY") {
        Some(text) => {
            let key = SigningKey::parse_key_file(&text).map_err(|e| {
                MatrixError::internal(format!("the SIGNING_KEY secret is malformed: {e}"))
            })?;
            record_key(&db, &key, None).await?;
            key
        }
        None => generated_key(&db).await?,
    };
    let keys = Rc::new(ServerKeys {
        old: old_keys(&db, &current).await?,
        current,
    });
    CACHE.with(|cache| *cache.borrow_mut() = Some(keys.clone()));
    Ok(keys)
}

/// Marks `key` as the one in use (inserting it if new) and retires every other key, atomically.
async fn record_key(db: &Db, key: &SigningKey, seed: Option<String>) -> Result<(), MatrixError> {
    let now = now_ms();
    let key_id = key.key_id();
    let public_key = key.public_key_base64();
    let insert = db.stmt(
        "INSERT INTO server_signing_keys (key_id, public_key, seed, generated, created_ts, expired_ts)
         VALUES (?1, ?2, ?3, ?4, ?5, NULL)
         ON CONFLICT (key_id) DO UPDATE SET expired_ts = NULL, public_key = excluded.public_key",
        args![&key_id, &public_key, seed.as_deref(), seed.is_some(), now],
    );
    let retire = db.stmt(
        "UPDATE server_signing_keys SET expired_ts = ?2 WHERE key_id != ?1 AND expired_ts IS NULL",
        args![&key_id, now],
    );
    db.batch(vec![insert, retire]).await?;
    Ok(())
}

#[derive(Deserialize)]
struct GeneratedRow {
    key_id: String,
    seed: String,
}

async fn stored_generated_key(db: &Db) -> Result<Option<SigningKey>, MatrixError> {
    let row: Option<GeneratedRow> = db
        .row(
            "SELECT key_id, seed FROM server_signing_keys WHERE generated = 1",
            args![],
        )
        .await?;
    let Some(row) = row else { return Ok(None) };
    let corrupt = |what: &str| {
        MatrixError::internal(format!(
            "stored signing key {} is corrupt: {what}",
            row.key_id
        ))
    };
    let version = row
        .key_id
        .strip_prefix("ed25519:")
        .ok_or_else(|| corrupt("key id"))?;
    let seed = decode_seed(&row.seed).map_err(|_| corrupt("seed"))?;
    SigningKey::from_seed(version, seed)
        .map(Some)
        .map_err(|_| corrupt("version"))
}

async fn generated_key(db: &Db) -> Result<SigningKey, MatrixError> {
    if let Some(key) = stored_generated_key(db).await? {
        // Re-activate it in case a SIGNING_KEY secret was used meanwhile and then removed.
        record_key(db, &key, Some(key.seed_base64())).await?;
        return Ok(key);
    }
    let candidate = SigningKey::generate();
    // The unique index on `generated` makes a concurrent second insert fail; DO NOTHING turns
    // that into a no-op and the read below returns whichever key won.
    db.run(
        "INSERT INTO server_signing_keys (key_id, public_key, seed, generated, created_ts, expired_ts)
         VALUES (?1, ?2, ?3, 1, ?4, NULL) ON CONFLICT DO NOTHING",
        args![
            &candidate.key_id(),
            &candidate.public_key_base64(),
            &candidate.seed_base64(),
            now_ms()
        ],
    )
    .await?;
    let key = stored_generated_key(db)
        .await?
        .ok_or_else(|| MatrixError::internal("the generated signing key was not stored"))?;
    record_key(db, &key, Some(key.seed_base64())).await?;
    Ok(key)
}

#[derive(Deserialize)]
struct OldRow {
    key_id: String,
    public_key: String,
    expired_ts: f64,
}

async fn old_keys(db: &Db, current: &SigningKey) -> Result<Vec<OldVerifyKey>, MatrixError> {
    let rows: Vec<OldRow> = db
        .rows(
            "SELECT key_id, public_key, expired_ts FROM server_signing_keys
             WHERE key_id != ?1 AND expired_ts IS NOT NULL ORDER BY expired_ts",
            args![&current.key_id()],
        )
        .await?;
    Ok(rows
        .into_iter()
        .map(|row| OldVerifyKey {
            key_id: row.key_id,
            public_key_base64: row.public_key,
            expired_ts: row.expired_ts as u64,
        })
        .collect())
}
