//! History visibility (spec: "History visibility"): may this user see this event? Decided from
//! the visibility in force at the event and the user's membership at the event and now.

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
