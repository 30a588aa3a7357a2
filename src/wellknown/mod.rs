//! The `.well-known/matrix/*` files that tell clients and servers where this homeserver lives.
//! They are derived from the configuration, so a deployment changes them in one place.

use serde_json::{json, Map, Value};

use crate::config::Config;

/// `/.well-known/matrix/server`: where other servers send federation traffic. Inbound
/// federation reaches the Worker on the port of the public base URL (443 when it has none).
pub fn server(config: &Config) -> Value {
    json!({ "m.server": config.public_baseurl.federation_authority() })
}

/// `/.well-known/matrix/client`: the client-server API's base URL. An object so that later
/// keys (identity server, sliding sync proxy) can join it.
pub fn client(config: &Config) -> Value {
    json!({ "m.homeserver": { "base_url": config.public_baseurl.as_url() } })
}

/// `/.well-known/matrix/support`, or `None` when no contact is configured (then 404).
pub fn support(config: &Config) -> Option<Value> {
    let support = config.support.as_ref()?;
    let mut body = Map::new();
    if support.matrix_id.is_some() || support.email_address.is_some() {
        let mut contact = Map::new();
        contact.insert("role".into(), json!("m.role.admin"));
        if let Some(id) = &support.matrix_id {
            contact.insert("matrix_id".into(), json!(id));
        }
        if let Some(email) = &support.email_address {
            contact.insert("email_address".into(), json!(email));
        }
        body.insert("contacts".into(), json!([contact]));
    }
    if let Some(page) = &support.support_page {
        body.insert("support_page".into(), json!(page));
    }
    Some(Value::Object(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &[(&str, &str)]) -> Config {
        let mut pairs = vec![
            ("SERVER_NAME", "example.org"),
            ("PUBLIC_BASEURL", "https://matrix.example.org"),
        ];
        pairs.extend_from_slice(extra);
        Config::from_lookup(|name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        })
        .unwrap()
    }

    #[test]
    fn server_and_client_point_at_the_public_base_url() {
        let c = config(&[]);
        assert_eq!(server(&c), json!({"m.server": "matrix.example.org:443"}));
        assert_eq!(
            client(&c),
            json!({"m.homeserver": {"base_url": "https://matrix.example.org"}})
        );
        assert_eq!(support(&c), None);
    }

    #[test]
    fn support_lists_the_configured_contact() {
        let c = config(&[
            ("SUPPORT_EMAIL", "admin@example.org"),
            ("SUPPORT_PAGE", "https://example.org/help"),
        ]);
        assert_eq!(
            support(&c).unwrap(),
            json!({
                "contacts": [{"role": "m.role.admin", "email_address": "admin@example.org"}],
                "support_page": "https://example.org/help"
            })
        );
    }
}
