//! The room versions this server creates and operates, and the rules each one brings.

use ruma::room_version_rules::RoomVersionRules;
use ruma::RoomVersionId;

/// A room version this server supports: every stable version of the spec. Versions 1 and 2
/// have server-made event ids and cite events as `[id, hashes]` pairs; version 1 alone resolves
/// state with the first algorithm (`rooms/resolution_v1.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RoomVersion {
    V1,
    V2,
    V3,
    V4,
    V5,
    V6,
    V7,
    V8,
    V9,
    V10,
    V11,
    /// Room ids derived from the create event, creators with unlimited power (MSC4289/4291).
    V12,
}

impl RoomVersion {
    pub const ALL: [RoomVersion; 12] = [
        RoomVersion::V1,
        RoomVersion::V2,
        RoomVersion::V3,
        RoomVersion::V4,
        RoomVersion::V5,
        RoomVersion::V6,
        RoomVersion::V7,
        RoomVersion::V8,
        RoomVersion::V9,
        RoomVersion::V10,
        RoomVersion::V11,
        RoomVersion::V12,
    ];
    /// What `createRoom` uses when the client names no version (matches Synapse today).
    pub const DEFAULT: RoomVersion = RoomVersion::V12;

    /// Whether `type` and `state_key` are held to 255 bytes (from v11), or to 255 codepoints,
    /// as Synapse has always held them in earlier versions (`pdu::check_format` says why).
    pub fn strict_byte_limits(self) -> bool {
        matches!(self, RoomVersion::V11 | RoomVersion::V12)
    }

    pub fn parse(id: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == id)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RoomVersion::V1 => "1",
            RoomVersion::V2 => "2",
            RoomVersion::V3 => "3",
            RoomVersion::V4 => "4",
            RoomVersion::V5 => "5",
            RoomVersion::V6 => "6",
            RoomVersion::V7 => "7",
            RoomVersion::V8 => "8",
            RoomVersion::V9 => "9",
            RoomVersion::V10 => "10",
            RoomVersion::V11 => "11",
            RoomVersion::V12 => "12",
        }
    }

    pub fn id(self) -> RoomVersionId {
        match self {
            RoomVersion::V1 => RoomVersionId::V1,
            RoomVersion::V2 => RoomVersionId::V2,
            RoomVersion::V3 => RoomVersionId::V3,
            RoomVersion::V4 => RoomVersionId::V4,
            RoomVersion::V5 => RoomVersionId::V5,
            RoomVersion::V6 => RoomVersionId::V6,
            RoomVersion::V7 => RoomVersionId::V7,
            RoomVersion::V8 => RoomVersionId::V8,
            RoomVersion::V9 => RoomVersionId::V9,
            RoomVersion::V10 => RoomVersionId::V10,
            RoomVersion::V11 => RoomVersionId::V11,
            RoomVersion::V12 => RoomVersionId::V12,
        }
    }

    pub fn rules(self) -> RoomVersionRules {
        match self {
            RoomVersion::V1 => RoomVersionRules::V1,
            RoomVersion::V2 => RoomVersionRules::V2,
            RoomVersion::V3 => RoomVersionRules::V3,
            RoomVersion::V4 => RoomVersionRules::V4,
            RoomVersion::V5 => RoomVersionRules::V5,
            RoomVersion::V6 => RoomVersionRules::V6,
            RoomVersion::V7 => RoomVersionRules::V7,
            RoomVersion::V8 => RoomVersionRules::V8,
            RoomVersion::V9 => RoomVersionRules::V9,
            RoomVersion::V10 => RoomVersionRules::V10,
            RoomVersion::V11 => RoomVersionRules::V11,
            RoomVersion::V12 => RoomVersionRules::V12,
        }
    }

    /// Versions 1 and 2: the sending server names the event (`$opaque:server`, in the PDU's
    /// `event_id`) instead of the id being the reference hash.
    pub fn event_id_in_pdu(self) -> bool {
        self.rules().event_format.require_event_id
    }

    /// Versions 1 and 2: `prev_events` and `auth_events` are `[event_id, {"sha256": ..}]`
    /// pairs rather than bare ids.
    pub fn refs_with_hashes(self) -> bool {
        matches!(
            self.rules().events_reference_format,
            ruma::room_version_rules::EventsReferenceFormatVersion::V1
        )
    }

    /// From v12 on, the room id is `!` plus the create event's reference hash, and the create
    /// event carries no `room_id` and is never listed in `auth_events`.
    pub fn room_id_from_create_event(self) -> bool {
        self.rules().authorization.room_create_event_id_as_room_id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_round_trip_and_unknown_ones_are_refused() {
        for v in RoomVersion::ALL {
            assert_eq!(RoomVersion::parse(v.as_str()), Some(v));
            assert_eq!(v.id().as_str(), v.as_str());
        }
        assert_eq!(RoomVersion::parse("13"), None);
        assert_eq!(RoomVersion::parse("01"), None);
        assert_eq!(RoomVersion::parse("org.example.custom"), None);
        assert!(RoomVersion::V12.room_id_from_create_event());
        assert!(!RoomVersion::V11.room_id_from_create_event());
        let server_ids: Vec<_> = RoomVersion::ALL
            .into_iter()
            .filter(|v| v.event_id_in_pdu())
            .collect();
        assert_eq!(server_ids, [RoomVersion::V1, RoomVersion::V2]);
        let pairs: Vec<_> = RoomVersion::ALL
            .into_iter()
            .filter(|v| v.refs_with_hashes())
            .collect();
        assert_eq!(pairs, [RoomVersion::V1, RoomVersion::V2]);
    }
}
