//! The content repository end to end through `TestServer`: real routing and handlers, SQLite,
//! the in-memory object store, and a fake remote server for federation.

use image::codecs::png::PngEncoder;
use image::{Rgba, RgbaImage};
use serde_json::{json, Value};

use crate::platform::HttpResponse;
use crate::testing::{path_of, RemoteServer, TestServer};

fn png(width: u32, height: u32) -> Vec<u8> {
    let image = RgbaImage::from_fn(width, height, |x, y| Rgba([x as u8, y as u8, 7, 255]));
    let mut bytes = Vec::new();
    image
        .write_with_encoder(PngEncoder::new(&mut bytes))
        .unwrap();
    bytes
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

async fn upload(
    server: &TestServer,
    token: &str,
    bytes: Vec<u8>,
    content_type: &str,
    name: &str,
) -> String {
    let (status, _, body) = server
        .request_with_headers(
            "POST",
            &format!("/_matrix/media/v3/upload?filename={name}"),
            Some(&bearer(token)),
            &[("content-type", content_type)],
            bytes,
        )
        .await;
    let answer: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(status, 200, "{answer}");
    answer["content_uri"].as_str().unwrap().to_owned()
}

/// A raw upload of `bytes`: the status and the JSON answer.
async fn upload_raw(server: &TestServer, token: &str, bytes: Vec<u8>) -> (u16, Value) {
    let (status, _, body) = server
        .request_with_headers(
            "POST",
            "/_matrix/media/v3/upload",
            Some(&bearer(token)),
            &[],
            bytes,
        )
        .await;
    (status, serde_json::from_slice(&body).unwrap())
}

fn thumbnail_path(mxc: &str, query: &str) -> String {
    let rest = mxc.strip_prefix("mxc://").unwrap();
    format!("/_matrix/client/v1/media/thumbnail/{rest}?{query}")
}

fn download_path(mxc: &str) -> String {
    let rest = mxc.strip_prefix("mxc://").unwrap();
    format!("/_matrix/client/v1/media/download/{rest}")
}

#[test]
fn an_upload_downloads_byte_equal_with_its_type_name_and_policy() {
    futures::executor::block_on(async {
        let server = TestServer::new();
        let (_, alice) = server.register("alice").await;
        let (_, bob) = server.register("bob").await;
        let bytes = png(40, 30);
        let mxc = upload(&server, &alice, bytes.clone(), "image/png", "cat.png").await;
        assert!(mxc.starts_with("mxc://test.local/"), "{mxc}");

        // Another user of the server downloads it.
        let (status, headers, body) = server
            .request_with_headers(
                "GET",
                &download_path(&mxc),
                Some(&bearer(&bob)),
                &[],
                vec![],
            )
            .await;
        assert_eq!(status, 200);
        assert_eq!(body, bytes);
        assert_eq!(header(&headers, "content-type"), Some("image/png"));
        assert_eq!(
            header(&headers, "content-disposition"),
            Some("inline; filename=\"cat.png\"")
        );
        assert!(header(&headers, "content-security-policy")
            .unwrap()
            .starts_with("sandbox;"));

        // The name in the path wins.
        let path = format!("{}/other.png", download_path(&mxc));
        let (_, headers, _) = server
            .request_with_headers("GET", &path, Some(&bearer(&bob)), &[], vec![])
            .await;
        assert_eq!(
            header(&headers, "content-disposition"),
            Some("inline; filename=\"other.png\"")
        );

        // Without a token: 401, and the deprecated endpoint is frozen for new media.
        let (status, _) = server
            .request("GET", &download_path(&mxc), None, None)
            .await;
        assert_eq!(status, 401);
        let legacy = download_path(&mxc).replace("/_matrix/client/v1/media/", "/_matrix/media/v3/");
        let (status, answer) = server.request("GET", &legacy, None, None).await;
        assert_eq!(
            (status, answer["errcode"].as_str()),
            (404, Some("M_NOT_FOUND"))
        );
        // Media from before the freeze point is still served there.
        server.set_var("MEDIA_FREEZE_TS", "99999999999999");
        let (status, _, body) = server
            .request_with_headers("GET", &legacy, None, &[], vec![])
            .await;
        assert_eq!((status, body), (200, bytes));
    });
}

#[test]
fn unsafe_types_are_attachments_and_ranges_are_sliced() {
    futures::executor::block_on(async {
        let server = TestServer::new();
        let (_, alice) = server.register("alice").await;
        let html = b"<script>alert(1)</script>".to_vec();
        let mxc = upload(&server, &alice, html.clone(), "text/html", "x.html").await;
        let (status, headers, body) = server
            .request_with_headers(
                "GET",
                &download_path(&mxc),
                Some(&bearer(&alice)),
                &[("range", "bytes=8-12")],
                vec![],
            )
            .await;
        assert_eq!(status, 206);
        assert_eq!(body, b"alert");
        assert_eq!(header(&headers, "content-range"), Some("bytes 8-12/25"));
        assert_eq!(
            header(&headers, "content-disposition"),
            Some("attachment; filename=\"x.html\"")
        );
        let (status, _, _) = server
            .request_with_headers(
                "GET",
                &download_path(&mxc),
                Some(&bearer(&alice)),
                &[("range", "bytes=100-")],
                vec![],
            )
            .await;
        assert_eq!(status, 416);
    });
}

#[test]
fn too_large_uploads_and_quotas_are_refused_and_store_nothing() {
    futures::executor::block_on(async {
        let server = TestServer::new();
        server.set_var("MAX_UPLOAD_BYTES", "100");
        server.set_var("MEDIA_QUOTA_BYTES", "150");
        let (_, alice) = server.register("alice").await;
        let (status, answer) = upload_raw(&server, &alice, vec![0; 101]).await;
        assert_eq!(
            (status, answer["errcode"].as_str()),
            (413, Some("M_TOO_LARGE"))
        );
        assert!(server.recorded.blobs.borrow().is_empty());
        assert!(server.rows("SELECT * FROM media").await.is_empty());

        upload(
            &server,
            &alice,
            vec![1; 100],
            "application/octet-stream",
            "a",
        )
        .await;
        let (status, answer) = upload_raw(&server, &alice, vec![2; 60]).await;
        assert_eq!(
            (status, answer["errcode"].as_str()),
            (403, Some("M_FORBIDDEN"))
        );
        assert_eq!(server.recorded.blobs.borrow().len(), 1);

        let (status, config) = server
            .request("GET", "/_matrix/client/v1/media/config", Some(&alice), None)
            .await;
        assert_eq!((status, &config), (200, &json!({ "m.upload.size": 100 })));
    });
}

#[test]
fn an_async_upload_is_filled_once_by_its_creator() {
    futures::executor::block_on(async {
        let server = TestServer::new();
        let (_, alice) = server.register("alice").await;
        let (_, bob) = server.register("bob").await;
        let (status, created) = server
            .request("POST", "/_matrix/media/v1/create", Some(&alice), None)
            .await;
        assert_eq!(status, 200, "{created}");
        assert!(created["unused_expires_at"].as_i64().unwrap() > 0);
        let mxc = created["content_uri"].as_str().unwrap().to_owned();
        let id = mxc.rsplit('/').next().unwrap().to_owned();

        let waiting = format!("{}?timeout_ms=0", download_path(&mxc));
        let (status, answer) = server.request("GET", &waiting, Some(&bob), None).await;
        assert_eq!(
            (status, answer["errcode"].as_str()),
            (504, Some("M_NOT_YET_UPLOADED"))
        );

        let put = format!("/_matrix/media/v3/upload/test.local/{id}?filename=a.txt");
        let send = |token: String, bytes: Vec<u8>| {
            let server = &server;
            let put = put.clone();
            async move {
                let (status, _, body) = server
                    .request_with_headers(
                        "PUT",
                        &put,
                        Some(&bearer(&token)),
                        &[("content-type", "text/plain")],
                        bytes,
                    )
                    .await;
                (status, serde_json::from_slice::<Value>(&body).unwrap())
            }
        };
        let (status, answer) = send(bob.clone(), b"bob's".to_vec()).await;
        assert_eq!(
            (status, answer["errcode"].as_str()),
            (403, Some("M_FORBIDDEN"))
        );
        let (status, _) = send(alice.clone(), b"hello".to_vec()).await;
        assert_eq!(status, 200);
        let (status, answer) = send(alice.clone(), b"again".to_vec()).await;
        assert_eq!(
            (status, answer["errcode"].as_str()),
            (409, Some("M_CANNOT_OVERWRITE_MEDIA"))
        );
        // The one who waited is woken.
        assert!(server
            .recorded
            .notified
            .borrow()
            .contains(&format!("media:test.local/{id}")));
        let (status, headers, body) = server
            .request_with_headers(
                "GET",
                &download_path(&mxc),
                Some(&bearer(&bob)),
                &[],
                vec![],
            )
            .await;
        assert_eq!((status, body), (200, b"hello".to_vec()));
        assert_eq!(
            header(&headers, "content-disposition"),
            Some("inline; filename=\"a.txt\"")
        );
    });
}

#[test]
fn a_thumbnail_is_made_once_and_then_served_from_the_store() {
    futures::executor::block_on(async {
        let server = TestServer::new();
        let (_, alice) = server.register("alice").await;
        let mxc = upload(&server, &alice, png(1000, 500), "image/png", "big.png").await;
        let rest = mxc.strip_prefix("mxc://").unwrap();
        let path =
            format!("/_matrix/client/v1/media/thumbnail/{rest}?width=32&height=32&method=crop");
        let (status, headers, first) = server
            .request_with_headers("GET", &path, Some(&bearer(&alice)), &[], vec![])
            .await;
        assert_eq!(status, 200);
        assert_eq!(header(&headers, "content-type"), Some("image/png"));
        let image = image::load_from_memory(&first).unwrap();
        assert_eq!((image.width(), image.height()), (32, 32));

        // The original gone from the store, the thumbnail is still served: no image work.
        let original = format!("media/{rest}");
        server
            .recorded
            .blobs
            .borrow_mut()
            .remove(&original)
            .unwrap();
        let (status, _, second) = server
            .request_with_headers("GET", &path, Some(&bearer(&alice)), &[], vec![])
            .await;
        assert_eq!((status, second), (200, first));

        // Scale fits the spec's 320x240 box, keeping the aspect.
        let mxc = upload(&server, &alice, png(1000, 500), "image/png", "b.png").await;
        let rest = mxc.strip_prefix("mxc://").unwrap();
        let path =
            format!("/_matrix/client/v1/media/thumbnail/{rest}?width=100&height=100&method=scale");
        let (_, _, scaled) = server
            .request_with_headers("GET", &path, Some(&bearer(&alice)), &[], vec![])
            .await;
        let image = image::load_from_memory(&scaled).unwrap();
        assert_eq!((image.width(), image.height()), (320, 160));

        // Not an image: the spec's 400.
        let mxc = upload(&server, &alice, b"text".to_vec(), "text/plain", "t").await;
        let rest = mxc.strip_prefix("mxc://").unwrap();
        let path = format!("/_matrix/client/v1/media/thumbnail/{rest}?width=32&height=32");
        let (status, answer) = server.request("GET", &path, Some(&alice), None).await;
        assert_eq!(
            (status, answer["errcode"].as_str()),
            (400, Some("M_UNKNOWN"))
        );
        let bad = format!("/_matrix/client/v1/media/thumbnail/{rest}?width=-3&height=32");
        let (status, _) = server.request("GET", &bad, Some(&alice), None).await;
        assert_eq!(status, 400);
    });
}

#[test]
fn a_small_original_is_served_as_its_own_thumbnail_without_reading_it_again() {
    futures::executor::block_on(async {
        let server = TestServer::new();
        let (_, alice) = server.register("alice").await;
        let original = png(20, 20);
        let mxc = upload(&server, &alice, original.clone(), "image/png", "a.png").await;
        let rest = mxc.strip_prefix("mxc://").unwrap();
        let path =
            format!("/_matrix/client/v1/media/thumbnail/{rest}?width=96&height=96&method=crop");
        let (status, headers, first) = server
            .request_with_headers("GET", &path, Some(&bearer(&alice)), &[], vec![])
            .await;
        // Never upscaled (spec): the original's own bytes.
        assert_eq!((status, &first), (200, &original));
        assert_eq!(header(&headers, "content-type"), Some("image/png"));
        // Kept as this size's thumbnail, so the original is not read again.
        let media_id = rest.split('/').nth(1).unwrap();
        let kept: Vec<String> = server
            .recorded
            .blobs
            .borrow()
            .keys()
            .filter(|k| k.contains(media_id) && **k != format!("media/{rest}"))
            .cloned()
            .collect();
        assert_eq!(kept.len(), 1, "{kept:?}");
        server
            .recorded
            .blobs
            .borrow_mut()
            .remove(&format!("media/{rest}"))
            .unwrap();
        let (status, _, second) = server
            .request_with_headers("GET", &path, Some(&bearer(&alice)), &[], vec![])
            .await;
        assert_eq!((status, second), (200, original.clone()));
        // The thumbnail's type is the picture's format, not the uploader's text.
        let mxc = upload(&server, &alice, original, "image/png; x=\"y\"", "b.png").await;
        let rest = mxc.strip_prefix("mxc://").unwrap();
        let path =
            format!("/_matrix/client/v1/media/thumbnail/{rest}?width=96&height=96&method=crop");
        let (status, headers, _) = server
            .request_with_headers("GET", &path, Some(&bearer(&alice)), &[], vec![])
            .await;
        assert_eq!(status, 200);
        assert_eq!(header(&headers, "content-type"), Some("image/png"));
    });
}

#[test]
fn a_thumbnail_kept_in_memory_is_served_only_while_its_rows_say_so() {
    futures::executor::block_on(async {
        let server = TestServer::new();
        let (_, alice) = server.register("alice").await;
        let mxc = upload(&server, &alice, png(400, 300), "image/png", "p.png").await;
        let media_id = mxc.rsplit('/').next().unwrap();
        let path = thumbnail_path(&mxc, "width=32&height=32&method=crop");
        let auth = bearer(&alice);
        let get = || server.request_with_headers("GET", &path, Some(&auth), &[], vec![]);
        let (status, headers, made) = get().await;
        assert_eq!(status, 200);

        // Every byte gone from the store: the kept thumbnail is served, with the same headers.
        server.recorded.blobs.borrow_mut().clear();
        let (status, again_headers, again) = get().await;
        assert_eq!((status, &again), (200, &made));
        assert_eq!(again_headers, headers);

        // Quarantined: refused although its bytes are in memory; released: served again.
        let set = |by: &str| {
            format!("UPDATE media SET quarantined_by = {by} WHERE media_id = '{media_id}'")
        };
        server.rows(&set("'@admin:test.local'")).await;
        let (status, _, _) = get().await;
        assert_eq!(status, 404);
        server.rows(&set("NULL")).await;
        assert_eq!(get().await.2, made);

        // Deleted by another isolate (its rows gone, this isolate's memory untouched): refused.
        for table in ["media_thumbnails", "media"] {
            server
                .rows(&format!(
                    "DELETE FROM {table} WHERE media_id = '{media_id}'"
                ))
                .await;
        }
        let (status, _, body) = get().await;
        let answer: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            (status, answer["errcode"].as_str()),
            (404, Some("M_NOT_FOUND"))
        );
    });
}

