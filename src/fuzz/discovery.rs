//! Answers from the network while finding a server: well-known bodies and cache headers,
//! DNS-over-HTTPS SRV answers, HTTP dates, and the HTTP/1.1 framing of the socket client.

use proptest::prelude::*;
use serde_json::json;

use super::{json_bytes, run};
use crate::discovery::http1::{self, Progress};
use crate::discovery::srv::{self, SrvChoice};
use crate::discovery::{http_date, well_known};

#[test]
fn well_known_answers_give_a_server_name_or_nothing() {
    let body = prop_oneof![
        json_bytes(),
        ".{0,30}".prop_map(|name| json!({"m.server": name}).to_string().into_bytes()),
        "[a-z.]{1,12}(:[0-9]{1,6})?"
            .prop_map(|name| json!({"m.server": name}).to_string().into_bytes()),
    ];
    let header = prop::option::of(prop_oneof![
        "(max-age|no-store|no-cache|public|s-maxage)(=\"?[0-9a-z]{0,22}\"?)?(, ?(max-age=[0-9]{0,25}|private))?",
        ".{0,30}",
    ]);
    run(
        "well_known",
        (
            any::<u16>(),
            body,
            header,
            prop::option::of(".{0,30}"),
            any::<u64>(),
        ),
        |(status, body, cache_control, expires, now)| {
            let answer = well_known::WellKnown::from_response(
                status,
                &body,
                cache_control.as_deref(),
                expires.as_deref(),
                now,
            );
            if let Some(name) = &answer.delegation {
                prop_assert_eq!(status, 200);
                prop_assert!(name.port() != Some(0));
            }
            Ok(())
        },
    );
}

#[test]
fn http_dates_parse_or_are_none() {
    run(
        "http_date",
        prop_oneof![
            "[A-Za-z]{3}, [0-9]{1,2} [A-Za-z]{3} [0-9]{2,4} [0-9]{1,2}:[0-9]{1,2}:[0-9]{1,2} GMT",
            "[A-Za-z]{3,9},? [0-9]{1,3}-[A-Za-z]{3}-[0-9]{2,5} [0-9:]{0,12}",
            ".{0,40}",
        ],
        |text| {
            let _ = http_date::parse(&text);
            Ok(())
        },
    );
}

fn srv_data() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9]{1,6} [0-9]{1,6} [0-9]{1,6} [a-z.]{0,12}\\.?",
        "[0-9 ]{0,20}[a-z.:\\[\\]0-9]{0,14}",
        ".{0,30}",
    ]
}

#[test]
fn doh_srv_answers_are_records_or_errors() {
    let record = (any::<u16>(), prop::option::of(any::<u64>()), srv_data())
        .prop_map(|(kind, ttl, data)| json!({"type": kind % 40, "TTL": ttl, "data": data}));
    let answer = (0..6u64, prop::collection::vec(record, 0..6)).prop_map(|(status, answer)| {
        json!({"Status": status, "Answer": answer})
            .to_string()
            .into_bytes()
    });
    run(
        "doh_srv_json",
        (prop_oneof![answer, json_bytes()], any::<u32>()),
        |(body, random)| {
            let Ok(answer) = srv::parse_doh_json(&body) else {
                return Ok(());
            };
            match srv::choose(&answer.records, random) {
                SrvChoice::Target { target, port } => {
                    prop_assert!(answer
                        .records
                        .iter()
                        .any(|r| r.target == target && r.port == port));
                }
                SrvChoice::None => prop_assert!(answer.records.is_empty()),
                SrvChoice::Unavailable => {
                    prop_assert!(answer.records.iter().all(|r| r.target.is_empty()))
                }
            }
            if let Some(ttl) = answer.ttl_secs {
                let clamped = srv::clamp_ttl(ttl);
                prop_assert!(clamped <= ttl.max(srv::clamp_ttl(0)));
            }
            Ok(())
        },
    );
}

