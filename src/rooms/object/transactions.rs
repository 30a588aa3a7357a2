//! The room's client transaction ids of the last day, in the room object's memory: a retried
//! send (same user, device and transaction id) gets the first event's id back (spec:
//! "Transaction identifiers"), and no event is stored twice.
//!
//! The ids are stored in the events' own rows (`txn_user`, `txn_device`, `txn_id`), not in a
//! row of their own: a row per message would be one more row written per message, and rows
//! written are what caps the free plan (docs/benchmarks.md). The object is the room's only
//! writer, so its memory is the one place a send has to be checked against; it is rebuilt from
//! the event rows whenever the engine is (`storage::rooms::load`, in the pass that reads the
//! room's state events), so an evicted or reset object forgets nothing it must remember.
//!
//! Remembered for a day after the event's `origin_server_ts`, as Synapse does: a retry after
//! that is a new send.

use std::collections::HashMap;

use crate::rooms::Pdu;
use crate::storage::rooms::SentTransaction;

/// How long a transaction id is remembered.
pub(super) const KEEP_MS: u64 = 24 * 3_600_000;

#[derive(Default)]
pub(super) struct Transactions {
    /// `(user, device, transaction id)` to `(event id, ts)`.
    sent: HashMap<(String, String, String), (String, u64)>,
}

impl Transactions {
    pub(super) fn from_stored(rows: Vec<SentTransaction>) -> Self {
        let mut out = Self::default();
        for row in rows {
            out.record(
                &row.user_id,
                &row.device_id,
                &row.txn_id,
                &row.event_id,
                row.ts,
            );
        }
        out
    }

    /// The event a transaction of `user`'s `device` already sent here, if any.
    pub(super) fn find(&self, user: &str, device: &str, txn: &str) -> Option<String> {
        let key = (user.to_owned(), device.to_owned(), txn.to_owned());
        self.sent.get(&key).map(|(event_id, _)| event_id.clone())
    }

    /// Remembers the transaction of `user`'s `device` that sent `pdu`, once it is stored.
    pub(super) fn record_sent(&mut self, user: &str, device: &str, txn: &str, pdu: &Pdu) {
        let ts = u64::from(ruma::state_res::Event::origin_server_ts(pdu).get());
        self.record(user, device, txn, pdu.event_id().as_str(), ts);
    }

    /// Remembers a transaction once its event is stored. Ids older than a day are dropped now
    /// and then (each time the map has doubled since), so memory follows a day of the room's
    /// local sends.
    pub(super) fn record(&mut self, user: &str, device: &str, txn: &str, event_id: &str, ts: u64) {
        let key = (user.to_owned(), device.to_owned(), txn.to_owned());
        self.sent.insert(key, (event_id.to_owned(), ts));
        if self.sent.len().is_power_of_two() && self.sent.len() >= 1024 {
            let newest = self.sent.values().map(|(_, ts)| *ts).max().unwrap_or(ts);
            self.sent.retain(|_, (_, sent)| *sent + KEEP_MS >= newest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transaction_is_found_for_its_user_and_device_only_and_forgotten_after_a_day() {
        let mut sent = Transactions::from_stored(vec![SentTransaction {
            user_id: "@a:x".into(),
            device_id: "D".into(),
            txn_id: "t1".into(),
            event_id: "$1".into(),
            ts: 0,
        }]);
        assert_eq!(sent.find("@a:x", "D", "t1").as_deref(), Some("$1"));
        assert_eq!(sent.find("@a:x", "E", "t1"), None, "another device's");
        assert_eq!(sent.find("@b:x", "D", "t1"), None, "another user's");
        // Enough newer sends a day later to prune: the first is gone, the newer ones stay.
        for i in 0..1023 {
            sent.record(
                "@a:x",
                "D",
                &format!("n{i}"),
                &format!("$n{i}"),
                KEEP_MS + 1,
            );
        }
        assert_eq!(sent.find("@a:x", "D", "t1"), None);
        assert_eq!(sent.find("@a:x", "D", "n7").as_deref(), Some("$n7"));
    }
}
