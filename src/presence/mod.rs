//! Presence (client-server "Presence", server-server "Presence" EDU): what a user's presence
//! looks like to others, and when a change is worth telling them. Pure: storage and delivery
//! live in `storage::presence` and `client::presence`.

use serde_json::{json, Value};

/// How often a syncing client refreshes its user's `last_active_ts`: at most one D1 write per
/// user per this long, whatever the number of syncs. Rows written are the free plan's scarcest
/// allowance (100,000 a day): at this pace an always-connected user costs 288 of them a day.
pub const REFRESH_MS: u64 = 5 * 60_000;
/// A user is "currently active" if they were active this recently: one refresh period, plus a
/// long-poll's worth of slack, so that a user who keeps syncing stays currently active.
pub const CURRENTLY_ACTIVE_MS: u64 = REFRESH_MS + 60_000;
/// Longest status message kept.
pub const MAX_STATUS_MSG: usize = 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Online,
    Unavailable,
    Offline,
}

impl State {
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "online" => Some(State::Online),
            "unavailable" => Some(State::Unavailable),
            "offline" => Some(State::Offline),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            State::Online => "online",
            State::Unavailable => "unavailable",
            State::Offline => "offline",
        }
    }
}

/// A user's presence as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Presence {
    pub state: State,
    pub status_msg: Option<String>,
    pub last_active_ts: u64,
    pub currently_active: bool,
}

impl Presence {
    /// The content of `m.presence` (and of `GET /presence/{userId}/status`) at `now`.
    pub fn content(&self, now: u64) -> Value {
        let mut content = json!({
            "presence": self.state.as_str(),
            "last_active_ago": now.saturating_sub(self.last_active_ts),
            "currently_active": self.currently_active
                && now.saturating_sub(self.last_active_ts) < CURRENTLY_ACTIVE_MS,
        });
        if let Some(msg) = &self.status_msg {
            content["status_msg"] = json!(msg);
        }
        content
    }

    /// Whether going from `self` to `next` changes what others see (and so moves the presence
    /// stream and wakes them), rather than only refreshing when the user was last active.
    pub fn differs_for_others(&self, next: &Presence) -> bool {
        self.state != next.state
            || self.status_msg != next.status_msg
            || self.currently_active != next.currently_active
    }
}

/// What a `/sync` with `set_presence` does to the user's presence: `None` when nothing needs
/// writing (the client asked to stay offline, or nothing changed and the last refresh is recent).
pub fn on_sync(current: Option<&Presence>, set_presence: &str, now: u64) -> Option<Presence> {
    let state = match State::parse(set_presence)? {
        // "offline": the client does not want to be marked online by syncing.
        State::Offline => return None,
        state => state,
    };
    let next = Presence {
        state,
        status_msg: current.and_then(|c| c.status_msg.clone()),
        last_active_ts: now,
        currently_active: state == State::Online,
    };
    match current {
        Some(c)
            if !c.differs_for_others(&next)
                && now.saturating_sub(c.last_active_ts) < REFRESH_MS =>
        {
            None
        }
        _ => Some(next),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn online(at: u64) -> Presence {
        Presence {
            state: State::Online,
            status_msg: Some("busy".into()),
            last_active_ts: at,
            currently_active: true,
        }
    }

    #[test]
    fn content_counts_from_the_last_activity_and_ages_out_currently_active() {
        let p = online(1_000);
        assert_eq!(
            p.content(1_500),
            json!({"presence": "online", "last_active_ago": 500, "currently_active": true,
                   "status_msg": "busy"})
        );
        assert_eq!(
            p.content(1_000 + CURRENTLY_ACTIVE_MS)["currently_active"],
            json!(false)
        );
    }

    #[test]
    fn syncing_refreshes_at_most_once_per_period_and_keeps_the_status() {
        let p = online(1_000);
        assert_eq!(on_sync(Some(&p), "online", 1_000 + REFRESH_MS - 1), None);
        let refreshed = on_sync(Some(&p), "online", 1_000 + REFRESH_MS).unwrap();
        assert_eq!(refreshed.status_msg.as_deref(), Some("busy"));
        assert!(!p.differs_for_others(&refreshed), "a refresh wakes nobody");
        let away = on_sync(Some(&p), "unavailable", 1_001).unwrap();
        assert!(p.differs_for_others(&away));
        assert_eq!(on_sync(Some(&p), "offline", 99_999), None);
        assert_eq!(on_sync(None, "nonsense", 5), None);
        assert_eq!(on_sync(None, "online", 5).unwrap().state, State::Online);
    }
}
