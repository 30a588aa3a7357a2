//! The room versions this server creates and operates, and the rules each one brings.

use ruma::room_version_rules::RoomVersionRules;
use ruma::RoomVersionId;

/// A room version this server supports. Older versions (1-9) use event formats and auth rules
/// we do not implement; refusing them is honest, and every current server creates 10 or later.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RoomVersion {
    V10,
    V11,
    /// Room ids derived from the create event, creators with unlimited power (MSC4289/4291).
    V12,
}

impl RoomVersion {
    pub const ALL: [RoomVersion; 3] = [RoomVersion::V10, RoomVersion::V11, RoomVersion::V12];
    /// What `createRoom` uses when the client names no version (matches Synapse today).
    pub const DEFAULT: RoomVersion = RoomVersion::V12;

    pub fn parse(id: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == id)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RoomVersion::V10 => "10",
            RoomVersion::V11 => "11",
            RoomVersion::V12 => "12",
        }
    }

    pub fn id(self) -> RoomVersionId {
        match self {
            RoomVersion::V10 => RoomVersionId::V10,
            RoomVersion::V11 => RoomVersionId::V11,
            RoomVersion::V12 => RoomVersionId::V12,
        }
    }

    pub fn rules(self) -> RoomVersionRules {
        match self {
            RoomVersion::V10 => RoomVersionRules::V10,
            RoomVersion::V11 => RoomVersionRules::V11,
            RoomVersion::V12 => RoomVersionRules::V12,
        }
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
        assert_eq!(RoomVersion::parse("9"), None);
        assert_eq!(RoomVersion::parse("org.example.custom"), None);
        assert!(RoomVersion::V12.room_id_from_create_event());
        assert!(!RoomVersion::V11.room_id_from_create_event());
    }
}
