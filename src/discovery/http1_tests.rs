use super::*;

fn get(path: &str) -> Request<'_> {
    Request {
        method: "GET",
        path,
        host: "example.org",
        headers: &[],
        body: b"",
    }
}

fn complete(bytes: &[u8], eof: bool) -> Response {
    match parse_response(bytes, eof) {
        Ok(Progress::Complete(response)) => response,
        other => panic!("expected a complete response, got {other:?}"),
    }
}

#[test]
fn encodes_get_with_host_and_close() {
    let headers = [("Authorization", "X-Matrix origin=\"a\"")];
    let request = Request {
        headers: &headers,
        ..get("/_matrix/key/v2/server")
    };
    assert_eq!(
        String::from_utf8(encode_request(&request).unwrap()).unwrap(),
        "GET /_matrix/key/v2/server HTTP/1.1\r\nHost: example.org\r\n\
         Authorization: X-Matrix origin=\"a\"\r\nConnection: close\r\n\r\n"
    );
}

#[test]
fn encodes_put_with_length_and_body() {
    let request = Request {
        method: "PUT",
        body: b"{}",
        ..get("/_matrix/federation/v1/send/1")
    };
    let bytes = String::from_utf8(encode_request(&request).unwrap()).unwrap();
    assert!(bytes.contains("Content-Length: 2\r\n"));
    assert!(bytes.ends_with("\r\n\r\n{}"));
}

#[test]
fn refuses_injection_and_framing_headers() {
    let injected = [("X-A", "b\r\nEvil: 1")];
    assert!(encode_request(&Request {
        headers: &injected,
        ..get("/")
    })
    .is_err());
    let framing = [("content-length", "5")];
    assert!(encode_request(&Request {
        headers: &framing,
        ..get("/")
    })
    .is_err());
    assert!(encode_request(&Request {
        host: "a\r\nb",
        ..get("/")
    })
    .is_err());
    assert!(encode_request(&get("/a b")).is_err());
    assert!(encode_request(&get("relative")).is_err());
    assert!(encode_request(&Request {
        method: "G T",
        ..get("/")
    })
    .is_err());
}

#[test]
fn content_length_body() {
    let raw = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}";
    let response = complete(raw, false);
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some("application/json"));
    assert_eq!(response.body, b"{}");
    // Byte by byte, it is incomplete until the last byte.
    for cut in 0..raw.len() {
        assert_eq!(
            parse_response(&raw[..cut], false),
            Ok(Progress::Incomplete),
            "{cut}"
        );
    }
    assert!(parse_response(&raw[..raw.len() - 1], true).is_err());
}

#[test]
fn chunked_body_with_extensions_and_trailers() {
    let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
                4;ext=1\r\nWiki\r\n5\r\npedia\r\n0\r\nX-Trailer: 1\r\n\r\n";
    assert_eq!(complete(raw, false).body, b"Wikipedia");
    for cut in 0..raw.len() {
        assert_eq!(
            parse_response(&raw[..cut], false),
            Ok(Progress::Incomplete),
            "{cut}"
        );
    }
    let no_trailer =
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n2\r\nab\r\n0\r\n\r\n";
    assert_eq!(complete(no_trailer, false).body, b"ab");
    let bad = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n";
    assert!(parse_response(bad, false).is_err());
    let bad_crlf = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n";
    assert!(parse_response(bad_crlf, false).is_err());
}

#[test]
fn body_until_close_and_empty_statuses() {
    let raw = b"HTTP/1.0 200 OK\r\n\r\nhello";
    assert_eq!(parse_response(raw, false), Ok(Progress::Incomplete));
    assert_eq!(complete(raw, true).body, b"hello");
    assert!(complete(b"HTTP/1.1 204 No Content\r\n\r\n", false)
        .body
        .is_empty());
}

#[test]
fn interim_responses_are_skipped() {
    let raw = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
    assert_eq!(complete(raw, false).status, 404);
}

#[test]
fn malformed_heads_are_errors() {
    for raw in [
        &b"SSH-2.0-OpenSSH\r\n\r\n"[..],
        b"HTTP/1.1 2000 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n",
    ] {
        assert!(
            parse_response(raw, false).is_err(),
            "{:?}",
            String::from_utf8_lossy(raw)
        );
    }
    assert!(parse_response(b"HTTP/1.1 200", true).is_err());
    assert!(parse_response(&vec![b'a'; MAX_HEAD_BYTES + 1], false).is_err());
}
