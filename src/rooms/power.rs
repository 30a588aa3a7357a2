//! Power levels as the server reads them for its own decisions (who may redact whom, who may
//! kick in the UI sense). Authorisation of events themselves is ruma's; this only answers
//! "what level does this user have" consistently with it, creators included (v12).

use ruma::events::StateEventType;
use ruma::UserId;
use serde_json::Value;

use super::state::RoomState;
use super::RoomVersion;

pub struct PowerLevels {
    content: Value,
    has_event: bool,
    creators: Vec<String>,
    infinite_creators: bool,
    pub redact: i64,
}

/// A power level as the auth rules read it: an integer, or (before v10) a numeric string.
pub(crate) fn int(value: Option<&Value>) -> Option<i64> {
    match value? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

impl PowerLevels {
    pub fn from_state(state: &RoomState, version: RoomVersion) -> Self {
        let content_of = |kind: StateEventType| {
            state
                .get(&kind, "")
                .and_then(|pdu| serde_json::from_str::<Value>(pdu.content().get()).ok())
        };
        let create = state.get(&StateEventType::RoomCreate, "");
        let mut creators: Vec<String> =
            create.map(|c| c.sender().to_string()).into_iter().collect();
        let infinite_creators = version
            .rules()
            .authorization
            .explicitly_privilege_room_creators;
        if infinite_creators {
            if let Some(extra) = content_of(StateEventType::RoomCreate)
                .and_then(|c| c.get("additional_creators").cloned())
                .and_then(|v| serde_json::from_value::<Vec<String>>(v).ok())
            {
                creators.extend(extra);
            }
        }
        let content = content_of(StateEventType::RoomPowerLevels);
        let has_event = content.is_some();
        let content = content.unwrap_or(Value::Null);
        let redact = int(content.get("redact")).unwrap_or(50);
        Self {
            content,
            has_event,
            creators,
            infinite_creators,
            redact,
        }
    }

    pub fn user_level(&self, user: &UserId) -> i64 {
        let is_creator = self.creators.iter().any(|c| c == user.as_str());
        if self.infinite_creators && is_creator {
            return i64::MAX;
        }
        if !self.has_event {
            return if is_creator { 100 } else { 0 };
        }
        int(self.content.pointer(&format!(
            "/users/{}",
            user.as_str().replace('~', "~0").replace('/', "~1")
        )))
        .or_else(|| int(self.content.get("users_default")))
        .unwrap_or(0)
    }
}

impl PowerLevels {
    /// The level needed to invite (also to authorise a restricted join).
    pub fn invite_level(&self) -> i64 {
        int(self.content.get("invite")).unwrap_or(0)
    }

    /// The level needed to send an event of `kind` (state or not), per the spec's defaults.
    pub fn event_level(&self, kind: &str, is_state: bool) -> i64 {
        let default = if !self.has_event {
            0
        } else if is_state {
            int(self.content.get("state_default")).unwrap_or(50)
        } else {
            int(self.content.get("events_default")).unwrap_or(0)
        };
        int(self.content.get("events").and_then(|e| e.get(kind))).unwrap_or(default)
    }
}
