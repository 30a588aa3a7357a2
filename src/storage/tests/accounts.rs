//! `storage::accounts`: users, devices, access and refresh tokens, deactivation, UIA sessions,
//! registration nonces and rate limits.

use super::{login, run, setup, token_of, user, ALICE, BOB};
use crate::http::ErrorCode;
use crate::storage::accounts::{self, Session};
use crate::storage::{e2ee, e2ee_remote, rate_limits, user_data};

#[test]
fn a_registered_user_has_credentials_a_profile_and_a_first_session() {
    run(async {
        let (_server, db) = setup();
        user(&db, ALICE).await;
        assert!(accounts::user_exists(&db, ALICE).await.unwrap());
        assert!(!accounts::user_exists(&db, BOB).await.unwrap());
        let credentials = accounts::credentials(&db, ALICE).await.unwrap().unwrap();
        assert_eq!(credentials.password_hash.as_deref(), Some("hash"));
        assert_eq!(credentials.deactivated, 0);
        assert!(accounts::credentials(&db, BOB).await.unwrap().is_none());
        // The display name starts as the localpart.
        let profile = user_data::profile(&db, ALICE).await.unwrap().unwrap();
        assert_eq!(profile.displayname.as_deref(), Some("alice"));
        let devices = accounts::devices(&db, ALICE).await.unwrap();
        assert_eq!(devices.len(), 1);
        assert_eq!(devices[0].device_id, "DEV");
        assert_eq!(devices[0].display_name.as_deref(), Some("phone"));
        assert!(devices[0].last_seen_ts.is_some());
        let owner = accounts::token_owner(&db, &token_of(ALICE))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (owner.user_id.as_str(), owner.device_id.as_str()),
            (ALICE, "DEV")
        );
        assert_eq!((owner.deactivated, owner.admin), (0, 0));
        assert_eq!(owner.expires_ts, None);
        assert_eq!(owner.revokes_refresh, None);
        assert!(accounts::token_owner(&db, "access:nobody")
            .await
            .unwrap()
            .is_none());
    })
}

#[test]
fn registering_a_taken_user_id_is_user_in_use_and_writes_nothing() {
    run(async {
        let (_server, db) = setup();
        user(&db, ALICE).await;
        let session = Session {
            user_id: ALICE,
            device_id: "OTHER",
            device_display_name: None,
            access_token_hash: "access:second",
            refresh_token_hash: Some("refresh:second"),
            expires_ts: None,
        };
        let error = accounts::register(&db, ALICE, None, true, Some(&session))
            .await
            .unwrap_err();
        assert!(matches!(error.code, ErrorCode::UserInUse), "{error:?}");
        assert!(accounts::token_owner(&db, "access:second")
            .await
            .unwrap()
            .is_none());
        assert_eq!(accounts::devices(&db, ALICE).await.unwrap().len(), 1);
        let credentials = accounts::credentials(&db, ALICE).await.unwrap().unwrap();
        assert_eq!(credentials.password_hash.as_deref(), Some("hash"));
    })
}

#[test]
fn registering_without_a_session_creates_no_device_and_admins_are_marked() {
    run(async {
        let (_server, db) = setup();
        accounts::register(&db, BOB, None, false, None)
            .await
            .unwrap();
        assert!(accounts::user_exists(&db, BOB).await.unwrap());
        assert!(accounts::devices(&db, BOB).await.unwrap().is_empty());
        let session = Session {
            user_id: ALICE,
            device_id: "ADMIN",
            device_display_name: None,
            access_token_hash: "access:admin",
            refresh_token_hash: None,
            expires_ts: Some(123),
        };
        accounts::register(&db, ALICE, None, true, Some(&session))
            .await
            .unwrap();
        let owner = accounts::token_owner(&db, "access:admin")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(owner.admin, 1);
        assert_eq!(owner.expires_ts, Some(123));
    })
}

