//! History visibility (spec: "History visibility"): may this user see this event? Decided from
//! the visibility in force at the event and the user's membership at the event and now. And the
//! server-side variant: may a remote server see an event it asks for over federation?

use std::collections::BTreeMap;

/// A user's membership events in one room, in stream order: `(stream position, membership)`.
pub struct MembershipHistory(pub Vec<(u64, String)>);

impl MembershipHistory {
    /// Membership at the event at `position`. A user's own membership event counts as in force
    /// at itself, so a joiner sees their join.
    pub fn at(&self, position: u64) -> Option<&str> {
        self.0
            .iter()
            .take_while(|(p, _)| *p <= position)
            .last()
            .map(|(_, m)| m.as_str())
    }

    /// Histories of several users (or rooms) at once, from `(key, stream position, membership)`
    /// rows in stream order.
    pub fn grouped(
        rows: impl IntoIterator<Item = (String, u64, String)>,
    ) -> BTreeMap<String, MembershipHistory> {
        let mut out: BTreeMap<String, MembershipHistory> = BTreeMap::new();
        for (key, position, membership) in rows {
            out.entry(key)
                .or_insert_with(|| MembershipHistory(Vec::new()))
                .0
                .push((position, membership));
        }
        out
    }

    pub fn current(&self) -> Option<&str> {
        self.0.last().map(|(_, m)| m.as_str())
    }

    /// Where the user's current run of "join" began (profile changes stay in it), if joined.
    pub fn joined_since(&self) -> Option<u64> {
        self.0
            .iter()
            .rev()
            .take_while(|(_, m)| m == "join")
            .last()
            .map(|(p, _)| *p)
    }

    /// Whether the event at `position` with `visibility` in force may be shown.
    pub fn can_see(&self, position: u64, visibility: &str) -> bool {
        // The user's own membership events are always theirs to see: a kicked or banned user
        // must learn why the room went away (their leave is not "joined" at itself).
        if self.0.iter().any(|(p, _)| *p == position) {
            return true;
        }
        let then = self.at(position);
        match visibility {
            "world_readable" => true,
            // Shared history opens to anyone who is a member now, or was at the time.
            "shared" => then == Some("join") || self.current() == Some("join"),
            "invited" => matches!(then, Some("join") | Some("invite")),
            // "joined", and anything unknown: the strictest reading.
            _ => then == Some("join"),
        }
    }
}

/// The visibility an event was sent under, as history visibility rules read it: `shared` when
/// unset or not understood (spec: "Server behaviour").
fn normalised(visibility: &str) -> &str {
    match visibility {
        "world_readable" | "shared" | "invited" | "joined" => visibility,
        _ => "shared",
    }
}

/// Whether a server whose users' memberships at an event are `memberships` may see that event,
/// sent while `visibility` was in force. `shared` and `world_readable` history is open to any
/// server that asks (its users may join later and then see it); otherwise a user of the server
/// must have been joined at the event, or invited under `invited`.
pub fn server_may_see<'a>(
    visibility: &str,
    memberships: impl IntoIterator<Item = &'a str>,
) -> bool {
    let visibility = normalised(visibility);
    if matches!(visibility, "world_readable" | "shared") {
        return true;
    }
    memberships
        .into_iter()
        .any(|m| m == "join" || (m == "invite" && visibility == "invited"))
}

/// What a server that may not see an event gets instead: the event redacted by the room
/// version's rules (still signed and hashed, so it verifies, but without its content).
pub fn redacted_pdu(pdu: serde_json::Value, version: super::RoomVersion) -> serde_json::Value {
    let redacted = crate::signing::to_canonical_object(pdu.clone())
        .ok()
        .and_then(|o| ruma::canonical_json::redact(o, &version.rules().redaction, None).ok());
    match redacted {
        Some(object) => serde_json::to_value(object).unwrap_or(pdu),
        None => pdu,
    }
}

/// The membership histories of one server's users in one room, to decide which of the room's
/// events that server may see.
#[derive(Default)]
pub struct ServerMemberships(BTreeMap<String, MembershipHistory>);

impl ServerMemberships {
    /// From `(user id, stream position, membership)` rows in stream order.
    pub fn from_rows(rows: impl IntoIterator<Item = (String, u64, String)>) -> Self {
        Self(MembershipHistory::grouped(rows))
    }

