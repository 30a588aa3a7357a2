//! `storage::media`: the first read of a request for local media (token, media and thumbnail
//! rows in one statement) answers what the separate reads answer.

use super::{run, setup, token_of, user, ALICE};
use crate::storage::accounts;
use crate::storage::media::{self as stored, Media, Thumbnail};

const ORIGIN: &str = "test.local";

fn picture(media_id: &str) -> Media {
    Media {
        origin: ORIGIN.into(),
        media_id: media_id.into(),
        user_id: Some(ALICE.into()),
        content_type: "image/png".into(),
        filename: Some("cat.png".into()),
        size: Some(5000),
        created_ts: 1234,
        unused_expires_ts: None,
        quarantined_by: None,
    }
}

#[test]
fn the_first_read_answers_what_the_separate_reads_answer() {
    run(async {
        let (_server, db) = setup();
        user(&db, ALICE).await;
        stored::insert_stored(&db, &picture("pic")).await.unwrap();
        let thumbnail = Thumbnail {
            width: 32,
            height: 32,
            method: "crop".into(),
            content_type: "image/png".into(),
            size: 321,
        };
        stored::insert_thumbnail(&db, ORIGIN, "pic", &thumbnail)
            .await
            .unwrap();
        let token = token_of(ALICE);
        let crop = Some(((32, 32), "crop"));

        let first = stored::first_read(&db, &token, (ORIGIN, "pic"), crop)
            .await
            .unwrap();
        let owner = first.owner.expect("the token's owner");
        let alone = accounts::token_owner(&db, &token).await.unwrap().unwrap();
        assert_eq!(
            (&owner.user_id, &owner.device_id, owner.expires_ts),
            (&alone.user_id, &alone.device_id, alone.expires_ts)
        );
        assert_eq!(
            (owner.deactivated, owner.admin, &owner.revokes_refresh),
            (alone.deactivated, alone.admin, &alone.revokes_refresh)
        );
        let media = stored::get(&db, ORIGIN, "pic").await.unwrap();
        assert_eq!(first.media, media);
        assert_eq!(first.thumbnail, Some(("image/png".to_owned(), 321)));

        // Another size, or none asked (a download): no thumbnail, the rest the same.
        for asked in [Some(((96, 96), "crop")), Some(((32, 32), "scale")), None] {
            let other = stored::first_read(&db, &token, (ORIGIN, "pic"), asked)
                .await
                .unwrap();
            assert!(
                other.owner.is_some() && other.thumbnail.is_none(),
                "{asked:?}"
            );
            assert_eq!(other.media, media);
        }
        // An unknown token or media: that part is absent, the others still read.
        let unknown = stored::first_read(&db, "access:nobody", (ORIGIN, "pic"), crop)
            .await
            .unwrap();
        assert!(unknown.owner.is_none());
        assert_eq!(unknown.media, media);
        let missing = stored::first_read(&db, &token, (ORIGIN, "other"), crop)
            .await
            .unwrap();
        assert!(missing.owner.is_some() && missing.media.is_none() && missing.thumbnail.is_none());

        // A deactivated user's tokens are gone with the deactivation: no owner.
        accounts::deactivate(&db, ALICE).await.unwrap();
        let after = stored::first_read(&db, &token, (ORIGIN, "pic"), crop)
            .await
            .unwrap();
        assert!(after.owner.is_none());
    })
}
