//! A registered application service: its registration (Synapse's YAML format, stored as JSON
//! by scripts/appservice.py, which checks it before anything is stored) and the questions the
//! server asks of it: is this user, alias or room in its namespaces, exclusively?
//!
//! Namespace regexes are matched as Synapse matches them: anchored at the start of the id, not
//! at its end (`@irc_.*` and `@irc_` both match `@irc_bob:example.org`).

use regex_lite::Regex;
use serde::Deserialize;
use serde_json::Value;

/// One namespace entry of a registration.
#[derive(Clone, Debug, Deserialize)]
pub struct NamespaceEntry {
    pub regex: String,
    #[serde(default)]
    pub exclusive: bool,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct Namespaces {
    #[serde(default)]
    pub users: Vec<NamespaceEntry>,
    #[serde(default)]
    pub aliases: Vec<NamespaceEntry>,
    #[serde(default)]
    pub rooms: Vec<NamespaceEntry>,
}

/// The registration as stored (the YAML's keys, unchanged).
#[derive(Clone, Debug, Deserialize)]
pub struct RegistrationFile {
    pub id: String,
    pub url: Option<String>,
    pub as_token: String,
    pub hs_token: String,
    pub sender_localpart: String,
    #[serde(default)]
    pub namespaces: Namespaces,
    /// Synapse's default: rate limited unless the file says `false`.
    #[serde(default)]
    pub rate_limited: Option<bool>,
    #[serde(default)]
    pub receive_ephemeral: Option<bool>,
    #[serde(default, rename = "de.sorunome.msc2409.push_ephemeral")]
    pub msc2409_push_ephemeral: Option<bool>,
    #[serde(default, rename = "org.matrix.msc3202")]
    pub msc3202: Option<bool>,
}

/// A compiled namespace entry.
#[derive(Clone, Debug)]
struct Pattern {
    regex: Regex,
    exclusive: bool,
}

/// A registered service, ready to answer namespace questions.
#[derive(Clone, Debug)]
pub struct AppService {
    pub file: RegistrationFile,
    /// `@sender_localpart:server`: the service's own bot user.
    pub sender: String,
    users: Vec<Pattern>,
    aliases: Vec<Pattern>,
    rooms: Vec<Pattern>,
}

fn compile(entries: &[NamespaceEntry]) -> Result<Vec<Pattern>, String> {
    entries
        .iter()
        .map(|entry| {
            Regex::new(&format!("^(?:{})", entry.regex))
                .map(|regex| Pattern {
                    regex,
                    exclusive: entry.exclusive,
                })
                .map_err(|e| format!("invalid regex {:?}: {e}", entry.regex))
        })
        .collect()
}

fn matches(patterns: &[Pattern], id: &str, exclusive_only: bool) -> bool {
    patterns
        .iter()
        .any(|p| (!exclusive_only || p.exclusive) && p.regex.is_match(id))
}

impl AppService {
    /// The service from its stored registration; `server` names our users.
    pub fn from_json(registration: &str, server: &str) -> Result<Self, String> {
        let file: RegistrationFile =
            serde_json::from_str(registration).map_err(|e| format!("bad registration: {e}"))?;
        Ok(Self {
            sender: format!("@{}:{server}", file.sender_localpart),
            users: compile(&file.namespaces.users)?,
            aliases: compile(&file.namespaces.aliases)?,
            rooms: compile(&file.namespaces.rooms)?,
            file,
        })
    }

    pub fn id(&self) -> &str {
        &self.file.id
    }

    /// The service's bot or a user in its user namespace: whom it may act as.
    pub fn is_interested_in_user(&self, user_id: &str) -> bool {
        user_id == self.sender || matches(&self.users, user_id, false)
    }

    pub fn is_exclusive_user(&self, user_id: &str) -> bool {
        user_id == self.sender || matches(&self.users, user_id, true)
    }

    pub fn is_interested_in_alias(&self, alias: &str) -> bool {
        matches(&self.aliases, alias, false)
    }

    pub fn is_exclusive_alias(&self, alias: &str) -> bool {
        matches(&self.aliases, alias, true)
    }

    pub fn is_interested_in_room_id(&self, room_id: &str) -> bool {
        matches(&self.rooms, room_id, false)
    }

    pub fn rate_limited(&self) -> bool {
        self.file.rate_limited.unwrap_or(true)
    }

    /// MSC2409: ephemeral events (receipts, typing, presence) and to-device messages go out in
    /// transactions.
    pub fn receives_ephemeral(&self) -> bool {
        self.file.receive_ephemeral.unwrap_or(false)
            || self.file.msc2409_push_ephemeral.unwrap_or(false)
    }

