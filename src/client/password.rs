//! Password hashing and checking with the platform's PBKDF2 (see `accounts::password` for why).

use crate::accounts::password::{StoredPassword, HASH_BYTES, SALT_BYTES};
use crate::accounts::tokens::random_bytes;
use crate::http::MatrixError;
use crate::platform::Platform;
use crate::storage::{accounts, Db};

/// Longest password accepted: PBKDF2 cost grows with it, and nobody types more.
pub const MAX_PASSWORD_BYTES: usize = 512;

pub(crate) async fn hash_password(
    platform: &Platform,
    password: &str,
    iterations: u32,
) -> Result<String, MatrixError> {
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(MatrixError::invalid_param(format!(
            "passwords are limited to {MAX_PASSWORD_BYTES} bytes"
        )));
    }
    let salt = random_bytes(SALT_BYTES);
    let hash = platform
        .crypto
        .pbkdf2_sha256(password, &salt, iterations, HASH_BYTES)
        .await?;
    Ok(StoredPassword {
        iterations,
        salt,
        hash,
    }
    .to_text())
}

/// Whether `password` is the user's. False for unknown, deactivated or password-less users.
/// A password stored with fewer iterations than `iterations` is re-hashed on success.
pub(crate) async fn verify_password(
    platform: &Platform,
    db: &Db,
    user_id: &str,
    password: &str,
    iterations: u32,
) -> Result<bool, MatrixError> {
    if password.len() > MAX_PASSWORD_BYTES {
        return Ok(false);
    }
    let Some(creds) = accounts::credentials(db, user_id).await? else {
        return Ok(false);
    };
    let Some(stored) = creds
        .password_hash
        .as_deref()
        .filter(|_| creds.deactivated == 0)
        .and_then(StoredPassword::parse)
    else {
        return Ok(false);
    };
    let derived = platform
        .crypto
        .pbkdf2_sha256(password, &stored.salt, stored.iterations, stored.hash.len())
        .await?;
    if !stored.matches(&derived) {
        return Ok(false);
    }
    if stored.iterations < iterations {
        let rehashed = hash_password(platform, password, iterations).await?;
        accounts::set_password(db, user_id, &rehashed).await?;
    }
    Ok(true)
}
