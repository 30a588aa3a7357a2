//! The server's ed25519 signing key, in the key-file format Synapse uses
//! (`ed25519 <version> <unpadded base64 seed>`), so a key can move between Synapse and this
//! server in either direction and be set as the `SIGNING_KEY` Worker secret.

use ruma::serde::{base64::Standard, Base64};
use ruma::signatures::Ed25519KeyPair;

const SEED_LEN: usize = 32;

/// PKCS#8 v1 DER prefix for an Ed25519 private key (RFC 8410); the 32-byte seed follows it.
/// ruma builds key pairs from DER documents only, and a bare seed is what key files hold.
const PKCS8_ED25519_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// A key pair together with its version (the part after `ed25519:` in the key id).
pub struct SigningKey {
    seed: [u8; SEED_LEN],
    pair: Ed25519KeyPair,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SigningKeyError {
    /// The text is not `ed25519 <version> <seed>`.
    Format,
    /// The version is empty or has characters outside `[A-Za-z0-9_]`.
    Version,
    /// The seed is not base64 of exactly 32 bytes.
    Seed,
}

impl std::fmt::Display for SigningKeyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SigningKeyError::Format => "expected 'ed25519 <version> <base64 seed>'",
            SigningKeyError::Version => "the key version must be letters, digits and '_'",
            SigningKeyError::Seed => "the seed must be base64 of 32 bytes",
        })
    }
}

/// Shows the key id and public key only: the seed must never reach a log line.
impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SigningKey({}, {})",
            self.key_id(),
            self.public_key_base64()
        )
    }
}

impl SigningKey {
    pub fn from_seed(version: &str, seed: [u8; SEED_LEN]) -> Result<Self, SigningKeyError> {
        // The spec allows [a-zA-Z0-9_] in key versions; anything else breaks X-Matrix headers.
        if version.is_empty()
            || !version
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return Err(SigningKeyError::Version);
        }
        let mut der = Vec::with_capacity(PKCS8_ED25519_PREFIX.len() + SEED_LEN);
        der.extend_from_slice(&PKCS8_ED25519_PREFIX);
        der.extend_from_slice(&seed);
        let pair = Ed25519KeyPair::from_der(&der, version.to_owned())
            .map_err(|_| SigningKeyError::Seed)?;
        Ok(Self { seed, pair })
    }

    /// Parses a key file. Synapse's files may hold several lines; the first key is the one used.
    pub fn parse_key_file(text: &str) -> Result<Self, SigningKeyError> {
        let line = text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .ok_or(SigningKeyError::Format)?;
        let mut parts = line.split_whitespace();
        let (Some("ed25519"), Some(version), Some(seed), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(SigningKeyError::Format);
        };
        Self::from_seed(version, decode_seed(seed)?)
    }

    /// A fresh key from the platform's CSPRNG. Synapse names generated keys `a_` plus four
    /// random characters; we do the same so the ids look familiar to operators.
    pub fn generate() -> Self {
        let mut seed = [0u8; SEED_LEN];
        let mut name = [0u8; 4];
        getrandom::fill(&mut seed).expect("the platform CSPRNG is available");
        getrandom::fill(&mut name).expect("the platform CSPRNG is available");
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        let suffix: String = name
            .iter()
            .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
            .collect();
        Self::from_seed(&format!("a_{suffix}"), seed).expect("a generated key is well-formed")
    }

    pub fn version(&self) -> &str {
        self.pair.version()
    }

    /// `ed25519:<version>`.
    pub fn key_id(&self) -> String {
        format!("ed25519:{}", self.version())
    }

    pub fn key_pair(&self) -> &Ed25519KeyPair {
        &self.pair
    }

    pub fn public_key_base64(&self) -> String {
        Base64::<Standard, _>::new(self.pair.public_key()).encode()
    }

    pub fn seed_base64(&self) -> String {
        Base64::<Standard, _>::new(self.seed).encode()
    }

    /// The key file line, for export (`wrangler secret put SIGNING_KEY`, or Synapse's
    /// `signing_key_path`).
    pub fn to_key_file(&self) -> String {
        format!("ed25519 {} {}", self.version(), self.seed_base64())
    }
}

/// Decodes a seed stored as standard base64, padded or not.
pub fn decode_seed(text: &str) -> Result<[u8; SEED_LEN], SigningKeyError> {
    let bytes = Base64::<Standard, Vec<u8>>::parse(text).map_err(|_| SigningKeyError::Seed)?;
    bytes
        .as_bytes()
        .try_into()
        .map_err(|_| SigningKeyError::Seed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The signing key of the spec's appendix test vectors.
    const SPEC_SEED: &str = "YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1";

    #[test]
    fn parses_a_synapse_key_file_and_round_trips() {
        let key = SigningKey::parse_key_file(&format!("ed25519 a_AbCd {SPEC_SEED}\n")).unwrap();
        assert_eq!(key.key_id(), "ed25519:a_AbCd");
        // The spec's seed has non-zero padding bits in its last character; export writes the
        // canonical encoding of the same 32 bytes.
        assert_eq!(
            key.to_key_file(),
            "ed25519 a_AbCd YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA0"
        );
        assert_eq!(
            SigningKey::parse_key_file(&key.to_key_file()).unwrap().seed,
            key.seed
        );
        // The public key of the appendix seed, as computed independently by signedjson/PyNaCl.
        assert_eq!(
            key.public_key_base64(),
            "XGX0JRS2Af3be3knz2fBiRbApjm2Dh61gXDJA8kcJNI"
        );
    }

    #[test]
    fn rejects_malformed_key_files() {
        for text in [
            "",
            "ed25519 a_AbCd",
            "rsa a_AbCd AAAA",
            "ed25519 a-b AAAA",
            "ed25519 v1 !!!!",
            "ed25519 v1 AAAA",
        ] {
            assert!(
                SigningKey::parse_key_file(text).is_err(),
                "{text:?} should be refused"
            );
        }
        let extra = format!("ed25519 a_AbCd {SPEC_SEED} trailing");
        assert_eq!(
            SigningKey::parse_key_file(&extra).unwrap_err(),
            SigningKeyError::Format
        );
    }

    #[test]
    fn generated_keys_are_distinct_and_valid() {
        let (a, b) = (SigningKey::generate(), SigningKey::generate());
        assert_ne!(a.seed_base64(), b.seed_base64());
        assert!(a.version().starts_with("a_") && a.version().len() == 6);
        let again = SigningKey::parse_key_file(&a.to_key_file()).unwrap();
        assert_eq!(again.public_key_base64(), a.public_key_base64());
    }
}
