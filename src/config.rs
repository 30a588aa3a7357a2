//! Deployment settings, read from the Worker's `[vars]` (once per isolate, `runtime/ports.rs`).
//!
//! Parsing is pure: the runtime hands in a lookup function, so every rule here is unit-tested
//! natively. A setting that is present but malformed is an error, never silently defaulted:
//! a homeserver that guesses its own name wrongly breaks federation in ways that are hard to see.

use ruma::{OwnedServerName, OwnedUserId, ServerName, UserId};

use crate::accounts::password::{DEFAULT_ITERATIONS, MAX_ITERATIONS, MIN_ITERATIONS};
use crate::rooms::RoomVersion;

/// Login and registration attempts allowed per minute, per client IP and per user id.
pub const DEFAULT_AUTH_REQUESTS_PER_MINUTE: i64 = 10;

/// How new accounts may be created through `POST /register`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegistrationMode {
    /// Anyone may register (UIA stage `m.login.dummy`).
    Open,
    /// A registration token is required (UIA stage `m.login.registration_token`).
    Token,
    /// Only the shared-secret admin API creates accounts.
    Closed,
}

/// The public entry point of this server: scheme, host and optional port, without a path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicBaseUrl {
    https: bool,
    host: String,
    port: Option<u16>,
}

impl PublicBaseUrl {
    /// Accepts `http(s)://host[:port][/]`; a path, query or user info is refused because clients
    /// append `/_matrix/...` to this value verbatim.
    pub fn parse(raw: &str) -> Result<Self, ConfigError> {
        let bad = || ConfigError::Invalid("PUBLIC_BASEURL", raw.to_owned());
        let (https, rest) = if let Some(rest) = raw.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = raw.strip_prefix("http://") {
            (false, rest)
        } else {
            return Err(bad());
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.is_empty() || authority.contains(['/', '?', '#', '@']) {
            return Err(bad());
        }
        // Reuse the server-name grammar: it is exactly "host[:port]" with IPv6 in brackets.
        let name = ServerName::parse(authority).map_err(|_| bad())?;
        let port = match name.port() {
            Some(0) => return Err(bad()),
            port => port,
        };
        Ok(Self {
            https,
            host: name.host().to_owned(),
            port,
        })
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port clients and servers connect to: the explicit one, else the scheme's default.
    pub fn effective_port(&self) -> u16 {
        self.port.unwrap_or(if self.https { 443 } else { 80 })
    }

    /// The URL without a trailing slash, as `m.homeserver.base_url` wants it.
    pub fn as_url(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        match self.port {
            Some(port) => format!("{scheme}://{}:{port}", self.host),
            None => format!("{scheme}://{}", self.host),
        }
    }

    /// `host:port` for `/.well-known/matrix/server`. Without an explicit port that is 443,
    /// where the Worker receives federation traffic on a real deployment.
    pub fn federation_authority(&self) -> String {
        format!("{}:{}", self.host, self.port.unwrap_or(443))
    }
}

/// Who to contact about this server, for `/.well-known/matrix/support`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SupportContact {
    pub matrix_id: Option<OwnedUserId>,
    pub email_address: Option<String>,
    pub support_page: Option<String>,
}

impl SupportContact {
    fn is_empty(&self) -> bool {
        self.matrix_id.is_none() && self.email_address.is_none() && self.support_page.is_none()
    }
}

#[derive(Clone, Debug)]
pub struct Config {
    pub server_name: OwnedServerName,
    pub public_baseurl: PublicBaseUrl,
    pub registration: RegistrationMode,
    /// `None` when no contact is configured: the support file is then honestly absent (404).
    pub support: Option<SupportContact>,
    /// What `createRoom` uses when the client names no version.
    pub default_room_version: RoomVersion,
    /// Login and registration attempts per minute, per client IP and per user id.
    pub auth_requests_per_minute: i64,
    /// PBKDF2 iterations for new password hashes (see `accounts::password`).
    pub password_iterations: u32,
    /// Add `X-D1-Queries`/`-Rows-Read`/`-Rows-Written` headers (local development, benchmarks).
    pub expose_d1_usage: bool,
    /// Notaries asked for a server's keys when its own key server cannot be reached or answers
    /// wrongly (spec: "Querying keys through another server"). Empty: none.
    pub trusted_key_servers: Vec<OwnedServerName>,
    /// Events of a remote room's `send_join` answer checked per step of the join
    /// (`rooms::join_job`).
    pub join_step_events: usize,
    /// Presence (`PRESENCE`, default on): syncing marks users online, and presence is shared
    /// with the users and servers they share rooms with. Off, neither happens, as with
    /// Synapse's `presence.enabled: false`; a user's own `PUT /presence` still works.
    pub presence: bool,
    /// The content repository's settings (`media::config`).
    pub media: crate::media::config::MediaConfig,
    /// Requests per minute for sends, joins, uploads and federation (`RATE_LIMITS`,
    /// `limits::rate`).
    pub rate_limits: crate::limits::rate::RateLimits,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigError {
    Missing(&'static str),
    Invalid(&'static str, String),
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigError::Missing(name) => write!(f, "the setting {name} is not set"),
            ConfigError::Invalid(name, value) => {
                write!(f, "the setting {name} is invalid: {value:?}")
            }
        }
    }
}

impl Config {
    /// Builds the configuration from a lookup of named settings. Empty strings count as unset,
    /// because an empty `--var NAME:` (scripts/serve.mjs, as with `wrangler dev`) is the only way to
    /// "unset" a `[vars]` default locally.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };

