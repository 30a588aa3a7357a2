//! Media headers and bodies: `Range`, the federation `multipart/mixed` answer, and the
//! `Content-Type`/`Content-Disposition` we derive from what uploaders and servers declare.

use proptest::prelude::*;

use super::run;
use crate::media::headers::{content_disposition, stored_content_type};
use crate::media::multipart::{self, MediaPart};
use crate::media::range::{self, Ranged};

#[test]
fn ranges_are_inside_the_object_or_refused() {
    let number = || prop_oneof![0..2000u64, any::<u64>(), u64::MAX - 2..=u64::MAX];
    let numbers = (number(), number(), 0..3u8).prop_map(|(a, b, form)| match form {
        0 => format!("bytes={a}-{b}"),
        1 => format!("bytes={a}-"),
        _ => format!("bytes=-{b}"),
    });
    let header = prop_oneof![
        numbers,
        "bytes=[0-9]{0,21}-[0-9]{0,21}",
        "bytes= ?-?[0-9]{0,4}(, ?[0-9]{0,3}-[0-9]{0,3})?",
        ".{0,30}",
    ];
    let size = prop_oneof![0..2000u64, any::<u64>()];
    run(
        "media_range",
        (prop::option::of(header), size),
        |(header, size)| {
            if let Ranged::Part(slice) = range::parse(header.as_deref(), size) {
                prop_assert!(slice.length >= 1);
                prop_assert!(slice
                    .offset
                    .checked_add(slice.length)
                    .is_some_and(|end| end <= size));
                let _ = range::content_range(slice, size);
            }
            Ok(())
        },
    );
}

/// A content type as another server might declare it: sane, or with anything a header line
/// may carry.
fn content_type() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z]{1,8}/[a-z0-9.+-]{1,12}(; ?[a-z]{1,6}=[a-z0-9]{1,6})?",
        "[ -~]{0,30}"
    ]
}

#[test]
fn multipart_answers_we_frame_parse_back_to_the_same_bytes() {
    run(
        "media_multipart_round_trip",
        (
            "[a-z]{1,8}/[a-z0-9.+-]{1,12}",
            "(inline|attachment)(; filename=\"[a-z.]{1,10}\")?",
            prop::collection::vec(any::<u8>(), 0..400),
        ),
        |(kind, disposition, body)| {
            let frame = multipart::frame(&kind, &disposition);
            let answer = [frame.head.clone(), body.clone(), frame.tail.clone()].concat();
            let parsed = multipart::parse(&frame.content_type, &answer);
            prop_assert_eq!(
                parsed,
                Some(MediaPart::Bytes {
                    content_type: Some(kind),
                    disposition: Some(disposition),
                    body,
                })
            );
            Ok(())
        },
    );
}

#[test]
fn multipart_garbage_is_refused_not_a_panic() {
    let boundary = "[A-Za-z0-9'()+_,./:=?-]{0,12}";
    let part = (
        "[ -~]{0,20}",
        prop::collection::vec(any::<u8>(), 0..40),
        prop::bool::ANY,
    );
    let body =
        (boundary, prop::collection::vec(part, 0..4), ".{0,10}").prop_map(|(b, parts, tail)| {
            let mut bytes = b"preamble\r\n".to_vec();
            for (headers, body, crlf) in parts {
                bytes.extend(format!("--{b}\r\n{headers}").bytes());
                bytes.extend(if crlf { &b"\r\n\r\n"[..] } else { &b"\n\n"[..] });
                bytes.extend(body);
                bytes.extend(b"\r\n");
            }
            bytes.extend(format!("--{b}{tail}").bytes());
            (format!("multipart/mixed; boundary=\"{b}\""), bytes)
        });
    let noise = (content_type(), prop::collection::vec(any::<u8>(), 0..200));
    run(
        "media_multipart_garbage",
        prop_oneof![body, noise],
        |(content_type, bytes)| {
            if let Some(MediaPart::Bytes { body, .. }) = multipart::parse(&content_type, &bytes) {
                prop_assert!(body.len() <= bytes.len());
            }
            Ok(())
        },
    );
}

#[test]
fn media_headers_we_send_are_single_safe_lines() {
    run(
        "media_headers",
        (
            prop::option::of(prop_oneof![content_type(), ".{0,300}"]),
            prop::option::of(".{0,40}"),
        ),
        |(declared, filename)| {
            let stored = stored_content_type(declared.as_deref());
            prop_assert!(
                stored.bytes().all(|b| (0x20..0x7f).contains(&b)),
                "{:?}",
                stored
            );
            let disposition = content_disposition(&stored, filename.as_deref());
            prop_assert!(
                disposition.bytes().all(|b| (0x20..0x7f).contains(&b)),
                "{:?}",
                disposition
            );
            prop_assert!(
                disposition.starts_with("inline") || disposition.starts_with("attachment")
            );
            Ok(())
        },
    );
}