#[test]
fn other_servers_get_our_media_as_multipart_only_when_signed() {
    futures::executor::block_on(async {
        let server = TestServer::new();
        let remote = RemoteServer::new("remote.test");
        server.respond_with(remote.responder(|_| None));
        let (_, alice) = server.register("alice").await;
        let bytes = png(10, 10);
        let mxc = upload(&server, &alice, bytes.clone(), "image/png", "s.png").await;
        let id = mxc.rsplit('/').next().unwrap();
        let path = format!("/_matrix/federation/v1/media/download/{id}");

        let (status, _) = server.request("GET", &path, None, None).await;
        assert_eq!(status, 401);

        let auth = remote.authorization("GET", &path, None);
        let (status, headers, body) = server
            .request_with_headers("GET", &path, Some(&auth), &[], vec![])
            .await;
        assert_eq!(status, 200);
        let content_type = header(&headers, "content-type").unwrap();
        assert!(content_type.starts_with("multipart/mixed; boundary="));
        let part = crate::media::multipart::parse(content_type, &body).unwrap();
        assert_eq!(
            part,
            crate::media::multipart::MediaPart::Bytes {
                content_type: Some("image/png".into()),
                disposition: Some("inline; filename=\"s.png\"".into()),
                body: bytes,
            }
        );
    });
}

