//! The scopes a Matrix client asks for (spec v1.15, "OAuth 2.0 API", scopes; MSC2967): the API
//! scope, which grants the whole client-server API, and the device scope, which names the device
//! the client generated for this session. The unstable `org.matrix.msc2967` spellings are what
//! clients written before v1.15 send; both are accepted and echoed back as sent.

const API_SCOPES: [&str; 2] = [
    "urn:matrix:client:api:*",
    "urn:matrix:org.matrix.msc2967.client:api:*",
];
const DEVICE_PREFIXES: [&str; 2] = [
    "urn:matrix:client:device:",
    "urn:matrix:org.matrix.msc2967.client:device:",
];
/// OpenID Connect's scope: harmless, some clients add it; we grant nothing for it.
const IGNORED: [&str; 1] = ["openid"];

/// A validated scope: the API is granted and exactly one device is named.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    pub device_id: String,
    /// The scope as granted, space-separated (what the token response reports).
    pub scope: String,
}

/// Why a scope cannot be granted (`invalid_scope`).
#[derive(Debug, PartialEq, Eq)]
pub struct InvalidScope(pub &'static str);

/// Device ids a client may choose: the URI's unreserved characters (so the scope stays one
/// token), long enough not to collide by chance, short enough to display.
fn valid_device_id(id: &str) -> bool {
    (5..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

pub fn parse(scope: &str) -> Result<Grant, InvalidScope> {
    let mut api = false;
    let mut device: Option<&str> = None;
    let mut granted: Vec<&str> = Vec::new();
    for token in scope.split(' ').filter(|t| !t.is_empty()) {
        if API_SCOPES.contains(&token) {
            api = true;
        } else if let Some(id) = DEVICE_PREFIXES.iter().find_map(|p| token.strip_prefix(p)) {
            if device.is_some_and(|d| d != id) {
                return Err(InvalidScope("only one device may be named"));
            }
            if !valid_device_id(id) {
                return Err(InvalidScope(
                    "the device id must be 5 to 64 characters of A-Z a-z 0-9 - . _ ~",
                ));
            }
            device = Some(id);
        } else if IGNORED.contains(&token) {
            continue;
        } else {
            return Err(InvalidScope("unknown scope"));
        }
        if !granted.contains(&token) {
            granted.push(token);
        }
    }
    if !api {
        return Err(InvalidScope(
            "the scope must include urn:matrix:client:api:*",
        ));
    }
    let device_id = device
        .ok_or(InvalidScope(
            "the scope must name a device: urn:matrix:client:device:<id>",
        ))?
        .to_owned();
    Ok(Grant {
        device_id,
        scope: granted.join(" "),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_and_device_scopes_are_granted() {
        let grant = parse("urn:matrix:client:api:* urn:matrix:client:device:ABCDEFGHIJ").unwrap();
        assert_eq!(grant.device_id, "ABCDEFGHIJ");
        assert_eq!(
            grant.scope,
            "urn:matrix:client:api:* urn:matrix:client:device:ABCDEFGHIJ"
        );
        let unstable = parse(
            "openid urn:matrix:org.matrix.msc2967.client:api:* urn:matrix:org.matrix.msc2967.client:device:dev-1.x",
        )
        .unwrap();
        assert_eq!(unstable.device_id, "dev-1.x");
        assert!(!unstable.scope.contains("openid"));
    }

    #[test]
    fn incomplete_or_unknown_scopes_are_refused() {
        assert!(parse("urn:matrix:client:device:ABCDEFGHIJ").is_err());
        assert!(parse("urn:matrix:client:api:*").is_err());
        assert!(parse("urn:matrix:client:api:* urn:matrix:client:device:AB").is_err());
        assert!(parse("urn:matrix:client:api:* urn:matrix:client:device:ABC/DEFGH").is_err());
        assert!(parse(
            "urn:matrix:client:api:* urn:matrix:client:device:AAAAAA urn:matrix:client:device:BBBBBB"
        )
        .is_err());
        assert!(parse("urn:matrix:client:api:* urn:matrix:client:device:AAAAAA email").is_err());
        assert!(parse("").is_err());
    }
}
