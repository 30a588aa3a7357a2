//! Request authentication between servers (spec: "Request Authentication"): the
//! `Authorization: X-Matrix origin=..,destination=..,key=..,sig=..` header, which signs the
//! method, the URI as sent, origin, destination and JSON body as one canonical JSON object.

use std::collections::BTreeMap;

use ruma::signatures::{verify_json, PublicKeyMap, PublicKeySet};
use ruma::{CanonicalJsonObject, CanonicalJsonValue, OwnedServerName, ServerName};
use serde_json::{json, Value};

use crate::keys::SigningKey;
use crate::signing::{sign_json, to_canonical_object};

/// A parsed `X-Matrix` authorization header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XMatrix {
    pub origin: OwnedServerName,
    /// Optional before v1.3; when present it must name us.
    pub destination: Option<OwnedServerName>,
    pub key_id: String,
    pub signature: String,
}

#[derive(Debug, PartialEq, Eq)]
pub struct XMatrixError(pub String);

impl std::fmt::Display for XMatrixError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn bad(why: &str) -> XMatrixError {
    XMatrixError(why.to_owned())
}

/// Splits `a="x",b=y` into pairs; values may be quoted (with `\"` escapes) or bare tokens.
fn params(text: &str) -> Result<Vec<(String, String)>, XMatrixError> {
    let mut out = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        let (name, after) = rest
            .split_once('=')
            .ok_or_else(|| bad("parameter without '='"))?;
        let name = name.trim().to_ascii_lowercase();
        let after = after.trim_start();
        let (value, remainder) = if let Some(quoted) = after.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = quoted.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, escaped)) = chars.next() {
                            value.push(escaped);
                        }
                    }
                    '"' => {
                        end = Some(i);
                        break;
                    }
                    c => value.push(c),
                }
            }
            let end = end.ok_or_else(|| bad("unterminated quoted value"))?;
            (value, &quoted[end + 1..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_owned(), &after[end..])
        };
        out.push((name, value));
        rest = remainder.trim_start();
        rest = rest.strip_prefix(',').unwrap_or(rest).trim_start();
    }
    Ok(out)
}

impl XMatrix {
    /// Parses the value of an `Authorization` header.
    pub fn parse(header: &str) -> Result<Self, XMatrixError> {
        let (scheme, rest) = header
            .trim()
            .split_once(' ')
            .ok_or_else(|| bad("not an X-Matrix header"))?;
        if !scheme.eq_ignore_ascii_case("X-Matrix") {
            return Err(bad("not an X-Matrix header"));
        }
        let mut origin = None;
        let mut destination = None;
        let mut key_id = None;
        let mut signature = None;
        for (name, value) in params(rest)? {
            match name.as_str() {
                "origin" => origin = Some(value),
                "destination" => destination = Some(value),
                "key" => key_id = Some(value),
                "sig" => signature = Some(value),
                _ => {}
            }
        }
        let server = |raw: String| {
            ServerName::parse(&raw).map_err(|_| bad("origin or destination is not a server name"))
        };
        Ok(Self {
            origin: server(origin.ok_or_else(|| bad("no origin"))?)?,
            destination: destination.map(server).transpose()?,
            key_id: key_id
                .filter(|k| k.starts_with("ed25519:"))
                .ok_or_else(|| bad("no ed25519 key"))?,
            signature: signature.ok_or_else(|| bad("no signature"))?,
        })
    }
}

/// The object a request signature covers.
fn signed_object(
    method: &str,
    uri: &str,
    origin: &str,
    destination: &str,
    content: Option<&Value>,
) -> Value {
    let mut object = json!({
        "method": method.to_ascii_uppercase(),
        "uri": uri,
        "origin": origin,
        "destination": destination,
    });
    if let Some(content) = content {
        object["content"] = content.clone();
    }
    object
}

