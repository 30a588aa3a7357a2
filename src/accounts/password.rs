//! How a password is stored: PBKDF2-HMAC-SHA256 with a random salt, as
//! `pbkdf2-sha256$<iterations>$<salt, base64>$<hash, base64>`.
//!
//! Why PBKDF2: it is the one slow KDF the Workers runtime implements natively (WebCrypto), so it
//! costs a fraction of the CPU that a wasm implementation of scrypt or Argon2 would for the same
//! work. The cost is the `PASSWORD_ITERATIONS` setting: the default fits a login into the free
//! plan's 10 ms of CPU; workerd caps PBKDF2 at 100,000, the setting for a paid plan. The count is
//! stored with each hash, and a login re-hashes a password stored with fewer iterations than
//! configured. The runtime computes the derivation (`runtime::crypto`); this module only
//! formats, parses and compares.

use ruma::serde::base64::{Base64, Standard};

/// The default: about 7 ms of CPU per derivation where 100,000 took about 22 ms (README).
pub const DEFAULT_ITERATIONS: u32 = 30_000;
/// workerd refuses PBKDF2 above this count.
pub const MAX_ITERATIONS: u32 = 100_000;
/// Below this a password hash is not worth the name.
pub const MIN_ITERATIONS: u32 = 10_000;
pub const SALT_BYTES: usize = 16;
pub const HASH_BYTES: usize = 32;

#[derive(Debug, PartialEq, Eq)]
pub struct StoredPassword {
    pub iterations: u32,
    pub salt: Vec<u8>,
    pub hash: Vec<u8>,
}

impl StoredPassword {
    pub fn parse(text: &str) -> Option<Self> {
        let mut parts = text.split('$');
        if parts.next()? != "pbkdf2-sha256" {
            return None;
        }
        let iterations = parts.next()?.parse().ok()?;
        let salt = Base64::<Standard>::parse(parts.next()?).ok()?.into_inner();
        let hash = Base64::<Standard>::parse(parts.next()?).ok()?.into_inner();
        if parts.next().is_some() || iterations == 0 {
            return None;
        }
        Some(Self {
            iterations,
            salt,
            hash,
        })
    }

    pub fn to_text(&self) -> String {
        format!(
            "pbkdf2-sha256${}${}${}",
            self.iterations,
            Base64::<Standard>::new(self.salt.clone()).encode(),
            Base64::<Standard>::new(self.hash.clone()).encode()
        )
    }

    /// Compares a freshly derived hash without an early exit, so timing says nothing about
    /// how many leading bytes matched.
    pub fn matches(&self, derived: &[u8]) -> bool {
        derived.len() == self.hash.len()
            && derived
                .iter()
                .zip(&self.hash)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_passwords_round_trip_and_compare() {
        let stored = StoredPassword {
            iterations: DEFAULT_ITERATIONS,
            salt: vec![1; SALT_BYTES],
            hash: vec![7; HASH_BYTES],
        };
        let parsed = StoredPassword::parse(&stored.to_text()).unwrap();
        assert_eq!(parsed, stored);
        assert!(parsed.matches(&[7; HASH_BYTES]));
        assert!(!parsed.matches(&[8; HASH_BYTES]));
        assert!(!parsed.matches(&[7; 3]));
        assert!(StoredPassword::parse("bcrypt$x").is_none());
        assert!(StoredPassword::parse("pbkdf2-sha256$0$AA$AA").is_none());
    }
}
