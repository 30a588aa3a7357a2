//! Notification counts for /sync and sliding sync, from the unread notification rows grouped
//! by room and thread (src/storage/push.rs decides which rows are unread: those after the
//! user's unthreaded read receipt and after their receipt in the row's own thread).
//!
//! Without `unread_thread_notifications` in the filter a room's `unread_notifications` counts
//! every thread; with it, `unread_notifications` counts the main timeline only and each thread
//! with something unread gets its own counts (spec: "Receiving notifications", threads).

use std::collections::HashMap;

use serde_json::{json, Map, Value};

/// The main timeline's thread id, as threaded read receipts name it.
pub const MAIN: &str = "main";

/// Unread notifications of one room and thread.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Unread {
    pub notifications: u64,
    pub highlights: u64,
}

impl Unread {
    fn add(&mut self, other: &Unread) {
        self.notifications += other.notifications;
        self.highlights += other.highlights;
    }

    fn json(&self) -> Value {
        json!({ "notification_count": self.notifications, "highlight_count": self.highlights })
    }
}

/// One room's unread notifications, by thread (`MAIN` for the main timeline).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RoomUnread {
    pub threads: HashMap<String, Unread>,
}

impl RoomUnread {
    /// Every thread together: what a client that does not ask for thread counts sees, and
    /// what sliding sync reports.
    pub fn total(&self) -> Unread {
        let mut total = Unread::default();
        for unread in self.threads.values() {
            total.add(unread);
        }
        total
    }

    /// `unread_notifications`, and `unread_thread_notifications` when `by_thread` (absent when
    /// no thread has anything unread).
    pub fn sync_fields(&self, by_thread: bool) -> (Value, Option<Value>) {
        if !by_thread {
            return (self.total().json(), None);
        }
        let main = self.threads.get(MAIN).cloned().unwrap_or_default();
        let threads: Map<String, Value> = self
            .threads
            .iter()
            .filter(|(thread, unread)| *thread != MAIN && unread.notifications > 0)
            .map(|(thread, unread)| (thread.clone(), unread.json()))
            .collect();
        let threads = (!threads.is_empty()).then_some(Value::Object(threads));
        (main.json(), threads)
    }
}
