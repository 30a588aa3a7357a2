//! Where a client is in each stream /sync reads. The token is opaque to clients
//! (`s<events>_<account data>_<receipts>_<typing>_<to-device>_<device lists>`), and never goes
//! backwards because every component is a D1 AUTOINCREMENT key. Tokens from before a component
//! existed have fewer parts; the missing ones read as 0 (the start of that stream).

use std::fmt;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StreamPosition {
    pub events: u64,
    pub account_data: u64,
    pub receipts: u64,
    pub typing: u64,
    /// The to-device inbox: messages at or below it are acknowledged (and deleted).
    pub to_device: u64,
    pub device_lists: u64,
    pub presence: u64,
}

impl StreamPosition {
    pub fn parse(token: &str) -> Option<Self> {
        let mut parts = token
            .strip_prefix('s')?
            .split('_')
            .map(|p| p.parse::<u64>());
        let mut next = || parts.next().unwrap_or(Ok(0)).ok();
        let position = Self {
            events: next()?,
            account_data: next()?,
            receipts: next()?,
            typing: next()?,
            to_device: next()?,
            device_lists: next()?,
            presence: next()?,
        };
        Some(position)
    }

    /// True if any stream has moved past `other`.
    pub fn is_after(&self, other: &StreamPosition) -> bool {
        self.events > other.events
            || self.account_data > other.account_data
            || self.receipts > other.receipts
            || self.typing > other.typing
            || self.to_device > other.to_device
            || self.device_lists > other.device_lists
            || self.presence > other.presence
    }
}

impl fmt::Display for StreamPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "s{}_{}_{}_{}_{}_{}_{}",
            self.events,
            self.account_data,
            self.receipts,
            self.typing,
            self.to_device,
            self.device_lists,
            self.presence
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_reject_garbage() {
        let p = StreamPosition {
            events: 12,
            account_data: 3,
            receipts: 4,
            typing: 5,
            to_device: 6,
            device_lists: 7,
            presence: 8,
        };
        assert_eq!(StreamPosition::parse(&p.to_string()), Some(p));
        assert_eq!(StreamPosition::parse("s7").unwrap().events, 7);
        assert!(StreamPosition::parse("x1_2").is_none());
        assert!(StreamPosition::parse("s1_a").is_none());
        assert!(p.is_after(&StreamPosition { typing: 4, ..p }));
        assert!(!p.is_after(&p));
        assert!(p.is_after(&StreamPosition {
            device_lists: 6,
            ..p
        }));
        assert!(p.is_after(&StreamPosition { presence: 7, ..p }));
    }

    #[test]
    fn tokens_without_the_e2ee_streams_still_parse() {
        let old = StreamPosition::parse("s12_3_4_5").unwrap();
        assert_eq!((old.events, old.typing), (12, 5));
        assert_eq!((old.to_device, old.device_lists), (0, 0));
        let before_presence = StreamPosition::parse("s12_3_4_5_6_7").unwrap();
        assert_eq!(
            (before_presence.device_lists, before_presence.presence),
            (7, 0)
        );
    }
}