/// The `Authorization` header value for a request we send.
pub fn authorization(
    origin: &ServerName,
    destination: &ServerName,
    key: &SigningKey,
    method: &str,
    uri: &str,
    content: Option<&Value>,
) -> Result<String, XMatrixError> {
    let object = signed_object(method, uri, origin.as_str(), destination.as_str(), content);
    let signed = sign_json(origin.as_str(), key.key_pair(), object)
        .map_err(|e| XMatrixError(e.to_string()))?;
    let signature = signed["signatures"][origin.as_str()][key.key_id()]
        .as_str()
        .ok_or_else(|| bad("signing produced no signature"))?
        .to_owned();
    Ok(format!(
        "X-Matrix origin=\"{origin}\",destination=\"{destination}\",key=\"{}\",sig=\"{signature}\"",
        key.key_id()
    ))
}

/// Checks a request's signature with the origin's public key (unpadded base64).
pub fn verify(
    header: &XMatrix,
    us: &ServerName,
    method: &str,
    uri: &str,
    content: Option<&Value>,
    public_key: &str,
) -> Result<(), XMatrixError> {
    if header.destination.as_deref().is_some_and(|d| d != us) {
        return Err(bad("the request is addressed to another server"));
    }
    let mut object: CanonicalJsonObject = to_canonical_object(signed_object(
        method,
        uri,
        header.origin.as_str(),
        us.as_str(),
        content,
    ))
    .map_err(|e| XMatrixError(e.to_string()))?;
    let mut by_key = BTreeMap::new();
    by_key.insert(
        header.key_id.clone(),
        CanonicalJsonValue::String(header.signature.clone()),
    );
    let mut by_origin = BTreeMap::new();
    by_origin.insert(
        header.origin.to_string(),
        CanonicalJsonValue::Object(by_key.into_iter().collect()),
    );
    object.insert(
        "signatures".into(),
        CanonicalJsonValue::Object(by_origin.into_iter().collect()),
    );
    let mut keys = PublicKeySet::new();
    keys.insert(
        header.key_id.clone(),
        ruma::serde::Base64::parse(public_key).map_err(|_| bad("bad public key"))?,
    );
    let mut map = PublicKeyMap::new();
    map.insert(header.origin.to_string(), keys);
    verify_json(&map, &object).map_err(|e| XMatrixError(format!("bad signature: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signing::tests::spec_key;

    fn name(s: &str) -> &ServerName {
        <&ServerName>::try_from(s).unwrap()
    }

    #[test]
    fn headers_parse_quoted_and_bare_values() {
        let h = XMatrix::parse(
            r#"X-Matrix origin="origin.example",destination=dest.example , key="ed25519:key1",sig="ABC\"D""#,
        )
        .unwrap();
        assert_eq!(h.origin.as_str(), "origin.example");
        assert_eq!(
            h.destination.as_deref().map(|d| d.as_str()),
            Some("dest.example")
        );
        assert_eq!(h.key_id, "ed25519:key1");
        assert_eq!(h.signature, "ABC\"D");
        assert!(XMatrix::parse("Bearer abc").is_err());
        assert!(XMatrix::parse(r#"X-Matrix origin="o.example",key="rsa:1",sig="x""#).is_err());
        assert!(XMatrix::parse(r#"X-Matrix key="ed25519:1",sig="x""#).is_err());
    }

    #[test]
    fn what_we_sign_verifies_and_tampering_does_not() {
        let key = spec_key();
        let body = json!({"pdus": [], "edus": []});
        let header = authorization(
            name("domain"),
            name("remote.example"),
            &key,
            "PUT",
            "/_matrix/federation/v1/send/1",
            Some(&body),
        )
        .unwrap();
        let parsed = XMatrix::parse(&header).unwrap();
        let public = key.public_key_base64();
        let us = name("remote.example");
        assert_eq!(
            verify(
                &parsed,
                us,
                "PUT",
                "/_matrix/federation/v1/send/1",
                Some(&body),
                &public
            ),
            Ok(())
        );
        assert!(verify(
            &parsed,
            us,
            "PUT",
            "/_matrix/federation/v1/send/2",
            Some(&body),
            &public
        )
        .is_err());
        assert!(verify(
            &parsed,
            us,
            "PUT",
            "/_matrix/federation/v1/send/1",
            Some(&json!({})),
            &public
        )
        .is_err());
        assert!(verify(
            &parsed,
            name("other.example"),
            "PUT",
            "/_matrix/federation/v1/send/1",
            Some(&body),
            &public
        )
        .is_err());
    }
}