        let raw_name = get("SERVER_NAME").ok_or(ConfigError::Missing("SERVER_NAME"))?;
        let server_name = ServerName::parse(&raw_name)
            .map_err(|_| ConfigError::Invalid("SERVER_NAME", raw_name.clone()))?;

        let public_baseurl = match get("PUBLIC_BASEURL") {
            Some(raw) => PublicBaseUrl::parse(&raw)?,
            None => PublicBaseUrl::parse(&format!("https://{server_name}"))?,
        };

        let registration = match get("REGISTRATION").as_deref() {
            None | Some("token") => RegistrationMode::Token,
            Some("open") => RegistrationMode::Open,
            Some("closed") => RegistrationMode::Closed,
            Some(other) => return Err(ConfigError::Invalid("REGISTRATION", other.to_owned())),
        };

        let matrix_id = match get("SUPPORT_MXID") {
            Some(raw) => Some(
                UserId::parse(&raw)
                    .map_err(|_| ConfigError::Invalid("SUPPORT_MXID", raw.clone()))?,
            ),
            None => None,
        };
        let support = SupportContact {
            matrix_id,
            email_address: get("SUPPORT_EMAIL"),
            support_page: get("SUPPORT_PAGE"),
        };
        let support = (!support.is_empty()).then_some(support);

        let default_room_version = match get("DEFAULT_ROOM_VERSION") {
            Some(raw) => RoomVersion::parse(&raw)
                .ok_or_else(|| ConfigError::Invalid("DEFAULT_ROOM_VERSION", raw.clone()))?,
            None => RoomVersion::DEFAULT,
        };
        let auth_requests_per_minute = match get("AUTH_REQUESTS_PER_MINUTE") {
            Some(raw) => raw
                .parse()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| ConfigError::Invalid("AUTH_REQUESTS_PER_MINUTE", raw.clone()))?,
            None => DEFAULT_AUTH_REQUESTS_PER_MINUTE,
        };

        let password_iterations = match get("PASSWORD_ITERATIONS") {
            Some(raw) => raw
                .parse()
                .ok()
                .filter(|n| (MIN_ITERATIONS..=MAX_ITERATIONS).contains(n))
                .ok_or_else(|| ConfigError::Invalid("PASSWORD_ITERATIONS", raw.clone()))?,
            None => DEFAULT_ITERATIONS,
        };

        let trusted_key_servers = get("TRUSTED_KEY_SERVERS")
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|name| !name.is_empty())
            .map(|name| {
                ServerName::parse(name)
                    .map_err(|_| ConfigError::Invalid("TRUSTED_KEY_SERVERS", name.to_owned()))
            })
            .collect::<Result<Vec<_>, _>>()?;

        let join_step_events = match get("JOIN_STEP_EVENTS") {
            Some(raw) => raw
                .parse()
                .ok()
                .filter(|n| (1..=10_000).contains(n))
                .ok_or_else(|| ConfigError::Invalid("JOIN_STEP_EVENTS", raw.clone()))?,
            None => crate::rooms::join_job::DEFAULT_STEP_EVENTS,
        };

        let presence = match get("PRESENCE").as_deref() {
            None | Some("true") => true,
            Some("false") => false,
            Some(other) => return Err(ConfigError::Invalid("PRESENCE", other.to_owned())),
        };

