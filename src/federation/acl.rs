//! Server access control lists (`m.room.server_acl`; spec "Server Access Control Lists"): which
//! servers may take part in a room. Pure: the endpoints read the room's ACL content and ask here.

use serde_json::Value;

use crate::glob;

/// A room's ACL, from its `m.room.server_acl` content.
#[derive(Debug, Default)]
pub struct ServerAcl {
    allow: Vec<String>,
    deny: Vec<String>,
    allow_ip_literals: bool,
}

/// The patterns of a list, lowercased; a missing or malformed list is empty (entries that are
/// not strings are skipped).
fn patterns(content: &Value, field: &str) -> Vec<String> {
    content[field]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_lowercase)
        .collect()
}

/// The host of a server name without its port: `[::1]:8448` -> `[::1]`, `a.org:80` -> `a.org`.
fn host(server_name: &str) -> &str {
    if server_name.starts_with('[') {
        return server_name
            .find(']')
            .map_or(server_name, |end| &server_name[..=end]);
    }
    server_name
        .rsplit_once(':')
        .map_or(server_name, |(host, _)| host)
}

fn is_ip_literal(host: &str) -> bool {
    host.starts_with('[') || host.parse::<std::net::Ipv4Addr>().is_ok()
}

impl ServerAcl {
    pub fn from_content(content: &Value) -> Self {
        Self {
            allow: patterns(content, "allow"),
            deny: patterns(content, "deny"),
            // Anything but a boolean means the default, true.
            allow_ip_literals: content["allow_ip_literals"].as_bool().unwrap_or(true),
        }
    }

    /// Whether `server_name` (a port, if any, is ignored) may take part in the room.
    pub fn allows(&self, server_name: &str) -> bool {
        let host = host(server_name).to_lowercase();
        if !self.allow_ip_literals && is_ip_literal(&host) {
            return false;
        }
        let listed = |list: &[String]| list.iter().any(|p| glob::matches(p, &host));
        !listed(&self.deny) && listed(&self.allow)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn acl(content: Value) -> ServerAcl {
        ServerAcl::from_content(&content)
    }

    #[test]
    fn deny_wins_over_allow_and_nothing_allowed_means_denied() {
        let a = acl(json!({"allow": ["*"], "deny": ["evil.com", "*.evil.com"]}));
        assert!(a.allows("good.org"));
        assert!(!a.allows("evil.com"));
        assert!(!a.allows("sub.evil.com"));
        assert!(a.allows("notevil.com"));
        assert!(
            !acl(json!({})).allows("good.org"),
            "allow defaults to empty"
        );
        assert!(!acl(json!({"deny": []})).allows("good.org"));
        let only = acl(json!({"allow": ["*.trusted.org", "t?.org"]}));
        assert!(only.allows("a.trusted.org") && only.allows("t1.org"));
        assert!(!only.allows("trusted.org") && !only.allows("t12.org"));
    }

    #[test]
    fn ports_are_ignored_and_case_does_not_matter() {
        let a = acl(json!({"allow": ["*"], "deny": ["Evil.COM"]}));
        for name in ["evil.com", "evil.com:8448", "EVIL.com:1234"] {
            assert!(!a.allows(name), "{name}");
        }
        let only = acl(json!({"allow": ["localhost"]}));
        assert!(only.allows("localhost:8448") && only.allows("LocalHost"));
        assert!(!only.allows("localhost.evil:8448"));
    }

    #[test]
    fn ip_literals_follow_allow_ip_literals() {
        let open = acl(json!({"allow": ["*"]}));
        let closed = acl(json!({"allow": ["*"], "allow_ip_literals": false}));
        let not_a_bool = acl(json!({"allow": ["*"], "allow_ip_literals": "no"}));
        for name in ["1.2.3.4", "1.2.3.4:8448", "[::1]", "[2001:db8::1]:8448"] {
            assert!(open.allows(name), "{name}");
            assert!(not_a_bool.allows(name), "{name}");
            assert!(!closed.allows(name), "{name}");
        }
        assert!(closed.allows("example.org:8448"));
        let by_ip = acl(json!({"allow": ["127.0.0.*", "[::1]"]}));
        assert!(by_ip.allows("127.0.0.1:8448") && by_ip.allows("[::1]:80"));
        assert!(!acl(json!({"allow": ["*"], "deny": ["[::1]"]})).allows("[::1]:8448"));
    }

    #[test]
    fn malformed_lists_are_read_leniently() {
        let a = acl(json!({"allow": ["*", 5, null], "deny": "evil.com"}));
        assert!(
            a.allows("evil.com"),
            "a deny that is not a list denies nothing"
        );
        assert!(!acl(json!({"allow": "*"})).allows("good.org"));
    }
}
