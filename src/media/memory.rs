//! Small stored thumbnails kept in the isolate's memory, so a thumbnail asked for again (an
//! avatar, a picture in a busy room) costs no object-store read.
//!
//! It is never what authorises an answer: every request still reads the media's row and the
//! thumbnail's row from D1 (in its first statement, with the access token), and only when both
//! say the thumbnail is there to serve (the media exists, is complete, is not quarantined) is
//! memory asked for its bytes. An entry is also tied to what those rows said when it was kept
//! (`Stamp`: the media's `created_ts`, the thumbnail's size and type), so bytes kept before a
//! deletion are not served for anything stored again under the same key later. Deleted media
//! in other isolates is therefore never served from their memory either (their next request
//! finds no row); `forget_media` only frees this isolate's memory early.
//!
//! Bounds (docs/design.md, "Media"): at most `MAX_BYTES` of thumbnails (bytes, keys and types
//! counted), `MAX_ENTRIES` entries and `MAX_ENTRY_BYTES` per thumbnail; the least recently used
//! goes first.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};

/// All kept thumbnails together. A Worker isolate has 128 MB; making one thumbnail already
/// holds an original of up to 20 MB and its decoded pixels, so the memory stays well below that.
pub const MAX_BYTES: usize = 8 * 1024 * 1024;
/// Entries at most: avatars (32x32, 96x96) are a few kilobytes each, so 8 MB of them would
/// otherwise be many thousand small entries.
pub const MAX_ENTRIES: usize = 2048;
/// A bigger thumbnail is served from the store as before (an 800x600 photo can be larger): one
/// entry never evicts more than a small share of the rest.
pub const MAX_ENTRY_BYTES: usize = 256 * 1024;
/// What an entry costs besides its bytes, key and type (the maps' own records).
const ENTRY_OVERHEAD: usize = 64;

/// What the D1 rows said of a thumbnail when it was kept: its bytes are served only to a
/// request whose rows say the same.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    /// The media row's `created_ts` (for remote media, when it was cached).
    pub media_created_ts: i64,
    /// The thumbnail row's `size`.
    pub size: i64,
}

struct Entry {
    stamp: Stamp,
    content_type: String,
    bytes: Vec<u8>,
    /// Its place in `Memory::by_use`.
    used: u64,
}

impl Entry {
    fn cost(&self, key: &str) -> usize {
        self.bytes.len() + key.len() + self.content_type.len() + ENTRY_OVERHEAD
    }
}

/// A bounded least-recently-used map from thumbnail keys to their bytes.
pub struct Memory {
    max_bytes: usize,
    max_entries: usize,
    max_entry_bytes: usize,
    entries: HashMap<String, Entry>,
    /// Use counter -> key, oldest first.
    by_use: BTreeMap<u64, String>,
    bytes: usize,
    clock: u64,
}

impl Memory {
    pub fn new(max_bytes: usize, max_entries: usize, max_entry_bytes: usize) -> Self {
        Memory {
            max_bytes,
            max_entries,
            max_entry_bytes,
            entries: HashMap::new(),
            by_use: BTreeMap::new(),
            bytes: 0,
            clock: 0,
        }
    }

    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    /// The bytes kept under `key` when they were kept under the same `stamp` and type; an entry
    /// kept under another is dropped.
    pub fn recall(&mut self, key: &str, stamp: Stamp, content_type: &str) -> Option<Vec<u8>> {
        let entry = self.entries.get(key)?;
        if entry.stamp != stamp || entry.content_type != content_type {
            self.remove(key);
            return None;
        }
        let used = self.tick();
        let entry = self.entries.get_mut(key).expect("found above");
        self.by_use.remove(&entry.used);
        entry.used = used;
        self.by_use.insert(used, key.to_owned());
        Some(entry.bytes.clone())
    }

    /// Keeps `bytes` under `key`, evicting the least recently used until the bounds hold; bytes
    /// over the per-entry bound, or not of the stamp's size, are not kept.
    pub fn keep(&mut self, key: &str, stamp: Stamp, content_type: &str, bytes: &[u8]) {
        if bytes.len() > self.max_entry_bytes || stamp.size != bytes.len() as i64 {
            return;
        }
        self.remove(key);
        let used = self.tick();
        let entry = Entry {
            stamp,
            content_type: content_type.to_owned(),
            bytes: bytes.to_vec(),
            used,
        };
        let cost = entry.cost(key);
        if cost > self.max_bytes {
            return;
        }
        while self.bytes + cost > self.max_bytes || self.entries.len() >= self.max_entries {
            let Some((_, oldest)) = self.by_use.pop_first() else {
                break;
            };
            if let Some(gone) = self.entries.remove(&oldest) {
                self.bytes -= gone.cost(&oldest);
            }
        }
        self.bytes += cost;
        self.by_use.insert(used, key.to_owned());
        self.entries.insert(key.to_owned(), entry);
    }

    fn remove(&mut self, key: &str) {
        if let Some(entry) = self.entries.remove(key) {
            self.by_use.remove(&entry.used);
            self.bytes -= entry.cost(key);
        }
    }

    /// Drops every entry whose key starts with `prefix` (one piece of media's thumbnails).
    pub fn forget_prefix(&mut self, prefix: &str) {
        let keys: Vec<String> = self
            .entries
            .keys()
            .filter(|key| key.starts_with(prefix))
            .cloned()
            .collect();
        for key in keys {
            self.remove(&key);
        }
    }