        Ok(Self {
            server_name,
            public_baseurl,
            registration,
            support,
            default_room_version,
            auth_requests_per_minute,
            password_iterations,
            expose_d1_usage: get("EXPOSE_D1_USAGE").as_deref() == Some("true"),
            trusted_key_servers,
            join_step_events,
            presence,
            rate_limits: crate::limits::rate::RateLimits::parse(get("RATE_LIMITS").as_deref())?,
            media: crate::media::config::MediaConfig::from_lookup(get)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn base_url_defaults_to_https_on_the_server_name() {
        let c = config(&[("SERVER_NAME", "example.org")]).unwrap();
        assert_eq!(c.public_baseurl.as_url(), "https://example.org");
        assert_eq!(c.public_baseurl.federation_authority(), "example.org:443");
        assert_eq!(c.registration, RegistrationMode::Token);
        assert!(c.support.is_none());
    }

    #[test]
    fn base_url_keeps_an_explicit_port_and_drops_a_trailing_slash() {
        let c = config(&[
            ("SERVER_NAME", "localhost:8787"),
            ("PUBLIC_BASEURL", "http://localhost:8787/"),
        ])
        .unwrap();
        assert_eq!(c.public_baseurl.as_url(), "http://localhost:8787");
        assert_eq!(c.public_baseurl.federation_authority(), "localhost:8787");
        assert_eq!(c.public_baseurl.effective_port(), 8787);
    }

    #[test]
    fn ipv6_base_url() {
        let url = PublicBaseUrl::parse("https://[::1]:8448").unwrap();
        assert_eq!(url.federation_authority(), "[::1]:8448");
    }

    #[test]
    fn malformed_settings_are_errors_not_defaults() {
        assert_eq!(
            config(&[]).unwrap_err(),
            ConfigError::Missing("SERVER_NAME")
        );
        assert!(matches!(
            config(&[("SERVER_NAME", "bad name")]),
            Err(ConfigError::Invalid("SERVER_NAME", _))
        ));
        for url in [
            "ftp://x",
            "https://",
            "https://x/path",
            "https://u@x",
            "https://x:0",
            "https://x:99999",
        ] {
            assert!(
                PublicBaseUrl::parse(url).is_err(),
                "{url} should be refused"
            );
        }
        assert!(matches!(
            config(&[("SERVER_NAME", "x.org"), ("REGISTRATION", "sometimes")]),
            Err(ConfigError::Invalid("REGISTRATION", _))
        ));
        assert!(matches!(
            config(&[("SERVER_NAME", "x.org"), ("SUPPORT_MXID", "admin")]),
            Err(ConfigError::Invalid("SUPPORT_MXID", _))
        ));
        for steps in ["0", "-3", "many", "10001"] {
            assert!(matches!(
                config(&[("SERVER_NAME", "x.org"), ("JOIN_STEP_EVENTS", steps)]),
                Err(ConfigError::Invalid("JOIN_STEP_EVENTS", _))
            ));
        }
    }

    #[test]
    fn presence_is_on_unless_turned_off() {
        assert!(config(&[("SERVER_NAME", "x.org")]).unwrap().presence);
        let off = config(&[("SERVER_NAME", "x.org"), ("PRESENCE", "false")]).unwrap();
        assert!(!off.presence);
        assert!(matches!(
            config(&[("SERVER_NAME", "x.org"), ("PRESENCE", "maybe")]),
            Err(ConfigError::Invalid("PRESENCE", _))
        ));
    }

    #[test]
    fn join_steps_default_and_can_be_made_small() {
        let c = config(&[("SERVER_NAME", "x.org")]).unwrap();
        assert_eq!(
            c.join_step_events,
            crate::rooms::join_job::DEFAULT_STEP_EVENTS
        );
        let c = config(&[("SERVER_NAME", "x.org"), ("JOIN_STEP_EVENTS", "3")]).unwrap();
        assert_eq!(c.join_step_events, 3);
    }

    #[test]
    fn trusted_key_servers_are_a_comma_separated_list_of_server_names() {
        assert!(config(&[("SERVER_NAME", "x.org")])
            .unwrap()
            .trusted_key_servers
            .is_empty());
        let c = config(&[
            ("SERVER_NAME", "x.org"),
            ("TRUSTED_KEY_SERVERS", " matrix.org, localhost:8448 ,"),
        ])
        .unwrap();
        let names: Vec<&str> = c.trusted_key_servers.iter().map(|n| n.as_str()).collect();
        assert_eq!(names, ["matrix.org", "localhost:8448"]);
        assert!(matches!(
            config(&[
                ("SERVER_NAME", "x.org"),
                ("TRUSTED_KEY_SERVERS", "a.org,not a name")
            ]),
            Err(ConfigError::Invalid("TRUSTED_KEY_SERVERS", _))
        ));
    }

    #[test]
    fn registration_modes_and_support_contact() {
        let c = config(&[
            ("SERVER_NAME", "x.org"),
            ("REGISTRATION", "open"),
            ("SUPPORT_MXID", "@admin:x.org"),
            ("SUPPORT_EMAIL", ""),
        ])
        .unwrap();
        assert_eq!(c.registration, RegistrationMode::Open);
        let support = c.support.unwrap();
        assert_eq!(support.matrix_id.unwrap().as_str(), "@admin:x.org");
        assert_eq!(support.email_address, None);
        assert_eq!(
            config(&[("SERVER_NAME", "x"), ("REGISTRATION", "closed")])
                .unwrap()
                .registration,
            RegistrationMode::Closed
        );
    }
}