#[test]
fn logging_in_again_with_a_device_id_replaces_its_tokens_and_keeps_its_name() {
    run(async {
        let (_server, db) = setup();
        user(&db, ALICE).await;
        login(&db, ALICE, "DEV").await;
        assert!(accounts::token_owner(&db, &token_of(ALICE))
            .await
            .unwrap()
            .is_none());
        let owner = accounts::token_owner(&db, "access:DEV")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(owner.device_id, "DEV");
        let devices = accounts::devices(&db, ALICE).await.unwrap();
        assert_eq!(devices.len(), 1);
        assert_eq!(devices[0].display_name.as_deref(), Some("phone"));
        // A new device id is a second device, listed after the first.
        login(&db, ALICE, "LAPTOP").await;
        let devices = accounts::devices(&db, ALICE).await.unwrap();
        let ids: Vec<&str> = devices.iter().map(|d| d.device_id.as_str()).collect();
        assert_eq!(ids, ["DEV", "LAPTOP"]);
        assert!(accounts::token_owner(&db, "access:DEV")
            .await
            .unwrap()
            .is_some());
    })
}

/// A login with a refresh token: access `access:R0`, refresh `refresh:R0`.
async fn refreshable(db: &crate::storage::Db) {
    accounts::register(db, ALICE, None, false, None)
        .await
        .unwrap();
    let session = Session {
        user_id: ALICE,
        device_id: "DEV",
        device_display_name: None,
        access_token_hash: "access:R0",
        refresh_token_hash: Some("refresh:R0"),
        expires_ts: Some(1_000),
    };
    accounts::start_session(db, &session).await.unwrap();
}

#[test]
fn a_refresh_token_is_single_use_once_a_token_it_issued_is_used() {
    run(async {
        let (_server, db) = setup();
        refreshable(&db).await;
        let owner = accounts::refresh(&db, "refresh:R0", "access:R1", "refresh:R1", 5_000)
            .await
            .unwrap();
        assert_eq!(owner, Some((ALICE.to_owned(), "DEV".to_owned())));
        let new = accounts::token_owner(&db, "access:R1")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(new.expires_ts, Some(5_000));
        assert_eq!(new.revokes_refresh.as_deref(), Some("refresh:R0"));
        // Until a new token is used, the old refresh token still works (the answer may be lost).
        assert!(
            accounts::refresh(&db, "refresh:R0", "access:R1b", "refresh:R1b", 5_000)
                .await
                .unwrap()
                .is_some()
        );
        // The request path calls `first_use` when it sees `revokes_refresh`.
        accounts::first_use(&db, "refresh:R0").await.unwrap();
        let used = accounts::token_owner(&db, "access:R1")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(used.revokes_refresh, None);
        assert!(
            accounts::refresh(&db, "refresh:R0", "access:X", "refresh:X", 5_000)
                .await
                .unwrap()
                .is_none()
        );
        assert!(accounts::token_owner(&db, "access:X")
            .await
            .unwrap()
            .is_none());
        // The new refresh token works.
        assert!(
            accounts::refresh(&db, "refresh:R1", "access:R2", "refresh:R2", 9_000)
                .await
                .unwrap()
                .is_some()
        );
    })
}

#[test]
fn refreshing_with_the_new_refresh_token_revokes_the_one_it_replaced() {
    run(async {
        let (_server, db) = setup();
        refreshable(&db).await;
        accounts::refresh(&db, "refresh:R0", "access:R1", "refresh:R1", 5_000)
            .await
            .unwrap()
            .unwrap();
        accounts::refresh(&db, "refresh:R1", "access:R2", "refresh:R2", 9_000)
            .await
            .unwrap()
            .unwrap();
        assert!(
            accounts::refresh(&db, "refresh:R0", "access:X", "refresh:X", 1)
                .await
                .unwrap()
                .is_none()
        );
        // R1's tokens no longer revoke anything; R2's revoke R1.
        let r1 = accounts::token_owner(&db, "access:R1")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(r1.revokes_refresh, None);
        let r2 = accounts::token_owner(&db, "access:R2")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(r2.revokes_refresh.as_deref(), Some("refresh:R1"));
        assert!(accounts::refresh(&db, "refresh:unknown", "a", "r", 1)
            .await
            .unwrap()
            .is_none());
    })
}

