//! Access tokens, refresh tokens, device ids and session ids: random, and stored only as hashes.

use sha2::{Digest, Sha256};

/// `n` random bytes from the platform's CSPRNG (WebCrypto in workerd).
pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; n];
    getrandom::fill(&mut bytes).expect("the platform has a random source");
    bytes
}

/// A random string over `alphabet`, uniform because 256 is a multiple of none of ours that
/// matters here: rejection sampling keeps it exact anyway.
pub(crate) fn random_string(alphabet: &[u8], len: usize) -> String {
    let limit = 256 - 256 % alphabet.len();
    let mut out = String::with_capacity(len);
    while out.len() < len {
        for b in random_bytes(len * 2) {
            if (b as usize) < limit && out.len() < len {
                out.push(alphabet[b as usize % alphabet.len()] as char);
            }
        }
    }
    out
}

pub(crate) const TOKEN_ALPHABET: &[u8] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// An access token: a recognisable prefix (helps secret scanners) and 190 bits of randomness.
pub fn new_access_token() -> String {
    format!("mea_{}", random_string(TOKEN_ALPHABET, 32))
}

pub fn new_refresh_token() -> String {
    format!("mer_{}", random_string(TOKEN_ALPHABET, 32))
}

/// Device ids are shown to users when they manage sessions: short and upper case, like others'.
pub fn new_device_id() -> String {
    random_string(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ", 10)
}

/// Opaque ids for UIA sessions, nonces and the like.
pub fn new_opaque_id() -> String {
    random_string(TOKEN_ALPHABET, 24)
}

/// What the database keeps of a token: its SHA-256, hex. Tokens carry enough entropy that a
/// plain hash cannot be reversed, and a lookup by hash stays one indexed read.
pub fn token_hash(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_distinct_and_well_formed() {
        let a = new_access_token();
        assert!(a.starts_with("mea_") && a.len() == 36);
        assert_ne!(a, new_access_token());
        let device = new_device_id();
        assert!(device.len() == 10 && device.bytes().all(|b| b.is_ascii_uppercase()));
    }

    #[test]
    fn token_hash_is_sha256_hex() {
        assert_eq!(
            token_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