    /// What is kept: entries and their cost in bytes.
    pub fn usage(&self) -> (usize, usize) {
        (self.entries.len(), self.bytes)
    }
}

thread_local! {
    // One per isolate: the Worker runs one thread.
    static MEMORY: RefCell<Memory> = RefCell::new(Memory::new(MAX_BYTES, MAX_ENTRIES, MAX_ENTRY_BYTES));
}

/// The isolate's bytes of the thumbnail stored under `key`, when kept under `stamp`.
pub fn recall(key: &str, stamp: Stamp, content_type: &str) -> Option<Vec<u8>> {
    MEMORY.with(|memory| memory.borrow_mut().recall(key, stamp, content_type))
}

/// Keeps the bytes of the thumbnail stored under `key` (small ones only).
pub fn keep(key: &str, stamp: Stamp, content_type: &str, bytes: &[u8]) {
    MEMORY.with(|memory| memory.borrow_mut().keep(key, stamp, content_type, bytes));
}

/// Frees this isolate's memory of a piece of media's thumbnails (it was deleted).
pub fn forget_media(origin: &str, media_id: &str) {
    let prefix = super::thumbnails_prefix(origin, media_id);
    MEMORY.with(|memory| memory.borrow_mut().forget_prefix(&prefix));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(size: usize) -> Stamp {
        Stamp {
            media_created_ts: 7,
            size: size as i64,
        }
    }

    #[test]
    fn kept_bytes_are_recalled_only_under_the_same_stamp_and_type() {
        let mut memory = Memory::new(1 << 20, 10, 1 << 10);
        memory.keep("a", stamp(3), "image/png", b"abc");
        assert_eq!(
            memory.recall("a", stamp(3), "image/png"),
            Some(b"abc".to_vec())
        );
        // The rows now say something else (the media stored again later): not served, and
        // dropped.
        let later = Stamp {
            media_created_ts: 8,
            ..stamp(3)
        };
        assert_eq!(memory.recall("a", later, "image/png"), None);
        assert_eq!(memory.usage().0, 0);
        memory.keep("a", stamp(3), "image/png", b"abc");
        assert_eq!(memory.recall("a", stamp(3), "image/jpeg"), None);
        memory.keep("a", stamp(3), "image/png", b"abc");
        assert_eq!(memory.recall("a", stamp(4), "image/png"), None);
        assert_eq!(memory.recall("b", stamp(3), "image/png"), None);
    }

    #[test]
    fn big_thumbnails_and_bytes_not_of_the_rows_size_are_not_kept() {
        let mut memory = Memory::new(1 << 20, 10, 4);
        memory.keep("big", stamp(5), "image/png", b"12345");
        memory.keep("short", stamp(4), "image/png", b"123");
        assert_eq!(memory.usage(), (0, 0));
    }

    #[test]
    fn the_least_recently_used_goes_first_when_entries_are_full() {
        let mut memory = Memory::new(1 << 20, 3, 1 << 10);
        for key in ["a", "b", "c"] {
            memory.keep(key, stamp(1), "t/t", b"x");
        }
        // `a` used again: `b` is now the oldest.
        assert!(memory.recall("a", stamp(1), "t/t").is_some());
        memory.keep("d", stamp(1), "t/t", b"x");
        assert_eq!(memory.usage().0, 3);
        assert!(memory.recall("b", stamp(1), "t/t").is_none());
        for key in ["a", "c", "d"] {
            assert!(memory.recall(key, stamp(1), "t/t").is_some(), "{key}");
        }
    }

    #[test]
    fn the_byte_bound_holds_whatever_is_kept() {
        let one = 100 + 2 + 3 + ENTRY_OVERHEAD;
        let mut memory = Memory::new(3 * one, 100, 1 << 10);
        for i in 0..50 {
            memory.keep(&format!("k{}", i % 10), stamp(100), "t/t", &[i as u8; 100]);
            let (entries, bytes) = memory.usage();
            assert!(bytes <= 3 * one && entries <= 3, "{entries} {bytes}");
        }
        // The three most recent are the ones kept, with their latest bytes.
        assert_eq!(memory.usage(), (3, 3 * one));
        assert_eq!(memory.recall("k9", stamp(100), "t/t"), Some(vec![49; 100]));
        assert!(memory.recall("k6", stamp(100), "t/t").is_none());
        // Replacing an entry does not count it twice.
        memory.keep("k9", stamp(100), "t/t", &[1; 100]);
        assert_eq!(memory.usage(), (3, 3 * one));
    }

    #[test]
    fn forgetting_media_drops_its_thumbnails_only() {
        let key = |id: &str, w: u32| crate::media::thumbnail_key("hs", id, w, w, "crop");
        for (id, w) in [("m1", 32), ("m1", 96), ("m10", 32), ("m2", 32)] {
            keep(&key(id, w), stamp(1), "t/t", b"x");
        }
        forget_media("hs", "m1");
        assert!(recall(&key("m1", 32), stamp(1), "t/t").is_none());
        assert!(recall(&key("m1", 96), stamp(1), "t/t").is_none());
        assert!(recall(&key("m10", 32), stamp(1), "t/t").is_some());
        assert!(recall(&key("m2", 32), stamp(1), "t/t").is_some());
    }
}