#[test]
fn deleting_a_device_ends_its_session_and_forgets_its_keys_and_inbox() {
    run(async {
        let (_server, db) = setup();
        user(&db, ALICE).await;
        login(&db, ALICE, "LAPTOP").await;
        for device in ["DEV", "LAPTOP"] {
            let keys = format!(r#"{{"device_id":"{device}"}}"#);
            e2ee::upload(&db, ALICE, device, Some(&keys), &[], &[])
                .await
                .unwrap();
        }
        user(&db, BOB).await;
        let message = serde_json::json!([ALICE, "*", { "hello": 1 }]);
        let (queued, _) = e2ee::send_to_device(&db, BOB, "DEV", "m.test", "t1", &[message])
            .await
            .unwrap();
        assert_eq!(queued, 2);
        let before = e2ee_remote::local_stream_id(&db, ALICE).await.unwrap();

        accounts::delete_devices(&db, ALICE, &["LAPTOP".to_owned()])
            .await
            .unwrap();

        assert!(accounts::token_owner(&db, "access:LAPTOP")
            .await
            .unwrap()
            .is_none());
        assert!(accounts::token_owner(&db, &token_of(ALICE))
            .await
            .unwrap()
            .is_some());
        let devices = accounts::devices(&db, ALICE).await.unwrap();
        assert_eq!(devices.len(), 1);
        assert_eq!(devices[0].device_id, "DEV");
        let keys = e2ee::device_keys(&db, &[(ALICE, "")]).await.unwrap();
        let devices: Vec<&str> = keys.iter().map(|k| k.device_id.as_str()).collect();
        assert_eq!(devices, ["DEV"]);
        let inbox = e2ee::to_device_inbox(&db, ALICE, "LAPTOP", 0, u64::MAX, 10)
            .await
            .unwrap();
        assert!(inbox.is_empty());
        assert_eq!(
            e2ee::to_device_inbox(&db, ALICE, "DEV", 0, u64::MAX, 10)
                .await
                .unwrap()
                .len(),
            1
        );
        assert!(e2ee_remote::local_stream_id(&db, ALICE).await.unwrap() > before);
        // Nothing to delete is no batch at all.
        accounts::delete_devices(&db, ALICE, &[]).await.unwrap();
    })
}

#[test]
fn a_deactivated_user_keeps_its_id_but_loses_password_profile_sessions_and_keys() {
    run(async {
        let (_server, db) = setup();
        user(&db, ALICE).await;
        e2ee::upload(&db, ALICE, "DEV", Some("{}"), &[], &[])
            .await
            .unwrap();
        e2ee::store_cross_signing_keys(&db, ALICE, &[("master", "pub".into(), "{}".into())])
            .await
            .unwrap();

        accounts::deactivate(&db, ALICE).await.unwrap();

        assert!(accounts::user_exists(&db, ALICE).await.unwrap());
        let credentials = accounts::credentials(&db, ALICE).await.unwrap().unwrap();
        assert_eq!(credentials.deactivated, 1);
        assert_eq!(credentials.password_hash, None);
        assert!(user_data::profile(&db, ALICE).await.unwrap().is_none());
        assert!(accounts::token_owner(&db, &token_of(ALICE))
            .await
            .unwrap()
            .is_none());
        assert!(accounts::devices(&db, ALICE).await.unwrap().is_empty());
        assert!(e2ee::device_keys(&db, &[(ALICE, "")])
            .await
            .unwrap()
            .is_empty());
        assert!(e2ee::cross_signing_keys(&db, &[ALICE])
            .await
            .unwrap()
            .is_empty());
        // The id stays taken.
        let error = accounts::register(&db, ALICE, None, false, None)
            .await
            .unwrap_err();
        assert!(matches!(error.code, ErrorCode::UserInUse));
    })
}

#[test]
fn renaming_a_device_without_a_name_keeps_the_old_one() {
    run(async {
        let (_server, db) = setup();
        user(&db, ALICE).await;
        let position = || async {
            crate::storage::sync::current_position(&db)
                .await
                .unwrap()
                .device_lists
        };
        let before = position().await;
        assert_eq!(
            accounts::rename_device(&db, ALICE, "DEV", Some("tablet"))
                .await
                .unwrap(),
            (true, true)
        );
        // A new name is a change of the device list; no name, or the same one, is none.
        let renamed = position().await;
        assert!(renamed > before);
        assert_eq!(
            accounts::rename_device(&db, ALICE, "DEV", None)
                .await
                .unwrap(),
            (true, false)
        );
        assert_eq!(
            accounts::rename_device(&db, ALICE, "DEV", Some("tablet"))
                .await
                .unwrap(),
            (true, false)
        );
        assert_eq!(position().await, renamed);
        let devices = accounts::devices(&db, ALICE).await.unwrap();
        assert_eq!(devices[0].display_name.as_deref(), Some("tablet"));
        assert_eq!(
            accounts::rename_device(&db, ALICE, "NOPE", Some("x"))
                .await
                .unwrap(),
            (false, false)
        );
        assert_eq!(
            accounts::rename_device(&db, BOB, "DEV", Some("x"))
                .await
                .unwrap(),
            (false, false)
        );
    })
}

#[test]
fn a_new_password_replaces_the_hash() {
    run(async {
        let (_server, db) = setup();
        user(&db, ALICE).await;
        accounts::set_password(&db, ALICE, "new-hash")
            .await
            .unwrap();
        let credentials = accounts::credentials(&db, ALICE).await.unwrap().unwrap();
        assert_eq!(credentials.password_hash.as_deref(), Some("new-hash"));
    })
}

#[test]
fn a_uia_session_records_completed_stages_until_deleted() {
    run(async {
        let (_server, db) = setup();
        accounts::save_uia_session(&db, "s1", "password", Some(ALICE), "[]")
            .await
            .unwrap();
        // Saving again updates the stages only.
        accounts::save_uia_session(&db, "s1", "register", None, r#"["m.login.password"]"#)
            .await
            .unwrap();
        let session = accounts::uia_session(&db, "s1").await.unwrap().unwrap();
        assert_eq!(session.purpose, "password");
        assert_eq!(session.user_id.as_deref(), Some(ALICE));
        assert_eq!(session.completed, r#"["m.login.password"]"#);
        assert!(accounts::uia_session(&db, "s2").await.unwrap().is_none());
        accounts::delete_uia_session(&db, "s1").await.unwrap();
        assert!(accounts::uia_session(&db, "s1").await.unwrap().is_none());
    })
}

#[test]
fn a_registration_nonce_is_taken_once_and_not_when_stale() {
    run(async {
        let (server, db) = setup();
        accounts::save_nonce(&db, "n1").await.unwrap();
        assert!(accounts::take_nonce(&db, "n1", 60_000).await.unwrap());
        assert!(!accounts::take_nonce(&db, "n1", 60_000).await.unwrap());
        assert!(!accounts::take_nonce(&db, "unknown", 60_000).await.unwrap());
        server
            .rows("INSERT INTO registration_nonces (nonce, created_ts) VALUES ('old', 5)")
            .await;
        assert!(!accounts::take_nonce(&db, "old", 60_000).await.unwrap());
    })
}

#[test]
fn rate_counters_count_per_key_and_start_again_each_window() {
    run(async {
        let (_server, db) = setup();
        let window = 60_000;
        let t = 10 * window + 5;
        let count = |keys: &'static [&'static str], at: u64| {
            let db = &db;
            async move {
                let ones: Vec<(&str, u64)> = keys.iter().map(|k| (*k, 1)).collect();
                rate_limits::add(db, &ones, window, at).await.unwrap()
            }
        };
        assert_eq!(count(&["a", "b"], t).await, [1, 1]);
        // An isolate hands over what it counted since its last look, several at once.
        assert_eq!(
            rate_limits::add(&db, &[("c", 5)], window, t).await.unwrap(),
            [5]
        );
        assert_eq!(
            rate_limits::add(&db, &[("c", 2)], window, t + 1)
                .await
                .unwrap(),
            [7]
        );
        db.run("DELETE FROM rate_counters WHERE key = 'c'", &[])
            .await
            .unwrap();
        assert_eq!(count(&["a"], t + 1).await, [2]);
        assert_eq!(count(&["b", "a"], t + 2).await, [2, 3]);
        // The next window starts again, in the same row.
        assert_eq!(count(&["a"], t + window).await, [1]);
        #[derive(serde::Deserialize)]
        struct Rows {
            n: i64,
        }
        let rows: Option<Rows> = db
            .row("SELECT COUNT(*) AS n FROM rate_counters", &[])
            .await
            .unwrap();
        assert_eq!(rows.unwrap().n, 2);
        // A day later, idle counters are forgotten.
        rate_limits::forget_idle(&db, t + 2 * window).await.unwrap();
        assert_eq!(count(&["b"], t + 2 * window).await, [1]);
        rate_limits::forget_idle(&db, t + 24 * 3_600_000 + 3 * window)
            .await
            .unwrap();
        let rows: Option<Rows> = db
            .row("SELECT COUNT(*) AS n FROM rate_counters", &[])
            .await
            .unwrap();
        assert_eq!(rows.unwrap().n, 0);
    })
}
