//! `storage::directory` (aliases, the published-room list, the user directory) and
//! `storage::hierarchy` (space children, and who takes part in which room).

use serde_json::json;

use super::{run, setup, user, Room, ALICE, BOB, CAROL, DAVE};
use crate::rooms::builder::EventTemplate;
use crate::storage::{directory, hierarchy, rooms as stored, user_data};

#[test]
fn an_alias_is_created_once_resolved_listed_and_deleted() {
    run(async {
        let (_server, db) = setup();
        let room = "!one:test.local";
        assert!(
            directory::create_alias(&db, "#b:test.local", room, ALICE, 1)
                .await
                .unwrap()
        );
        assert!(directory::create_alias(&db, "#a:test.local", room, BOB, 2)
            .await
            .unwrap());
        assert!(
            !directory::create_alias(&db, "#a:test.local", "!two:test.local", CAROL, 3)
                .await
                .unwrap()
        );
        assert_eq!(
            directory::alias_owner(&db, "#a:test.local").await.unwrap(),
            Some((room.to_owned(), BOB.to_owned()))
        );
        assert_eq!(
            stored::alias_room(&db, "#b:test.local")
                .await
                .unwrap()
                .as_deref(),
            Some(room)
        );
        assert_eq!(
            directory::aliases_of(&db, room).await.unwrap(),
            ["#a:test.local", "#b:test.local"]
        );
        directory::delete_alias(&db, "#a:test.local").await.unwrap();
        assert!(directory::alias_owner(&db, "#a:test.local")
            .await
            .unwrap()
            .is_none());
        assert_eq!(
            directory::aliases_of(&db, room).await.unwrap(),
            ["#b:test.local"]
        );
        assert!(directory::aliases_of(&db, "!two:test.local")
            .await
            .unwrap()
            .is_empty());
    })
}

#[test]
fn a_room_is_published_and_listed_with_its_summary() {
    run(async {
        let (_server, db) = setup();
        let mut big = Room::create(&db, "big", ALICE, None).await;
        big.join(&db, BOB).await;
        big.state(&db, ALICE, "m.room.name", json!({ "name": "Big" }))
            .await;
        big.state(&db, ALICE, "m.room.topic", json!({ "topic": "Things" }))
            .await;
        big.state(
            &db,
            ALICE,
            "m.room.canonical_alias",
            json!({ "alias": "#big:test.local" }),
        )
        .await;
        big.state(
            &db,
            ALICE,
            "m.room.avatar",
            json!({ "url": "mxc://test.local/a" }),
        )
        .await;
        big.state(
            &db,
            ALICE,
            "m.room.history_visibility",
            json!({ "history_visibility": "world_readable" }),
        )
        .await;
        big.state(
            &db,
            ALICE,
            "m.room.guest_access",
            json!({ "guest_access": "can_join" }),
        )
        .await;
        let small = Room::create(&db, "small", CAROL, None).await;
        let hidden = Room::create(&db, "hidden", CAROL, None).await;
        assert_eq!(
            directory::published(&db, big.id.as_str()).await.unwrap(),
            Some(false)
        );
        assert_eq!(
            directory::published(&db, "!nope:test.local").await.unwrap(),
            None
        );
        for room in [&big, &small] {
            directory::set_published(&db, room.id.as_str(), true)
                .await
                .unwrap();
        }
        assert_eq!(
            directory::published(&db, big.id.as_str()).await.unwrap(),
            Some(true)
        );
        let listed = directory::public_room_summaries(&db).await.unwrap();
        assert_eq!(listed.len(), 2);
        assert_eq!(
            listed[0],
            json!({
                "room_id": big.id.as_str(),
                "num_joined_members": 2,
                "world_readable": true,
                "guest_can_join": true,
                "join_rule": "public",
                "name": "Big",
                "topic": "Things",
                "canonical_alias": "#big:test.local",
                "avatar_url": "mxc://test.local/a",
            })
        );
        assert_eq!(
            listed[1],
            json!({
                "room_id": small.id.as_str(),
                "num_joined_members": 1,
                "world_readable": false,
                "guest_can_join": false,
                "join_rule": "public",
            })
        );
        // Any rooms we hold, published or not.
        let some = directory::room_summaries(&db, &[hidden.id.as_str(), "!nope:test.local"])
            .await
            .unwrap();
        assert_eq!(some.len(), 1);
        assert_eq!(some[0]["room_id"], hidden.id.as_str());
        assert!(directory::room_summaries(&db, &[])
            .await
            .unwrap()
            .is_empty());
        directory::set_published(&db, big.id.as_str(), false)
            .await
            .unwrap();
        assert_eq!(
            directory::public_room_summaries(&db).await.unwrap().len(),
            1
        );
    })
}