#[test]
fn remote_media_is_fetched_over_federation_once_then_cached() {
    futures::executor::block_on(async {
        let server = TestServer::new();
        let remote = RemoteServer::new("remote.test");
        let bytes = png(12, 12);
        let served = bytes.clone();
        server.respond_with(remote.responder(move |request| {
            let frame = crate::media::multipart::frame("image/png", "inline; filename=\"r.png\"");
            path_of(request)
                .starts_with("/_matrix/federation/v1/media/download/abcDEF")
                .then(|| HttpResponse {
                    status: 200,
                    headers: vec![("content-type".into(), frame.content_type.clone())],
                    body: [frame.head, served.clone(), frame.tail].concat(),
                })
        }));
        let (_, alice) = server.register("alice").await;
        let path = "/_matrix/client/v1/media/download/remote.test/abcDEF";
        for _ in 0..2 {
            let (status, headers, body) = server
                .request_with_headers("GET", path, Some(&bearer(&alice)), &[], vec![])
                .await;
            assert_eq!(status, 200);
            assert_eq!(body, bytes);
            assert_eq!(
                header(&headers, "content-disposition"),
                Some("inline; filename=\"r.png\"")
            );
        }
        let fetches = server
            .recorded
            .requests
            .borrow()
            .iter()
            .filter(|r| path_of(r).contains("/media/download/"))
            .count();
        assert_eq!(fetches, 1, "the second download came from the cache");
        // The request was signed.
        let requests = server.recorded.requests.borrow();
        let request = requests
            .iter()
            .find(|r| path_of(r).contains("/media/download/"))
            .unwrap();
        assert!(request
            .headers
            .iter()
            .any(|(k, v)| k == "Authorization" && v.starts_with("X-Matrix ")));

        // Unknown there: 404, and nothing cached.
        drop(requests);
        let (status, answer) = server
            .request(
                "GET",
                "/_matrix/client/v1/media/download/remote.test/missing",
                Some(&alice),
                None,
            )
            .await;
        assert_eq!(
            (status, answer["errcode"].as_str()),
            (404, Some("M_NOT_FOUND"))
        );
    });
}

