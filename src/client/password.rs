//! Password hashing and checking with the runtime's PBKDF2 (see `accounts::password` for why).

use crate::accounts::password::{StoredPassword, HASH_BYTES, SALT_BYTES};
use crate::accounts::tokens::random_bytes;
use crate::http::MatrixError;
use crate::runtime::crypto::pbkdf2_sha256;
use crate::storage::{accounts, Db};

/// Longest password accepted: PBKDF2 cost grows with it, and nobody types more.
pub const MAX_PASSWORD_BYTES: usize = 512;

pub(crate) async fn hash_password(password: &str, iterations: u32) -> Result<String, MatrixError> {
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(MatrixError::invalid_param(format!(
            "passwords are limited to {MAX_PASSWORD_BYTES} bytes"
        )));
    }
    let salt = random_bytes(SALT_BYTES);
    let hash = pbkdf2_sha256(password, &salt, iterations, HASH_BYTES).await?;
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
    let derived =
        pbkdf2_sha256(password, &stored.salt, stored.iterations, stored.hash.len()).await?;
    if !stored.matches(&derived) {
        return Ok(false);
    }
    if stored.iterations < iterations {
        accounts::set_password(db, user_id, &hash_password(password, iterations).await?).await?;
    }
    Ok(true)
}
