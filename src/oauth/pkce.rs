//! Proof Key for Code Exchange (RFC 7636), S256 only: the only method the spec allows, and the
//! only one that protects a code intercepted on its way back to a native app.

use sha2::{Digest, Sha256};

/// The RFC's verifier: 43 to 128 characters of `A-Z a-z 0-9 - . _ ~`.
pub fn valid_verifier(verifier: &str) -> bool {
    (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

/// An S256 challenge is the unpadded base64url of a SHA-256: exactly 43 characters.
pub fn valid_challenge(challenge: &str) -> bool {
    challenge.len() == 43
        && challenge
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

pub fn s256(verifier: &str) -> String {
    base64url(&Sha256::digest(verifier.as_bytes()))
}

/// Unpadded base64url (RFC 4648 section 5), as PKCE and tokens in URLs need.
pub fn base64url(bytes: &[u8]) -> String {
    ruma::serde::Base64::<ruma::serde::base64::UrlSafe, _>::new(bytes).encode()
}

/// Whether `verifier` answers `challenge`, compared in constant time.
pub fn verify(verifier: &str, challenge: &str) -> bool {
    if !valid_verifier(verifier) {
        return false;
    }
    let computed = s256(verifier);
    computed.len() == challenge.len()
        && computed
            .bytes()
            .zip(challenge.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7636_appendix_b_vector() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert_eq!(s256(verifier), challenge);
        assert!(valid_challenge(challenge));
        assert!(verify(verifier, challenge));
    }

    #[test]
    fn wrong_or_malformed_verifiers_fail() {
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert!(!verify(
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXK",
            challenge
        ));
        assert!(!verify("short", challenge));
        assert!(!verify(&"a".repeat(129), challenge));
        assert!(!valid_challenge(
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-c="
        ));
        assert!(!valid_challenge("plain"));
    }
}