/// A well-formed response with a body framed by length, by chunks, or by closing.
fn framed_response() -> impl Strategy<Value = (u16, Vec<u8>, Vec<u8>)> {
    (
        200..600u16,
        prop::collection::vec(any::<u8>(), 0..300),
        0..3u8,
        prop::collection::vec(1..50usize, 1..6),
    )
        .prop_map(|(status, body, framing, chunk_sizes)| {
            let status = if status == 204 || status == 304 {
                200
            } else {
                status
            };
            let mut bytes = format!("HTTP/1.1 {status} Whatever\r\nServer: x\r\n").into_bytes();
            match framing {
                0 => {
                    bytes.extend(format!("Content-Length: {}\r\n\r\n", body.len()).bytes());
                    bytes.extend(&body);
                }
                1 => {
                    bytes.extend(b"Transfer-Encoding: chunked\r\n\r\n");
                    let mut rest = &body[..];
                    let mut sizes = chunk_sizes.iter().cycle();
                    while !rest.is_empty() {
                        let n = (*sizes.next().unwrap()).min(rest.len());
                        bytes.extend(format!("{n:x};ext=1\r\n").bytes());
                        bytes.extend(&rest[..n]);
                        bytes.extend(b"\r\n");
                        rest = &rest[n..];
                    }
                    bytes.extend(b"0\r\n\r\n");
                }
                _ => {
                    bytes.extend(b"\r\n");
                    bytes.extend(&body);
                }
            }
            (status, body, bytes)
        })
}

#[test]
fn http1_responses_read_in_any_pieces_give_the_body_sent() {
    run(
        "http1_framing_round_trip",
        (framed_response(), any::<usize>()),
        |((status, body, bytes), cut)| {
            // Read so far: a prefix; the answer is "more" or the whole response, never wrong.
            let cut = cut % (bytes.len() + 1);
            match http1::parse_response(&bytes[..cut], false) {
                Ok(Progress::Incomplete) => {}
                Ok(Progress::Complete(response)) => {
                    prop_assert_eq!(response.status, status);
                    prop_assert_eq!(&response.body, &body);
                }
                Err(e) => return Err(TestCaseError::fail(format!("prefix refused: {e}"))),
            }
            match http1::parse_response(&bytes, true) {
                Ok(Progress::Complete(response)) => {
                    prop_assert_eq!(response.status, status);
                    prop_assert_eq!(&response.body, &body);
                }
                other => return Err(TestCaseError::fail(format!("{other:?}"))),
            }
            Ok(())
        },
    );
}

#[test]
fn http1_garbage_is_an_error_or_more_to_read() {
    let mutated = (
        framed_response(),
        prop::collection::vec((any::<usize>(), any::<u8>()), 1..4),
    )
        .prop_map(|((_, _, mut bytes), changes)| {
            for (at, byte) in changes {
                let i = at % bytes.len();
                bytes[i] = byte;
            }
            bytes
        });
    let head = "HTTP/1\\.[01] [0-9]{1,4}( [ -~]{0,10})?\r\n(([A-Za-z-]{0,12}): ?[ -~]{0,16}\r\n){0,4}\r\n[ -~]{0,40}"
        .prop_map(String::into_bytes);
    run(
        "http1_framing_garbage",
        (
            prop_oneof![mutated, head, prop::collection::vec(any::<u8>(), 0..200)],
            any::<bool>(),
        ),
        |(bytes, eof)| {
            if let Ok(Progress::Complete(response)) = http1::parse_response(&bytes, eof) {
                prop_assert!(response.body.len() <= bytes.len());
            }
            Ok(())
        },
    );
}

#[test]
fn http1_requests_refuse_injection_and_frame_what_they_send() {
    run(
        "http1_encode_request",
        (
            prop_oneof![Just("GET".to_owned()), Just("PUT".to_owned()), ".{0,6}"],
            prop_oneof!["/[!-~]{0,30}", ".{0,30}"],
            ".{0,20}",
            prop::collection::vec((".{0,10}", ".{0,16}"), 0..3),
            prop::collection::vec(any::<u8>(), 0..40),
        ),
        |(method, path, host, headers, body)| {
            let headers: Vec<(&str, &str)> = headers
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str()))
                .collect();
            let request = http1::Request {
                method: &method,
                path: &path,
                host: &host,
                headers: &headers,
                body: &body,
            };
            let Ok(bytes) = http1::encode_request(&request) else {
                return Ok(());
            };
            // One head, ended once, followed by exactly the body: nothing a caller passed can
            // add a line or a second request.
            let end = bytes
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .ok_or_else(|| TestCaseError::fail("no end of head"))?;
            prop_assert_eq!(&bytes[end + 4..], &body[..]);
            let head = std::str::from_utf8(&bytes[..end])
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            let lines: Vec<&str> = head.split("\r\n").collect();
            prop_assert!(lines.iter().all(|line| !line.contains(['\r', '\n'])));
            let framing = lines
                .iter()
                .filter(|l| l.starts_with("Content-Length: "))
                .count();
            // Request line, Host, the caller's headers, Content-Length if any, Connection.
            prop_assert_eq!(lines.len(), headers.len() + 3 + framing);
            Ok(())
        },
    );
}