#[test]
fn deactivation_with_erase_deletes_a_users_media() {
    futures::executor::block_on(async {
        let server = TestServer::new();
        let (user, alice) = server.register("alice").await;
        let mxc = upload(&server, &alice, png(200, 200), "image/png", "me.png").await;
        let rest = mxc.strip_prefix("mxc://").unwrap();
        let thumb =
            format!("/_matrix/client/v1/media/thumbnail/{rest}?width=32&height=32&method=crop");
        let (status, _) = server.request("GET", &thumb, Some(&alice), None).await;
        assert_eq!(status, 200);
        assert_eq!(server.recorded.blobs.borrow().len(), 2);
        let body = json!({
            "erase": true,
            "auth": { "type": "m.login.password", "password": "correct horse battery",
                      "identifier": { "type": "m.id.user", "user": user } }
        });
        let (status, answer) = server
            .request(
                "POST",
                "/_matrix/client/v3/account/deactivate",
                Some(&alice),
                Some(body),
            )
            .await;
        assert_eq!(status, 200, "{answer}");
        assert!(server.recorded.blobs.borrow().is_empty());
        assert!(server.rows("SELECT * FROM media").await.is_empty());
        assert!(server
            .rows("SELECT * FROM media_thumbnails")
            .await
            .is_empty());
    });
}
