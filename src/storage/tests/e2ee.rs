//! `storage::e2ee` (device, one-time, fallback and cross-signing keys, signatures, the
//! to-device inbox, the device-list stream), `storage::e2ee_remote` (other servers' users'
//! devices, what we told other servers) and `storage::e2ee_backup` (server-side key backup).

use serde_json::json;

use super::{login, run, setup, user, Room, ALICE, BOB, CAROL, DAVE};
use crate::e2ee::backup::{KeyBackupData, SessionKey};
use crate::e2ee::device_keys::UploadedKey;
use crate::storage::e2ee::{self, SignatureRow};
use crate::storage::{e2ee_backup, e2ee_remote, sync};

fn key(algorithm: &str, key_id: &str) -> UploadedKey {
    UploadedKey {
        algorithm: algorithm.to_owned(),
        key_id: key_id.to_owned(),
        key: json!({ "key": format!("{algorithm}:{key_id}") }),
    }
}

// --- device keys and one-time keys ---------------------------------------------------------

#[test]
fn uploading_device_keys_changes_the_device_list_only_when_they_differ() {
    run(async {
        let (_server, db) = setup();
        let (_, changed) = e2ee::upload(&db, ALICE, "DEV", Some(r#"{"v":1}"#), &[], &[])
            .await
            .unwrap();
        assert!(changed);
        let first = e2ee_remote::local_stream_id(&db, ALICE).await.unwrap();
        assert!(first > 0);
        let (_, changed) = e2ee::upload(&db, ALICE, "DEV", Some(r#"{"v":1}"#), &[], &[])
            .await
            .unwrap();
        assert!(!changed);
        assert_eq!(
            e2ee_remote::local_stream_id(&db, ALICE).await.unwrap(),
            first
        );
        let (_, changed) = e2ee::upload(&db, ALICE, "DEV", Some(r#"{"v":2}"#), &[], &[])
            .await
            .unwrap();
        assert!(changed);
        assert!(e2ee_remote::local_stream_id(&db, ALICE).await.unwrap() > first);
        let keys = e2ee::device_keys(&db, &[(ALICE, "DEV")]).await.unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].key_json, r#"{"v":2}"#);
        // Nothing to upload answers the counts without writing.
        let (counts, changed) = e2ee::upload(&db, ALICE, "DEV", None, &[], &[])
            .await
            .unwrap();
        assert!(!changed);
        assert_eq!(counts["signed_curve25519"], 0);
    })
}

#[test]
fn one_time_key_counts_ignore_a_retried_upload() {
    run(async {
        let (_server, db) = setup();
        let keys = [
            key("signed_curve25519", "AAA"),
            key("signed_curve25519", "AAB"),
            key("curve25519", "X"),
        ];
        let (counts, changed) = e2ee::upload(&db, ALICE, "DEV", None, &keys, &[])
            .await
            .unwrap();
        assert!(!changed);
        assert_eq!(counts["signed_curve25519"], 2);
        assert_eq!(counts["curve25519"], 1);
        let (counts, _) = e2ee::upload(&db, ALICE, "DEV", None, &keys[..1], &[])
            .await
            .unwrap();
        assert_eq!(counts["signed_curve25519"], 2);
        let (counts, fallback) = e2ee::key_counts(&db, ALICE, "OTHER").await.unwrap();
        assert_eq!(counts.len(), 1);
        assert_eq!(counts["signed_curve25519"], 0);
        assert!(fallback.is_empty());
    })
}

#[test]
fn a_one_time_key_is_claimed_once_oldest_first_then_the_fallback_key() {
    run(async {
        let (_server, db) = setup();
        let otks = [
            key("signed_curve25519", "first"),
            key("signed_curve25519", "second"),
        ];
        let fallback = [key("signed_curve25519", "fb")];
        e2ee::upload(&db, ALICE, "DEV", None, &otks, &fallback)
            .await
            .unwrap();
        let (_, fallbacks) = e2ee::key_counts(&db, ALICE, "DEV").await.unwrap();
        assert_eq!(fallbacks, ["signed_curve25519"]);
        let wanted = [(ALICE, "DEV", "signed_curve25519")];
        let claimed = e2ee::claim_one_time_keys(&db, &wanted).await.unwrap();
        assert_eq!(claimed.len(), 1);
        assert_eq!(
            (claimed[0].user_id.as_str(), claimed[0].device_id.as_str()),
            (ALICE, "DEV")
        );
        assert_eq!(claimed[0].key_id, "first");
        assert_eq!(claimed[0].algorithm, "signed_curve25519");
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&claimed[0].key_json).unwrap(),
            json!({ "key": "signed_curve25519:first" })
        );
        let claimed = e2ee::claim_one_time_keys(&db, &wanted).await.unwrap();
        assert_eq!(claimed[0].key_id, "second");
        assert!(e2ee::claim_one_time_keys(&db, &wanted)
            .await
            .unwrap()
            .is_empty());
        // Out of one-time keys: the fallback key, which may be handed out again.
        let claimed = e2ee::claim_fallback_keys(&db, &wanted).await.unwrap();
        assert_eq!(claimed.len(), 1);
        assert_eq!(claimed[0].key_id, "fb");
        let (_, fallbacks) = e2ee::key_counts(&db, ALICE, "DEV").await.unwrap();
        assert!(fallbacks.is_empty(), "a claimed fallback key is used");
        assert_eq!(
            e2ee::claim_fallback_keys(&db, &wanted).await.unwrap().len(),
            1
        );
        // The same fallback key again keeps it used; a new one is unused.
        e2ee::upload(&db, ALICE, "DEV", None, &[], &fallback)
            .await
            .unwrap();
        assert!(e2ee::key_counts(&db, ALICE, "DEV")
            .await
            .unwrap()
            .1
            .is_empty());
        e2ee::upload(
            &db,
            ALICE,
            "DEV",
            None,
            &[],
            &[key("signed_curve25519", "fb2")],
        )
        .await
        .unwrap();
        assert_eq!(
            e2ee::key_counts(&db, ALICE, "DEV").await.unwrap().1,
            ["signed_curve25519"]
        );
        assert!(e2ee::claim_one_time_keys(&db, &[])
            .await
            .unwrap()
            .is_empty());
    })
}

#[test]
fn one_claim_takes_a_key_of_each_device_asked_for() {
    run(async {
        let (_server, db) = setup();
        e2ee::upload(
            &db,
            ALICE,
            "A1",
            None,
            &[key("signed_curve25519", "a")],
            &[],
        )
        .await
        .unwrap();
        e2ee::upload(
            &db,
            ALICE,
            "A2",
            None,
            &[key("signed_curve25519", "b")],
            &[],
        )
        .await
        .unwrap();
        e2ee::upload(&db, BOB, "B1", None, &[key("signed_curve25519", "c")], &[])
            .await
            .unwrap();
        let wanted = [
            (ALICE, "A1", "signed_curve25519"),
            (ALICE, "A2", "signed_curve25519"),
            (BOB, "B1", "signed_curve25519"),
            (BOB, "NONE", "signed_curve25519"),
        ];
        let mut claimed: Vec<String> = e2ee::claim_one_time_keys(&db, &wanted)
            .await
            .unwrap()
            .into_iter()
            .map(|k| format!("{} {} {}", k.user_id, k.device_id, k.key_id))
            .collect();
        claimed.sort();
        assert_eq!(
            claimed,
            [
                format!("{ALICE} A1 a"),
                format!("{ALICE} A2 b"),
                format!("{BOB} B1 c")
            ]
        );
    })
}

#[test]
fn device_keys_are_queried_per_device_or_for_all_of_a_user_s_devices() {
    run(async {
        let (_server, db) = setup();
        user(&db, ALICE).await;
        login(&db, ALICE, "LAPTOP").await;
        e2ee::upload(&db, ALICE, "DEV", Some(r#"{"d":"DEV"}"#), &[], &[])
            .await
            .unwrap();
        e2ee::upload(&db, ALICE, "LAPTOP", Some(r#"{"d":"LAPTOP"}"#), &[], &[])
            .await
            .unwrap();
        e2ee::upload(&db, BOB, "B", Some(r#"{"d":"B"}"#), &[], &[])
            .await
            .unwrap();
        let mut all: Vec<(String, Option<String>)> = e2ee::device_keys(&db, &[(ALICE, "")])
            .await
            .unwrap()
            .into_iter()
            .map(|k| (k.device_id, k.display_name))
            .collect();
        all.sort();
        assert_eq!(
            all,
            [
                ("DEV".to_owned(), Some("phone".to_owned())),
                ("LAPTOP".to_owned(), None)
            ]
        );
        let some = e2ee::device_keys(&db, &[(ALICE, "LAPTOP"), (BOB, ""), (CAROL, "")])
            .await
            .unwrap();
        let mut found: Vec<String> = some
            .iter()
            .map(|k| format!("{} {}", k.user_id, k.device_id))
            .collect();
        found.sort();
        assert_eq!(found, [format!("{ALICE} LAPTOP"), format!("{BOB} B")]);
        // Asking twice for a device lists it once.
        assert_eq!(
            e2ee::device_keys(&db, &[(BOB, ""), (BOB, "B")])
                .await
                .unwrap()
                .len(),
            1
        );
        assert!(e2ee::device_keys(&db, &[]).await.unwrap().is_empty());
    })
}

#[test]
fn cross_signing_keys_and_signatures_are_stored_and_shown_to_whom_they_may_be() {
    run(async {
        let (_server, db) = setup();
        let before = sync::current_position(&db).await.unwrap().device_lists;
        let keys = [
            ("master", "MPUB".to_owned(), r#"{"m":1}"#.to_owned()),
            ("self_signing", "SPUB".to_owned(), r#"{"s":1}"#.to_owned()),
        ];
        e2ee::store_cross_signing_keys(&db, ALICE, &keys)
            .await
            .unwrap();
        assert!(sync::current_position(&db).await.unwrap().device_lists > before);
        let replaced = [("master", "MPUB2".to_owned(), r#"{"m":2}"#.to_owned())];
        e2ee::store_cross_signing_keys(&db, ALICE, &replaced)
            .await
            .unwrap();
        let mut stored: Vec<(String, String)> = e2ee::cross_signing_keys(&db, &[ALICE, BOB])
            .await
            .unwrap()
            .into_iter()
            .map(|k| (k.key_type, k.public_key))
            .collect();
        stored.sort();
        assert_eq!(
            stored,
            [
                ("master".to_owned(), "MPUB2".to_owned()),
                ("self_signing".to_owned(), "SPUB".to_owned())
            ]
        );
        let signature = |target: &str, key: &str, signer: &str, by: &str| SignatureRow {
            target_user_id: target.to_owned(),
            target_key_id: key.to_owned(),
            signer_user_id: signer.to_owned(),
            signer_key_id: by.to_owned(),
            signature: format!("sig of {key} by {by}"),
        };
        let mark = sync::current_position(&db).await.unwrap().device_lists;
        e2ee::store_signatures(
            &db,
            &[
                signature(ALICE, "DEV", ALICE, "ed25519:SPUB"),
                signature(ALICE, "MPUB2", BOB, "ed25519:BOBUSK"),
                signature(ALICE, "MPUB2", CAROL, "ed25519:CAROLUSK"),
            ],
        )
        .await
        .unwrap();
        let now = sync::current_position(&db).await.unwrap();
        assert!(now.device_lists > mark);
        let seen_by = |viewer: &'static str| {
            let db = &db;
            async move {
                let mut rows: Vec<String> = e2ee::signatures(db, &[ALICE], viewer)
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|r| format!("{} {}", r.signer_user_id, r.target_key_id))
                    .collect();
                rows.sort();
                rows
            }
        };
        // Alice's own signatures are public; a user-signing signature only to its author.
        assert_eq!(
            seen_by(BOB).await,
            [format!("{ALICE} DEV"), format!("{BOB} MPUB2")]
        );
        assert_eq!(seen_by(DAVE).await, [format!("{ALICE} DEV")]);
        assert!(e2ee::signatures(&db, &[], ALICE).await.unwrap().is_empty());
        e2ee::store_signatures(&db, &[]).await.unwrap();
    })
}

// --- to-device ------------------------------------------------------------------------------

#[test]
fn to_device_messages_are_queued_once_per_transaction_and_deleted_when_acknowledged() {
    run(async {
        let (_server, db) = setup();
        user(&db, ALICE).await;
        login(&db, ALICE, "LAPTOP").await;
        user(&db, BOB).await;
        let messages = [
            json!([ALICE, "DEV", { "n": 1 }]),
            json!([ALICE, "NO_SUCH_DEVICE", { "n": 2 }]),
            json!([BOB, "*", { "n": 3 }]),
        ];
        let sent = e2ee::send_to_device(&db, CAROL, "C", "m.test", "t1", &messages)
            .await
            .unwrap();
        assert_eq!(sent, (2, true));
        let again = e2ee::send_to_device(&db, CAROL, "C", "m.test", "t1", &messages)
            .await
            .unwrap();
        assert_eq!(again, (0, false));
        // The transaction id is per event type.
        let other = e2ee::send_to_device(&db, CAROL, "C", "m.other", "t1", &messages[..1])
            .await
            .unwrap();
        assert_eq!(other, (1, true));
        let inbox = e2ee::to_device_inbox(&db, ALICE, "DEV", 0, u64::MAX, 10)
            .await
            .unwrap();
        let contents: Vec<(&str, &str, &str)> = inbox
            .iter()
            .map(|m| (m.sender.as_str(), m.kind.as_str(), m.content.as_str()))
            .collect();
        assert_eq!(
            contents,
            [
                (CAROL, "m.test", r#"{"n":1}"#),
                (CAROL, "m.other", r#"{"n":1}"#)
            ]
        );
        assert!(e2ee::to_device_inbox(&db, ALICE, "LAPTOP", 0, u64::MAX, 10)
            .await
            .unwrap()
            .is_empty());
        // A limit and an upper bound; then acknowledging the first deletes it.
        let first = e2ee::to_device_inbox(&db, ALICE, "DEV", 0, u64::MAX, 1)
            .await
            .unwrap();
        assert_eq!(first.len(), 1);
        let acked = first[0].stream_id as u64;
        assert!(e2ee::to_device_inbox(&db, ALICE, "DEV", 0, acked - 1, 10)
            .await
            .unwrap()
            .is_empty());
        let rest = e2ee::to_device_inbox(&db, ALICE, "DEV", acked, u64::MAX, 10)
            .await
            .unwrap();
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].kind, "m.other");
        let from_zero = e2ee::to_device_inbox(&db, ALICE, "DEV", 0, u64::MAX, 10)
            .await
            .unwrap();
        assert_eq!(from_zero.len(), 1, "the acknowledged message is gone");
        assert_eq!(
            e2ee::to_device_inbox(&db, BOB, "DEV", 0, u64::MAX, 10)
                .await
                .unwrap()
                .len(),
            1
        );
    })
}

// --- device-list changes --------------------------------------------------------------------

#[test]
fn device_list_changes_reach_those_sharing_a_room_and_leavers_are_reported() {
    run(async {
        let (_server, db) = setup();
        let mut room = Room::create(&db, "one", ALICE, None).await;
        room.join(&db, BOB).await;
        room.join(&db, CAROL).await;
        let since = sync::current_position(&db).await.unwrap();
        for who in [BOB, DAVE] {
            e2ee::upload(&db, who, "D", Some("{}"), &[], &[])
                .await
                .unwrap();
        }
        room.member(&db, CAROL, CAROL, "leave").await;
        let now = sync::current_position(&db).await.unwrap();
        let (changed, left) = e2ee::device_list_delta(&db, ALICE, &since, &now)
            .await
            .unwrap();
        assert_eq!(changed, [BOB]);
        assert_eq!(left, [CAROL]);
        // Someone joining in the gap is new to the others, keys or not.
        let since = now;
        room.join(&db, DAVE).await;
        let now = sync::current_position(&db).await.unwrap();
        let (changed, left) = e2ee::device_list_delta(&db, ALICE, &since, &now)
            .await
            .unwrap();
        assert_eq!(changed, [DAVE]);
        assert!(left.is_empty());
        // And to the one joining, every member is, itself included (for its other devices).
        let (mut changed, _) = e2ee::device_list_delta(&db, DAVE, &since, &now)
            .await
            .unwrap();
        changed.sort();
        assert_eq!(changed, [ALICE, BOB, DAVE]);
        let (changed, left) = e2ee::device_list_delta(&db, ALICE, &now, &now)
            .await
            .unwrap();
        assert!(changed.is_empty() && left.is_empty());
        // Alice leaves a room: who shared only that room with her has left her view; who
        // shares another one with her has not.
        let mut other = Room::create(&db, "two", ALICE, None).await;
        other.join(&db, BOB).await;
        other.join(&db, CAROL).await;
        let since = sync::current_position(&db).await.unwrap();
        other.member(&db, ALICE, ALICE, "leave").await;
        let now = sync::current_position(&db).await.unwrap();
        let (changed, left) = e2ee::device_list_delta(&db, ALICE, &since, &now)
            .await
            .unwrap();
        assert!(changed.is_empty(), "{changed:?}");
        assert_eq!(left, [CAROL]);
        // A message in a room changes no one's device list.
        let since = now;
        room.message(&db, BOB, "hello").await;
        let now = sync::current_position(&db).await.unwrap();
        let (changed, left) = e2ee::device_list_delta(&db, ALICE, &since, &now)
            .await
            .unwrap();
        assert!(changed.is_empty() && left.is_empty());
    })
}

#[test]
fn users_sharing_rooms_are_local_joined_room_mates_and_the_users_themselves() {
    run(async {
        let (_server, db) = setup();
        Room::shared(&db).await;
        let mut sharing = e2ee::users_sharing_rooms(&db, &[DAVE]).await.unwrap();
        sharing.sort();
        assert_eq!(sharing, [ALICE, BOB, DAVE]);
        assert_eq!(
            e2ee::users_sharing_rooms(&db, &[CAROL]).await.unwrap(),
            [CAROL]
        );
    })
}

// --- remote users' devices ------------------------------------------------------------------

#[test]
fn a_remote_user_s_device_list_is_replaced_whole_and_updated_per_device() {
    run(async {
        let (_server, db) = setup();
        let mut room = Room::shared(&db).await;
        assert!(e2ee_remote::tracked_users(&db, &[DAVE])
            .await
            .unwrap()
            .is_empty());
        assert_eq!(
            e2ee_remote::remote_stream_id(&db, DAVE).await.unwrap(),
            None
        );
        e2ee::store_cross_signing_keys(&db, DAVE, &[("user_signing", "U".into(), "{}".into())])
            .await
            .unwrap();
        let devices = [
            ("D1".to_owned(), r#"{"d":1}"#.to_owned()),
            ("D2".to_owned(), r#"{"d":2}"#.to_owned()),
        ];
        let cross = [("master", "M".to_owned(), r#"{"m":1}"#.to_owned())];
        let before = sync::current_position(&db).await.unwrap().device_lists;
        e2ee_remote::replace_remote_devices(&db, DAVE, 7, &devices, &cross)
            .await
            .unwrap();
        assert!(sync::current_position(&db).await.unwrap().device_lists > before);
        assert_eq!(
            e2ee_remote::tracked_users(&db, &[DAVE, BOB]).await.unwrap(),
            [DAVE]
        );
        assert_eq!(
            e2ee_remote::remote_stream_id(&db, DAVE).await.unwrap(),
            Some(7)
        );
        let keys = e2ee::device_keys(&db, &[(DAVE, "")]).await.unwrap();
        assert_eq!(keys.len(), 2);
        let mut kinds: Vec<String> = e2ee::cross_signing_keys(&db, &[DAVE])
            .await
            .unwrap()
            .into_iter()
            .map(|k| k.key_type)
            .collect();
        kinds.sort();
        // A resync never removes the user-signing key (other servers never send it).
        assert_eq!(kinds, ["master", "user_signing"]);

        e2ee_remote::apply_remote_device_update(&db, DAVE, "D3", Some(r#"{"d":3}"#), 8)
            .await
            .unwrap();
        e2ee_remote::apply_remote_device_update(&db, DAVE, "D1", None, 9)
            .await
            .unwrap();
        assert_eq!(
            e2ee_remote::remote_stream_id(&db, DAVE).await.unwrap(),
            Some(9)
        );
        let mut ids: Vec<String> = e2ee::device_keys(&db, &[(DAVE, "")])
            .await
            .unwrap()
            .into_iter()
            .map(|k| k.device_id)
            .collect();
        ids.sort();
        assert_eq!(ids, ["D2", "D3"]);
        // Once dave shares no room with our users, his server stops telling us of changes:
        // the cached list is no longer answered from.
        room.member(&db, DAVE, DAVE, "leave").await;
        assert!(e2ee_remote::tracked_users(&db, &[DAVE])
            .await
            .unwrap()
            .is_empty());
        // A second resync replaces every device.
        e2ee_remote::replace_remote_devices(&db, DAVE, 10, &devices[..1], &[])
            .await
            .unwrap();
        let keys = e2ee::device_keys(&db, &[(DAVE, "")]).await.unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].device_id, "D1");
        // The same list again moves the user's position but is no news to anyone.
        let before = sync::current_position(&db).await.unwrap().device_lists;
        e2ee_remote::replace_remote_devices(&db, DAVE, 11, &devices[..1], &[])
            .await
            .unwrap();
        assert_eq!(
            sync::current_position(&db).await.unwrap().device_lists,
            before
        );
        assert_eq!(
            e2ee_remote::remote_stream_id(&db, DAVE).await.unwrap(),
            Some(11)
        );
        // He joins again. His server told us nothing while no room was shared, so the list we
        // hold is not answered from until his server confirms it (a resync or an update).
        room.member(&db, DAVE, DAVE, "join").await;
        assert!(e2ee_remote::tracked_users(&db, &[DAVE])
            .await
            .unwrap()
            .is_empty());
        e2ee_remote::apply_remote_device_update(&db, DAVE, "D4", Some(r#"{"d":4}"#), 12)
            .await
            .unwrap();
        assert_eq!(
            e2ee_remote::tracked_users(&db, &[DAVE]).await.unwrap(),
            [DAVE]
        );
    })
}

#[test]
fn a_resync_that_brings_new_keys_shows_in_the_delta_of_those_sharing_a_room() {
    async fn changed_for_alice(
        db: &crate::storage::Db,
        since: &crate::sync::token::StreamPosition,
    ) -> Vec<String> {
        let now = sync::current_position(db).await.unwrap();
        e2ee::device_list_delta(db, ALICE, since, &now)
            .await
            .unwrap()
            .0
    }
    run(async {
        let (_server, db) = setup();
        let mut room = Room::create(&db, "shared", ALICE, None).await;
        room.join(&db, DAVE).await;
        let since = sync::current_position(&db).await.unwrap();
        // A first resync of a user without keys changes nothing.
        e2ee_remote::replace_remote_devices(&db, DAVE, 1, &[], &[])
            .await
            .unwrap();
        assert!(changed_for_alice(&db, &since).await.is_empty());
        let devices = [("D1".to_owned(), r#"{"d":1}"#.to_owned())];
        e2ee_remote::replace_remote_devices(&db, DAVE, 2, &devices, &[])
            .await
            .unwrap();
        assert_eq!(changed_for_alice(&db, &since).await, [DAVE]);
    })
}

#[test]
fn rooms_shared_with_remote_users_decide_who_hears_of_device_changes() {
    run(async {
        let (_server, db) = setup();
        let mut room = Room::create(&db, "one", ALICE, None).await;
        room.join(&db, DAVE).await;
        room.join(&db, "@erin:other.example").await;
        assert!(e2ee_remote::shares_room_with_local(&db, DAVE, "test.local")
            .await
            .unwrap());
        assert!(
            !e2ee_remote::shares_room_with_local(&db, "@zed:remote.example", "test.local")
                .await
                .unwrap()
        );
        let mut servers = e2ee_remote::servers_sharing_rooms(&db, ALICE, "test.local")
            .await
            .unwrap();
        servers.sort();
        assert_eq!(servers, ["other.example", "remote.example"]);
        assert!(e2ee_remote::servers_sharing_rooms(&db, BOB, "test.local")
            .await
            .unwrap()
            .is_empty());
    })
}

#[test]
fn the_sent_device_list_position_is_taken_once_per_change() {
    run(async {
        let (_server, db) = setup();
        assert_eq!(e2ee_remote::local_stream_id(&db, ALICE).await.unwrap(), 0);
        assert_eq!(
            e2ee_remote::take_sent_position(&db, ALICE).await.unwrap(),
            (None, None)
        );
        e2ee::upload(&db, ALICE, "DEV", Some("{}"), &[], &[])
            .await
            .unwrap();
        let first = e2ee_remote::local_stream_id(&db, ALICE).await.unwrap();
        assert_eq!(
            e2ee_remote::take_sent_position(&db, ALICE).await.unwrap(),
            (Some(first), None)
        );
        e2ee::upload(&db, ALICE, "DEV", Some("{\"v\":2}"), &[], &[])
            .await
            .unwrap();
        let second = e2ee_remote::local_stream_id(&db, ALICE).await.unwrap();
        assert_eq!(
            e2ee_remote::take_sent_position(&db, ALICE).await.unwrap(),
            (Some(second), Some(first))
        );
        assert_eq!(
            e2ee_remote::take_sent_position(&db, ALICE).await.unwrap(),
            (Some(second), Some(second))
        );
    })
}

#[test]
fn to_device_messages_from_other_servers_reach_known_devices() {
    run(async {
        let (_server, db) = setup();
        user(&db, ALICE).await;
        login(&db, ALICE, "LAPTOP").await;
        let messages = [
            json!([ALICE, "*", { "n": 1 }]),
            json!([BOB, "*", { "n": 2 }]),
        ];
        assert_eq!(
            e2ee_remote::deliver_to_device(&db, DAVE, "m.test", &messages)
                .await
                .unwrap(),
            2
        );
        let inbox = e2ee::to_device_inbox(&db, ALICE, "LAPTOP", 0, u64::MAX, 10)
            .await
            .unwrap();
        assert_eq!(inbox.len(), 1);
        assert_eq!(inbox[0].sender, DAVE);
        assert_eq!(
            e2ee_remote::deliver_to_device(&db, DAVE, "m.test", &[])
                .await
                .unwrap(),
            0
        );
    })
}

// --- key backup -----------------------------------------------------------------------------

fn session(room: &str, id: &str, index: u64, forwarded: u64, verified: bool) -> SessionKey {
    SessionKey {
        room_id: room.to_owned(),
        session_id: id.to_owned(),
        data: KeyBackupData {
            first_message_index: index,
            forwarded_count: forwarded,
            is_verified: verified,
            session_data: json!({ "index": index, "verified": verified }),
        },
    }
}

#[test]
fn backup_versions_are_per_user_and_the_latest_is_the_default() {
    run(async {
        let (_server, db) = setup();
        let v1 = e2ee_backup::create_version(&db, ALICE, "m.megolm_backup.v1", "{}")
            .await
            .unwrap();
        let v2 = e2ee_backup::create_version(&db, ALICE, "m.megolm_backup.v1", r#"{"a":2}"#)
            .await
            .unwrap();
        let bob = e2ee_backup::create_version(&db, BOB, "m.megolm_backup.v1", "{}")
            .await
            .unwrap();
        assert!(v2 > v1);
        let latest = e2ee_backup::version(&db, ALICE, None)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (latest.version, latest.auth_data.as_str(), latest.count),
            (v2, r#"{"a":2}"#, 0)
        );
        assert!(e2ee_backup::version(&db, ALICE, Some(bob))
            .await
            .unwrap()
            .is_none());
        assert!(e2ee_backup::update_version(&db, ALICE, v1, r#"{"a":1}"#)
            .await
            .unwrap());
        assert!(!e2ee_backup::update_version(&db, BOB, v1, "{}")
            .await
            .unwrap());
        let first = e2ee_backup::version(&db, ALICE, Some(v1))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(first.auth_data, r#"{"a":1}"#);
        // Deleting is for the owner only, and the latest is the one before afterwards.
        assert!(!e2ee_backup::delete_version(&db, BOB, v2).await.unwrap());
        assert!(e2ee_backup::delete_version(&db, ALICE, v2).await.unwrap());
        assert!(!e2ee_backup::delete_version(&db, ALICE, v2).await.unwrap());
        assert!(e2ee_backup::version(&db, ALICE, Some(v2))
            .await
            .unwrap()
            .is_none());
        assert_eq!(
            e2ee_backup::version(&db, ALICE, None)
                .await
                .unwrap()
                .unwrap()
                .version,
            v1
        );
        assert!(!e2ee_backup::update_version(&db, ALICE, v2, "{}")
            .await
            .unwrap());
    })
}

async fn etag(db: &crate::storage::Db, version: i64) -> i64 {
    e2ee_backup::version(db, ALICE, Some(version))
        .await
        .unwrap()
        .unwrap()
        .etag
}

#[test]
fn backed_up_keys_keep_the_better_key_and_every_change_moves_the_etag() {
    run(async {
        let (_server, db) = setup();
        let v = e2ee_backup::create_version(&db, ALICE, "m.megolm_backup.v1", "{}")
            .await
            .unwrap();
        let start = etag(&db, v).await;
        e2ee_backup::put_keys(
            &db,
            v,
            &[
                session("!r", "s1", 5, 1, false),
                session("!r", "s2", 0, 0, false),
            ],
        )
        .await
        .unwrap();
        assert!(etag(&db, v).await > start);
        // Worse keys are ignored; a better one (verified, then lower index, then fewer forwards)
        // replaces the stored one.
        e2ee_backup::put_keys(&db, v, &[session("!r", "s1", 9, 0, false)])
            .await
            .unwrap();
        e2ee_backup::put_keys(&db, v, &[session("!r", "s2", 0, 0, false)])
            .await
            .unwrap();
        let s1 = &e2ee_backup::keys(&db, v, Some("!r"), Some("s1"))
            .await
            .unwrap()[0];
        assert_eq!((s1.first_message_index, s1.forwarded_count), (5, 1));
        e2ee_backup::put_keys(&db, v, &[session("!r", "s1", 5, 0, false)])
            .await
            .unwrap();
        let s1 = &e2ee_backup::keys(&db, v, Some("!r"), Some("s1"))
            .await
            .unwrap()[0];
        assert_eq!((s1.first_message_index, s1.forwarded_count), (5, 0));
        e2ee_backup::put_keys(&db, v, &[session("!r", "s1", 20, 3, true)])
            .await
            .unwrap();
        let s1 = &e2ee_backup::keys(&db, v, Some("!r"), Some("s1"))
            .await
            .unwrap()[0];
        assert_eq!((s1.first_message_index, s1.is_verified), (20, 1));
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&s1.session_data).unwrap(),
            json!({ "index": 20, "verified": true })
        );
        e2ee_backup::put_keys(&db, v, &[session("!r", "s1", 0, 0, false)])
            .await
            .unwrap();
        let s1 = &e2ee_backup::keys(&db, v, Some("!r"), Some("s1"))
            .await
            .unwrap()[0];
        assert_eq!(
            s1.is_verified, 1,
            "an unverified key never replaces a verified one"
        );
        e2ee_backup::put_keys(&db, v, &[session("!other", "s3", 0, 0, false)])
            .await
            .unwrap();
        assert_eq!(
            e2ee_backup::keys(&db, v, None, None).await.unwrap().len(),
            3
        );
        assert_eq!(
            e2ee_backup::keys(&db, v, Some("!r"), None)
                .await
                .unwrap()
                .len(),
            2
        );
        assert_eq!(
            e2ee_backup::version(&db, ALICE, Some(v))
                .await
                .unwrap()
                .unwrap()
                .count,
            3
        );
        let before_delete = etag(&db, v).await;
        e2ee_backup::delete_keys(&db, v, Some("!r"), Some("s2"))
            .await
            .unwrap();
        assert!(etag(&db, v).await > before_delete);
        assert_eq!(
            e2ee_backup::keys(&db, v, Some("!r"), None)
                .await
                .unwrap()
                .len(),
            1
        );
        e2ee_backup::delete_keys(&db, v, None, None).await.unwrap();
        assert!(e2ee_backup::keys(&db, v, None, None)
            .await
            .unwrap()
            .is_empty());
    })
}

#[test]
fn deleting_a_backup_version_deletes_its_keys() {
    run(async {
        let (_server, db) = setup();
        let v = e2ee_backup::create_version(&db, ALICE, "m.megolm_backup.v1", "{}")
            .await
            .unwrap();
        e2ee_backup::put_keys(&db, v, &[session("!r", "s1", 0, 0, false)])
            .await
            .unwrap();
        assert!(e2ee_backup::delete_version(&db, ALICE, v).await.unwrap());
        assert!(e2ee_backup::keys(&db, v, None, None)
            .await
            .unwrap()
            .is_empty());
    })
}