    /// Whether the server may see the event at `position`, of `kind`, with `content`, sent while
    /// `visibility` was in force. A history visibility change is visible if the setting before
    /// or after it allows (spec), and a server always sees its own users' membership events.
    pub fn may_see(
        &self,
        position: u64,
        kind: &str,
        state_key: Option<&str>,
        content: &serde_json::Value,
        visibility: &str,
    ) -> bool {
        if kind == "m.room.member" && state_key.is_some_and(|k| self.0.contains_key(k)) {
            return true;
        }
        let at = || self.0.values().filter_map(|h| h.at(position));
        if server_may_see(visibility, at()) {
            return true;
        }
        kind == "m.room.history_visibility"
            && content["history_visibility"]
                .as_str()
                .is_some_and(|after| server_may_see(after, at()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn history(entries: &[(u64, &str)]) -> MembershipHistory {
        MembershipHistory(entries.iter().map(|(p, m)| (*p, m.to_string())).collect())
    }

    #[test]
    fn visibility_follows_membership_at_the_event() {
        let h = history(&[(5, "invite"), (10, "join"), (20, "leave")]);
        assert!(h.can_see(3, "world_readable"));
        assert!(!h.can_see(3, "shared"));
        assert!(h.can_see(12, "shared"));
        assert!(!h.can_see(7, "joined"));
        assert!(h.can_see(7, "invited"));
        assert!(h.can_see(10, "joined"));
        assert!(!h.can_see(25, "joined"));
        assert!(h.can_see(20, "joined"), "their own leave");
        assert_eq!(h.joined_since(), None);
        let rejoined = history(&[(5, "join"), (8, "leave"), (10, "join"), (15, "join")]);
        assert_eq!(rejoined.joined_since(), Some(10));
        let joined_now = history(&[(10, "join")]);
        assert!(joined_now.can_see(3, "shared"));
        assert!(!joined_now.can_see(3, "invited"));
    }

    #[test]
    fn servers_see_shared_history_and_what_their_members_could() {
        let none: [&str; 0] = [];
        assert!(server_may_see("shared", none));
        assert!(server_may_see("world_readable", none));
        assert!(
            server_may_see("something_new", none),
            "unknown means shared"
        );
        assert!(!server_may_see("joined", none));
        assert!(!server_may_see("invited", ["leave", "ban"]));
        assert!(server_may_see("invited", ["leave", "invite"]));
        assert!(!server_may_see("joined", ["invite"]));
        assert!(server_may_see("joined", ["invite", "join"]));
    }

    #[test]
    fn server_memberships_are_taken_at_the_event() {
        let rows = [
            (5, "@a:s", "invite"),
            (10, "@a:s", "join"),
            (20, "@b:s", "join"),
            (30, "@a:s", "leave"),
            (40, "@b:s", "leave"),
        ];
        let s = ServerMemberships::from_rows(
            rows.iter()
                .map(|(p, u, m)| (u.to_string(), *p, m.to_string())),
        );
        let msg = |p| s.may_see(p, "m.room.message", None, &json!({}), "joined");
        assert!(!msg(3));
        assert!(!msg(7), "only invited");
        assert!(s.may_see(7, "m.room.message", None, &json!({}), "invited"));
        assert!(msg(10) && msg(35));
        assert!(!msg(45), "everyone left");
        assert!(s.may_see(45, "m.room.message", None, &json!({}), "shared"));
        // Its own users' membership events, even after they left.
        assert!(s.may_see(40, "m.room.member", Some("@b:s"), &json!({}), "joined"));
        assert!(!s.may_see(45, "m.room.member", Some("@c:t"), &json!({}), "joined"));
        // A visibility change shows if the setting before or after it allows.
        let change = json!({"history_visibility": "world_readable"});
        assert!(s.may_see(45, "m.room.history_visibility", Some(""), &change, "joined"));
        let closing = json!({"history_visibility": "joined"});
        assert!(!s.may_see(
            45,
            "m.room.history_visibility",
            Some(""),
            &closing,
            "joined"
        ));
        assert!(ServerMemberships::default().may_see(
            1,
            "m.room.message",
            None,
            &json!({}),
            "shared"
        ));
    }

    #[test]
    fn hidden_events_are_redacted_but_keep_their_signatures() {
        let pdu = json!({"auth_events": [], "content": {"body": "secret", "msgtype": "m.text"},
            "depth": 4, "hashes": {"sha256": "h"}, "origin_server_ts": 1, "prev_events": [],
            "room_id": "!r:x", "sender": "@a:x", "signatures": {"x": {"ed25519:1": "s"}},
            "type": "m.room.message", "unsigned": {"age": 3}});
        let out = redacted_pdu(pdu, crate::rooms::RoomVersion::V11);
        assert_eq!(out["content"], json!({}));
        assert_eq!(out["signatures"]["x"]["ed25519:1"], "s");
        assert_eq!(out["hashes"]["sha256"], "h");
        assert!(out.get("unsigned").is_none());
    }
}
