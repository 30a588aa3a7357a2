//! Dynamic client registration's rules (RFC 7591 as the Matrix spec v1.15 and MSC2966 restrict
//! it): which metadata a client may register, and which redirect URIs are its own. Pure: the
//! endpoint (`registration.rs`) stores what this accepts.

use serde_json::{Map, Value};
use url::{Host, Url};

pub const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";
const GRANT_TYPES: [&str; 3] = ["authorization_code", "refresh_token", DEVICE_CODE_GRANT];

/// A refusal with the RFC 7591 error code (`invalid_redirect_uri` or `invalid_client_metadata`).
#[derive(Debug, PartialEq, Eq)]
pub struct Refused {
    pub error: &'static str,
    pub description: String,
}

fn metadata_error(description: impl Into<String>) -> Refused {
    Refused {
        error: "invalid_client_metadata",
        description: description.into(),
    }
}

fn redirect_error(description: impl Into<String>) -> Refused {
    Refused {
        error: "invalid_redirect_uri",
        description: description.into(),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApplicationType {
    Web,
    Native,
}

/// `host` is `domain` or one of its subdomains.
fn same_or_subdomain(host: &str, domain: &str) -> bool {
    host == domain
        || host
            .strip_suffix(domain)
            .is_some_and(|rest| rest.ends_with('.'))
}

/// A web page URL the client names (its home page, logo, policies): https, a domain name, no
/// credentials.
fn web_page(name: &str, raw: &str) -> Result<Url, Refused> {
    let url = Url::parse(raw).map_err(|_| metadata_error(format!("{name} is not a valid URL")))?;
    if url.scheme() != "https" {
        return Err(metadata_error(format!("{name} must use https")));
    }
    if !matches!(url.host(), Some(Host::Domain(_))) {
        return Err(metadata_error(format!("{name} must name a domain")));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(metadata_error(format!(
            "{name} must not contain credentials"
        )));
    }
    Ok(url)
}

/// The loopback interface a native app listens on (RFC 8252 section 7.3).
pub fn is_loopback(url: &Url) -> bool {
    url.scheme() == "http"
        && match url.host() {
            Some(Host::Domain(d)) => d == "localhost",
            Some(Host::Ipv4(ip)) => ip.is_loopback(),
            Some(Host::Ipv6(ip)) => ip.is_loopback(),
            None => false,
        }
}

/// Whether `uri` may be one of this client's redirect URIs, for a client whose home page is on
/// `client_host`.
pub fn check_redirect_uri(
    uri: &str,
    client_host: &str,
    kind: ApplicationType,
) -> Result<(), Refused> {
    let url = Url::parse(uri).map_err(|_| redirect_error(format!("{uri} is not a valid URL")))?;
    if url.fragment().is_some() {
        return Err(redirect_error("redirect URIs must not have a fragment"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(redirect_error("redirect URIs must not contain credentials"));
    }
    match (kind, url.scheme()) {
        (ApplicationType::Web, "https") => match url.host() {
            Some(Host::Domain(host)) if same_or_subdomain(host, client_host) => Ok(()),
            _ => Err(redirect_error(
                "a web client's redirect URIs must be on the client_uri's host or a subdomain",
            )),
        },
        (ApplicationType::Web, _) => Err(redirect_error(
            "a web client's redirect URIs must use https",
        )),
        (ApplicationType::Native, "http") if is_loopback(&url) => Ok(()),
        (ApplicationType::Native, "https" | "http") => Err(redirect_error(
            "a native client redirects to the loopback interface or to its private-use scheme",
        )),
        (ApplicationType::Native, scheme) => {
            // A private-use scheme is the reverse of a domain the client owns: its client_uri's
            // host or a parent of it (com.example.app for app.example.com), with no authority.
            let domain: Vec<&str> = scheme.rsplit('.').collect();
            let domain = domain.join(".");
            if !scheme.contains('.') || !same_or_subdomain(client_host, &domain) {
                return Err(redirect_error(
                    "a private-use scheme must be the client_uri's host, or a parent domain, reversed",
                ));
            }
            if url.host().is_some() {
                return Err(redirect_error(
                    "a private-use scheme URI has no authority: use scheme:/path",
                ));
            }
            Ok(())
        }
    }
}

/// Whether `given` is one of the registered `uris`: exactly, except that a loopback URI matches
/// on any port, because the app's port is chosen when it starts (RFC 8252 section 7.3).
pub fn redirect_uri_registered(given: &str, uris: &[String]) -> bool {
    if uris.iter().any(|uri| uri == given) {
        return true;
    }
    let Ok(mut given) = Url::parse(given) else {
        return false;
    };
    if !is_loopback(&given) || given.set_port(None).is_err() {
        return false;
    }
    uris.iter()
        .filter_map(|uri| Url::parse(uri).ok())
        .any(|mut uri| is_loopback(&uri) && uri.set_port(None).is_ok() && uri == given)
}

/// Validates a registration request's metadata and answers what is registered: the request's
/// fields with their defaults filled in (RFC 7591 section 3.2.1 echoes them).
pub fn validate(request: &Map<String, Value>) -> Result<Map<String, Value>, Refused> {
    let string = |name: &str| -> Result<Option<&str>, Refused> {
        match request.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(_) => Err(metadata_error(format!("{name} must be a string"))),
        }
    };
    let strings = |name: &str| -> Result<Option<Vec<String>>, Refused> {
        match request.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Array(items)) => items
                .iter()
                .map(|item| {
                    item.as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| metadata_error(format!("{name} must list strings")))
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(_) => Err(metadata_error(format!("{name} must be an array"))),
        }
    };
    let client_uri = web_page(
        "client_uri",
        string("client_uri")?.ok_or_else(|| metadata_error("client_uri is required"))?,
    )?;
    let client_host = client_uri.host_str().unwrap_or_default().to_owned();
    let mut registered = request.clone();
    // Every localized variant (`logo_uri#fr`) obeys the same rules as the field itself.
    for (key, value) in request {
        let field = key.split('#').next().unwrap_or_default();
        if ["logo_uri", "policy_uri", "tos_uri"].contains(&field) {
            let raw = value
                .as_str()
                .ok_or_else(|| metadata_error(format!("{key} must be a string")))?;
            let url = web_page(key, raw)?;
            if !same_or_subdomain(url.host_str().unwrap_or_default(), &client_host) {
                return Err(metadata_error(format!(
                    "{key} must be on the client_uri's host or a subdomain"
                )));
            }
        }
    }
    let kind = match string("application_type")? {
        None | Some("web") => ApplicationType::Web,
        Some("native") => ApplicationType::Native,
        Some(_) => return Err(metadata_error("application_type must be web or native")),
    };
    match string("token_endpoint_auth_method")? {
        None | Some("none") => {}
        Some(_) => {
            return Err(metadata_error(
                "only public clients are registered: token_endpoint_auth_method must be none",
            ))
        }
    }
    let grant_types = strings("grant_types")?.unwrap_or_else(|| vec!["authorization_code".into()]);
    if let Some(unknown) = grant_types
        .iter()
        .find(|g| !GRANT_TYPES.contains(&g.as_str()))
    {
        return Err(metadata_error(format!(
            "grant type {unknown} is not supported"
        )));
    }
    let response_types = strings("response_types")?.unwrap_or_else(|| vec!["code".into()]);
    if response_types.iter().any(|r| r != "code") {
        return Err(metadata_error("the only response type is code"));
    }
    let redirect_uris = strings("redirect_uris")?.unwrap_or_default();
    if grant_types.iter().any(|g| g == "authorization_code") && redirect_uris.is_empty() {
        return Err(redirect_error(
            "the authorization code grant needs at least one redirect URI",
        ));
    }
    for uri in &redirect_uris {
        check_redirect_uri(uri, &client_host, kind)?;
    }
    registered.insert(
        "application_type".into(),
        Value::from(match kind {
            ApplicationType::Web => "web",
            ApplicationType::Native => "native",
        }),
    );
    registered.insert("token_endpoint_auth_method".into(), Value::from("none"));
    registered.insert("grant_types".into(), Value::from(grant_types));
    registered.insert("response_types".into(), Value::from(response_types));
    registered.insert("redirect_uris".into(), Value::from(redirect_uris));
    Ok(registered)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn web_clients_redirect_to_their_own_https_host() {
        let web = ApplicationType::Web;
        assert!(check_redirect_uri("https://app.example.com/cb", "app.example.com", web).is_ok());
        assert!(check_redirect_uri("https://a.app.example.com/cb", "app.example.com", web).is_ok());
        for bad in [
            "https://evil.com/cb",
            "https://badapp.example.com/cb",
            "http://app.example.com/cb",
            "https://app.example.com/cb#frag",
            "https://user:pw@app.example.com/cb",
        ] {
            assert!(
                check_redirect_uri(bad, "app.example.com", web).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn native_clients_use_loopback_or_their_reversed_domain() {
        let native = ApplicationType::Native;
        for good in [
            "http://127.0.0.1/cb",
            "http://127.0.0.1:5000/cb",
            "http://[::1]:5000/",
            "http://localhost:1234/cb",
            "com.example.app:/callback",
            "com.example:/callback",
        ] {
            assert!(
                check_redirect_uri(good, "app.example.com", native).is_ok(),
                "{good}"
            );
        }
        for bad in [
            "org.evil:/callback",
            "com.example.app://callback",
            "myapp:/callback",
            "https://evil.com/cb",
            "http://10.0.0.1/cb",
        ] {
            assert!(
                check_redirect_uri(bad, "app.example.com", native).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn loopback_redirects_match_on_any_port_others_exactly() {
        let uris = vec![
            "http://127.0.0.1/cb".to_owned(),
            "com.example.app:/cb".to_owned(),
        ];
        assert!(redirect_uri_registered("http://127.0.0.1:49152/cb", &uris));
        assert!(redirect_uri_registered("com.example.app:/cb", &uris));
        assert!(!redirect_uri_registered(
            "http://127.0.0.1:49152/other",
            &uris
        ));
        assert!(!redirect_uri_registered("com.example.app:/cb2", &uris));
        assert!(!redirect_uri_registered("https://evil.com/cb", &uris));
    }

    #[test]
    fn registration_checks_uris_and_fills_defaults() {
        let registered = validate(&object(json!({
            "client_name": "App",
            "client_uri": "https://app.example.com/",
            "logo_uri": "https://static.app.example.com/logo.png",
            "application_type": "native",
            "redirect_uris": ["com.example.app:/cb"],
            "grant_types": ["authorization_code", "refresh_token"],
        })))
        .unwrap();
        assert_eq!(registered["token_endpoint_auth_method"], "none");
        assert_eq!(registered["response_types"], json!(["code"]));
        let refused = |v: Value| validate(&object(v)).unwrap_err().error;
        assert_eq!(
            refused(json!({ "redirect_uris": ["https://a.b/"] })),
            "invalid_client_metadata"
        );
        assert_eq!(
            refused(json!({ "client_uri": "http://app.example.com/", "redirect_uris": [] })),
            "invalid_client_metadata"
        );
        assert_eq!(
            refused(
                json!({ "client_uri": "https://app.example.com/", "redirect_uris": ["https://evil.com/"] })
            ),
            "invalid_redirect_uri"
        );
        assert_eq!(
            refused(
                json!({ "client_uri": "https://app.example.com/", "redirect_uris": ["https://app.example.com/"], "tos_uri": "https://evil.com/tos" })
            ),
            "invalid_client_metadata"
        );
        assert_eq!(
            refused(
                json!({ "client_uri": "https://app.example.com/", "redirect_uris": ["https://app.example.com/"], "token_endpoint_auth_method": "client_secret_basic" })
            ),
            "invalid_client_metadata"
        );
        assert_eq!(
            refused(json!({ "client_uri": "https://app.example.com/" })),
            "invalid_redirect_uri"
        );
        // The device grant alone needs no redirect URI.
        assert!(validate(&object(json!({
            "client_uri": "https://tv.example.com/",
            "grant_types": [DEVICE_CODE_GRANT, "refresh_token"],
        })))
        .is_ok());
    }
}
