//! The request surface every stranger reaches: routing of any path and method, percent
//! decoding of path parameters, and reading a body as a JSON object.

use proptest::prelude::*;

use super::{json_bytes, run};
use crate::api::request::{Ctx, IncomingRequest};
use crate::api::routes::ROUTES;
use crate::http::route::{percent_decode, percent_encode, route, Params};
use crate::http::ErrorCode;

fn path() -> impl Strategy<Value = String> {
    let segment = prop_oneof![
        Just("_matrix".to_owned()),
        Just("client".to_owned()),
        Just("federation".to_owned()),
        Just("media".to_owned()),
        Just("v3".to_owned()),
        Just("v1".to_owned()),
        Just("r0".to_owned()),
        Just("rooms".to_owned()),
        Just("send".to_owned()),
        "%[0-9A-Fa-f+-]{0,3}",
        "[!-~]{0,10}",
        ".{0,6}",
    ];
    prop::collection::vec(segment, 0..8).prop_map(|segments| format!("/{}", segments.join("/")))
}

#[test]
fn any_path_and_method_routes_or_is_a_matrix_error() {
    run(
        "api_route",
        (
            prop_oneof![
                Just("GET"),
                Just("PUT"),
                Just("POST"),
                Just("DELETE"),
                Just("PATCH"),
                Just("get")
            ],
            path(),
        ),
        |(method, path)| {
            if let Err(error) = route(ROUTES, method, &path) {
                prop_assert!(error.status == 404 || error.status == 405);
            }
            Ok(())
        },
    );
}

#[test]
fn percent_decoding_inverts_encoding_and_refuses_bad_escapes() {
    run(
        "percent_decode",
        (".{0,20}", "[%0-9A-Za-z+-]{0,12}"),
        |(text, escapes)| {
            prop_assert_eq!(percent_decode(&percent_encode(&text)), Some(text));
            if let Some(decoded) = percent_decode(&escapes) {
                // Every `%` started an escape of two hex digits.
                let escape_count = escapes.matches('%').count();
                prop_assert_eq!(decoded.len(), escapes.len() - 2 * escape_count);
            }
            Ok(())
        },
    );
}

#[test]
fn any_body_is_an_object_or_not_json_or_bad_json() {
    let server = crate::testing::TestServer::new();
    let config = server
        .platform
        .config()
        .expect("the test server's settings");
    run("api_json_body", json_bytes(), |body| {
        let request = IncomingRequest {
            body,
            ..Default::default()
        };
        let ctx = Ctx::new(
            request,
            server.platform.clone(),
            config.clone(),
            Params::default(),
        );
        if let Err(error) = ctx.json_object() {
            prop_assert_eq!(error.status, 400);
            prop_assert!(matches!(
                error.code,
                ErrorCode::NotJson | ErrorCode::BadJson
            ));
        }
        Ok(())
    });
}