    /// MSC3202: device list changes and one-time key counts of the service's users.
    pub fn msc3202(&self) -> bool {
        self.file.msc3202.unwrap_or(false)
    }
}

/// Whether an event concerns the service (Synapse's rules, which the spec leaves to servers):
/// its room is in the room namespace, its sender or (for a membership) its target is one of
/// the service's users, or the room has an alias or a joined member in its namespaces.
pub fn is_interested_in_event(
    service: &AppService,
    event: &Value,
    room_aliases: &[String],
    room_members: &[String],
) -> bool {
    let field = |name: &str| event.get(name).and_then(Value::as_str);
    if field("room_id").is_some_and(|room| service.is_interested_in_room_id(room)) {
        return true;
    }
    if field("sender").is_some_and(|sender| service.is_interested_in_user(sender)) {
        return true;
    }
    if field("type") == Some("m.room.member")
        && field("state_key").is_some_and(|target| service.is_interested_in_user(target))
    {
        return true;
    }
    room_aliases
        .iter()
        .any(|alias| service.is_interested_in_alias(alias))
        || room_members
            .iter()
            .any(|member| service.is_interested_in_user(member))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn bridge() -> AppService {
        let registration = json!({
            "id": "whatsapp",
            "url": "http://127.0.0.1:29318",
            "as_token": "as",
            "hs_token": "hs",
            "sender_localpart": "whatsappbot",
            "namespaces": {
                "users": [{"regex": "@whatsapp_.*:example\\.org", "exclusive": true},
                          {"regex": "@shared_.*", "exclusive": false}],
                "aliases": [{"regex": "#whatsapp_.*:example\\.org", "exclusive": true}],
                "rooms": [{"regex": "!bridged.*", "exclusive": false}]
            },
            "rate_limited": false,
            "de.sorunome.msc2409.push_ephemeral": true
        });
        AppService::from_json(&registration.to_string(), "example.org").unwrap()
    }

    #[test]
    fn namespaces_match_from_the_start_as_synapse_does() {
        let service = bridge();
        assert!(service.is_interested_in_user("@whatsapp_123:example.org"));
        assert!(service.is_exclusive_user("@whatsapp_123:example.org"));
        assert!(service.is_interested_in_user("@shared_x:other.org"));
        assert!(!service.is_exclusive_user("@shared_x:other.org"));
        assert!(!service.is_interested_in_user("@bob_whatsapp_1:example.org"));
        assert!(service.is_exclusive_user("@whatsappbot:example.org"));
        assert!(service.is_exclusive_alias("#whatsapp_group:example.org"));
        assert!(!service.is_interested_in_alias("#other:example.org"));
        assert!(service.is_interested_in_room_id("!bridged123:example.org"));
        assert!(!service.rate_limited());
        assert!(service.receives_ephemeral());
        assert!(!service.msc3202());
    }

    #[test]
    fn a_bad_regex_is_refused() {
        let registration = json!({
            "id": "x", "url": null, "as_token": "a", "hs_token": "h", "sender_localpart": "x",
            "namespaces": {"users": [{"regex": "@(", "exclusive": true}]}
        });
        let error = AppService::from_json(&registration.to_string(), "example.org").unwrap_err();
        assert!(error.contains("invalid regex"), "{error}");
    }

    #[test]
    fn interest_in_events() {
        let service = bridge();
        let message = |room: &str, sender: &str| json!({"room_id": room, "sender": sender, "type": "m.room.message"});
        assert!(is_interested_in_event(
            &service,
            &message("!bridged1:example.org", "@bob:example.org"),
            &[],
            &[]
        ));
        assert!(is_interested_in_event(
            &service,
            &message("!r:example.org", "@whatsapp_1:example.org"),
            &[],
            &[]
        ));
        let invite = json!({"room_id": "!r:example.org", "sender": "@bob:example.org",
                            "type": "m.room.member", "state_key": "@whatsapp_2:example.org"});
        assert!(is_interested_in_event(&service, &invite, &[], &[]));
        let plain = message("!r:example.org", "@bob:example.org");
        assert!(!is_interested_in_event(
            &service,
            &plain,
            &["#x:example.org".into()],
            &["@bob:example.org".into()]
        ));
        assert!(is_interested_in_event(
            &service,
            &plain,
            &["#whatsapp_g:example.org".into()],
            &[]
        ));
        assert!(is_interested_in_event(
            &service,
            &plain,
            &[],
            &["@whatsappbot:example.org".into()]
        ));
    }
}
