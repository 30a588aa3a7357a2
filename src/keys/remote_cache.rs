//! Other servers' verify keys remembered in memory, one cache per isolate (a Worker isolate or a
//! room object's), in front of the `remote_server_keys` table: checking a request's X-Matrix
//! signature and a PDU's signatures would otherwise read D1 once per request and per PDU.
//!
//! What may be served from memory is exactly what D1 would have answered:
//! - an entry is a copy of a D1 row (public key, `valid_until_ts`, `expired_ts`), taken when this
//!   isolate read or wrote the row; the key is usable for a signature made at `at_ts` only while
//!   `at_ts` is before the key's end (`expired_ts` when the origin retired it, else
//!   `valid_until_ts`), the same rule as the D1 path. A signature made after that end misses the
//!   cache, which sends the caller to D1 and, failing that, to the origin's key server;
//! - a key id names one key for good (spec: key ids are unique per key), so a copy cannot be
//!   wrong about the key itself. What another isolate may learn later is an earlier end (the
//!   origin moved the key to `old_verify_keys` with an `expired_ts`): entries are re-read from
//!   D1 after `RECHECK_MS`, which bounds how long an isolate may go on trusting a key its origin
//!   has retired since;
//! - misses are not remembered: an unknown key id is looked up every time, as before.

use std::collections::HashMap;

/// How long a remembered key is served before it is read from D1 again.
pub const RECHECK_MS: u64 = 10 * 60 * 1000;
/// At most this many keys per isolate (a handful per server the isolate hears from).
pub const MAX_ENTRIES: usize = 1024;

#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    public_key: String,
    valid_until_ts: u64,
    expired_ts: Option<u64>,
    read_ms: u64,
}

/// A stored key row: the public key (unpadded base64), `valid_until_ts`, `expired_ts`.
pub type KeyRow = (String, u64, Option<u64>);

/// Whether a key row may verify a signature made at `at_ts`.
pub fn usable_at(row: &KeyRow, at_ts: u64) -> bool {
    at_ts <= row.2.unwrap_or(row.1)
}

#[derive(Default)]
pub struct KeyCache {
    entries: HashMap<(String, String), Entry>,
}

impl KeyCache {
    /// The key `key_id` of `server` for a signature made at `at_ts`, when remembered, read from
    /// D1 less than `RECHECK_MS` before `now`, and usable at `at_ts`.
    pub fn usable(&self, server: &str, key_id: &str, at_ts: u64, now: u64) -> Option<String> {
        let entry = self.entries.get(&(server.to_owned(), key_id.to_owned()))?;
        let fresh = now.saturating_sub(entry.read_ms) < RECHECK_MS;
        let row = (
            entry.public_key.clone(),
            entry.valid_until_ts,
            entry.expired_ts,
        );
        (fresh && usable_at(&row, at_ts)).then_some(row.0)
    }

    /// Remembers a row as D1 holds it at `now`.
    pub fn remember(&mut self, server: &str, key_id: &str, row: &KeyRow, now: u64) {
        if self.entries.len() >= MAX_ENTRIES {
            self.entries
                .retain(|_, e| now.saturating_sub(e.read_ms) < RECHECK_MS);
            if self.entries.len() >= MAX_ENTRIES {
                self.entries.clear();
            }
        }
        self.entries.insert(
            (server.to_owned(), key_id.to_owned()),
            Entry {
                public_key: row.0.clone(),
                valid_until_ts: row.1,
                expired_ts: row.2,
                read_ms: now,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_700_000_000_000;

    #[test]
    fn a_remembered_key_serves_signatures_made_before_its_end_only() {
        let mut cache = KeyCache::default();
        cache.remember(
            "a.example",
            "ed25519:1",
            &("KEY".into(), NOW + 1000, None),
            NOW,
        );
        assert_eq!(
            cache.usable("a.example", "ed25519:1", NOW, NOW).as_deref(),
            Some("KEY")
        );
        assert_eq!(
            cache.usable("a.example", "ed25519:1", NOW + 1000, NOW),
            Some("KEY".into())
        );
        // Signed after valid_until_ts: back to D1 (and the key server) as without the cache.
        assert_eq!(
            cache.usable("a.example", "ed25519:1", NOW + 1001, NOW),
            None
        );
        assert_eq!(cache.usable("a.example", "ed25519:2", NOW, NOW), None);
        assert_eq!(cache.usable("b.example", "ed25519:1", NOW, NOW), None);
    }

    #[test]
    fn a_retired_key_ends_at_its_expiry_not_its_validity() {
        let mut cache = KeyCache::default();
        cache.remember(
            "a.example",
            "ed25519:old",
            &("OLD".into(), NOW + 10_000, Some(NOW - 5)),
            NOW,
        );
        assert_eq!(
            cache.usable("a.example", "ed25519:old", NOW - 5, NOW),
            Some("OLD".into())
        );
        assert_eq!(cache.usable("a.example", "ed25519:old", NOW, NOW), None);
    }

    #[test]
    fn entries_are_read_again_after_the_recheck_interval() {
        let mut cache = KeyCache::default();
        let row = ("KEY".into(), NOW + 2 * RECHECK_MS, None);
        cache.remember("a.example", "ed25519:1", &row, NOW);
        let later = NOW + RECHECK_MS - 1;
        assert!(cache
            .usable("a.example", "ed25519:1", later, later)
            .is_some());
        let later = NOW + RECHECK_MS;
        assert_eq!(cache.usable("a.example", "ed25519:1", later, later), None);
        // A re-read (here: the origin retired the key meanwhile) replaces the entry.
        cache.remember(
            "a.example",
            "ed25519:1",
            &("KEY".into(), NOW + 2 * RECHECK_MS, Some(NOW + 10)),
            later,
        );
        assert_eq!(cache.usable("a.example", "ed25519:1", later, later), None);
        assert!(cache.usable("a.example", "ed25519:1", NOW, later).is_some());
    }

    #[test]
    fn the_cache_stays_bounded() {
        let mut cache = KeyCache::default();
        for i in 0..(MAX_ENTRIES + 10) {
            cache.remember(
                &format!("s{i}.example"),
                "ed25519:1",
                &("K".into(), NOW + 1000, None),
                NOW,
            );
        }
        assert!(cache.entries.len() <= MAX_ENTRIES);
        assert!(cache
            .usable(
                &format!("s{}.example", MAX_ENTRIES + 9),
                "ed25519:1",
                NOW,
                NOW
            )
            .is_some());
    }
}