#[test]
fn the_user_directory_finds_room_mates_and_members_of_published_rooms() {
    run(async {
        let (_server, db) = setup();
        for who in [ALICE, BOB, CAROL, "@ca_rl:test.local", "@erin:test.local"] {
            user(&db, who).await;
        }
        user_data::set_profile_field(&db, BOB, "displayname", Some("Bobby Tables"))
            .await
            .unwrap();
        let mut shared = Room::create(&db, "shared", ALICE, None).await;
        shared.join(&db, BOB).await;
        shared.join(&db, "@ca_rl:test.local").await;
        let mut public = Room::create(&db, "public", CAROL, None).await;
        directory::set_published(&db, public.id.as_str(), true)
            .await
            .unwrap();
        public.message(&db, CAROL, "hi").await;
        // Erin shares nothing with Alice and sits in no published room.
        Room::create(&db, "private", "@erin:test.local", None).await;
        let found = |term: &'static str| {
            let db = &db;
            async move {
                directory::search_users(db, ALICE, term, 10)
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|u| u["user_id"].as_str().unwrap().to_owned())
                    .collect::<Vec<_>>()
            }
        };
        assert_eq!(found("tables").await, [BOB]);
        assert_eq!(found("car").await, [CAROL]);
        // `_` is a literal underscore, not a wildcard.
        assert_eq!(found("a_").await, ["@ca_rl:test.local"]);
        assert_eq!(found("%").await, Vec::<String>::new());
        assert!(found("erin").await.is_empty());
        let mut everyone = found("test.local").await;
        everyone.sort();
        assert_eq!(everyone, [ALICE, BOB, "@ca_rl:test.local", CAROL]);
        let first = directory::search_users(&db, ALICE, "test.local", 1)
            .await
            .unwrap();
        assert_eq!(first.len(), 1);
        let bob = &directory::search_users(&db, ALICE, "bob", 10)
            .await
            .unwrap()[0];
        assert_eq!(bob["display_name"], "Bobby Tables");
        // Remote users are not in the directory (they have no `users` row).
        shared.join(&db, DAVE).await;
        assert!(found("dave").await.is_empty());
    })
}

#[test]
fn a_space_s_children_and_who_takes_part_in_its_rooms() {
    run(async {
        let (_server, db) = setup();
        let mut space = Room::create(&db, "space", ALICE, None).await;
        let mut child = Room::create(&db, "child", BOB, None).await;
        child.join(&db, DAVE).await;
        let other = Room::create(&db, "other", CAROL, None).await;
        let link = |room: &Room| {
            EventTemplate::state(
                "m.space.child",
                room.id.as_str(),
                json!({ "via": ["test.local"] }),
            )
        };
        space.send(&db, ALICE, link(&child)).await;
        space.send(&db, ALICE, link(&other)).await;
        let children = hierarchy::space_children(&db, &[space.id.as_str(), child.id.as_str()])
            .await
            .unwrap();
        let mut linked: Vec<&str> = children[space.id.as_str()]
            .iter()
            .map(|pdu| pdu["state_key"].as_str().unwrap())
            .collect();
        linked.sort();
        let mut expected = [child.id.as_str(), other.id.as_str()];
        expected.sort();
        assert_eq!(linked, expected);
        assert!(!children.contains_key(child.id.as_str()));
        let rooms = [space.id.as_str(), child.id.as_str(), other.id.as_str()];
        let bobs = hierarchy::rooms_with_presence(&db, &rooms, BOB, "")
            .await
            .unwrap();
        assert_eq!(bobs.into_iter().collect::<Vec<_>>(), [child.id.to_string()]);
        let remote = hierarchy::rooms_with_presence(&db, &rooms, "", "remote.example")
            .await
            .unwrap();
        assert_eq!(
            remote.into_iter().collect::<Vec<_>>(),
            [child.id.to_string()]
        );
        let ours = hierarchy::rooms_with_presence(&db, &rooms, "", "test.local")
            .await
            .unwrap();
        assert_eq!(ours.len(), 3);
    })
}
