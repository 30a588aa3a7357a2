//! Every branch of the spec's resolution list, with the spec's own shapes of names.

use ruma::ServerName;

use super::*;
use crate::discovery::srv::{SrvAnswer, SrvRecord};
use crate::discovery::well_known::{WellKnown, DEFAULT_CACHE_SECS, ERROR_CACHE_SECS};

fn start(name: &str) -> Resolution {
    Resolution::new(<&ServerName>::try_from(name).expect("valid server name"))
}

fn dest(connect: &str, port: u16, host_header: &str, tls: &str) -> Destination {
    Destination {
        connect_host: connect.into(),
        connect_port: port,
        host_header: host_header.into(),
        tls_server_name: tls.into(),
    }
}

fn done(destination: Destination, valid_for_secs: Option<u64>) -> Step {
    Step::Done {
        destination,
        valid_for_secs,
    }
}

fn delegation(to: &str, cache_secs: u64) -> WellKnown {
    WellKnown {
        delegation: Some(ServerName::parse(to).unwrap()),
        cache_secs,
    }
}

fn no_delegation() -> WellKnown {
    WellKnown {
        delegation: None,
        cache_secs: ERROR_CACHE_SECS,
    }
}

fn srv(target: &str, port: u16, ttl: u64) -> SrvAnswer {
    SrvAnswer {
        records: vec![SrvRecord {
            priority: 10,
            weight: 0,
            port,
            target: target.into(),
        }],
        ttl_secs: Some(ttl),
    }
}

fn nothing(ttl: u64) -> SrvAnswer {
    SrvAnswer {
        records: vec![],
        ttl_secs: Some(ttl),
    }
}

#[test]
fn step1_ip_literals() {
    let d = |name| start(name).step();
    assert_eq!(
        d("1.2.3.4"),
        done(dest("1.2.3.4", 8448, "1.2.3.4", "1.2.3.4"), None)
    );
    assert_eq!(
        d("1.2.3.4:1234"),
        done(dest("1.2.3.4", 1234, "1.2.3.4:1234", "1.2.3.4"), None)
    );
    assert_eq!(
        d("[1234:5678::abcd]"),
        done(
            dest(
                "1234:5678::abcd",
                8448,
                "[1234:5678::abcd]",
                "1234:5678::abcd"
            ),
            None
        )
    );
    assert_eq!(
        d("[::1]:5678"),
        done(dest("::1", 5678, "[::1]:5678", "::1"), None)
    );
}

#[test]
fn step2_hostname_with_port() {
    assert_eq!(
        start("matrix.org:8888").step(),
        done(
            dest("matrix.org", 8888, "matrix.org:8888", "matrix.org"),
            None
        )
    );
    assert!(!dest("matrix.org", 8888, "matrix.org:8888", "matrix.org").needs_socket());
}

#[test]
fn step3_asks_for_the_well_known_of_the_hostname() {
    assert_eq!(
        start("Matrix.Org").step(),
        Step::NeedWellKnown("matrix.org".into())
    );
}

#[test]
fn step3_1_delegation_to_an_ip() {
    let mut r = start("example.com");
    assert_eq!(
        r.well_known(&delegation("1.2.3.4", 7200)),
        done(dest("1.2.3.4", 8448, "1.2.3.4", "1.2.3.4"), Some(7200))
    );
    let mut r = start("example.com");
    assert_eq!(
        r.well_known(&delegation("[::1]:1234", 7200)),
        done(dest("::1", 1234, "[::1]:1234", "::1"), Some(7200))
    );
}

#[test]
fn step3_2_delegation_with_port() {
    let mut r = start("example.com");
    let step = r.well_known(&delegation(
        "delegated.example.com:1234",
        DEFAULT_CACHE_SECS,
    ));
    let expected = dest(
        "delegated.example.com",
        1234,
        "delegated.example.com:1234",
        "delegated.example.com",
    );
    assert!(!expected.needs_socket());
    assert_eq!(step, done(expected, Some(DEFAULT_CACHE_SECS)));
}

#[test]
fn step3_3_delegation_then_matrix_fed_srv() {
    let mut r = start("example.com");
    assert_eq!(
        r.well_known(&delegation("delegated.example.com", DEFAULT_CACHE_SECS)),
        Step::NeedSrv("_matrix-fed._tcp.delegated.example.com".into())
    );
    let step = r.srv(&srv("target.example.net", 8443, 300), 0).unwrap();
    // Connect to the SRV target, but Host and certificate are the delegated hostname.
    let expected = dest(
        "target.example.net",
        8443,
        "delegated.example.com",
        "delegated.example.com",
    );
    assert!(expected.needs_socket());
    assert_eq!(step, done(expected, Some(300)));
}

#[test]
fn step3_4_delegation_then_deprecated_matrix_srv() {
    let mut r = start("example.com");
    r.well_known(&delegation("delegated.example.com", DEFAULT_CACHE_SECS));
    assert_eq!(
        r.srv(&nothing(600), 0).unwrap(),
        Step::NeedSrv("_matrix._tcp.delegated.example.com".into())
    );
    assert_eq!(
        r.srv(&srv("delegated.example.com", 8449, 900), 0).unwrap(),
        done(
            dest(
                "delegated.example.com",
                8449,
                "delegated.example.com",
                "delegated.example.com"
            ),
            Some(600)
        )
    );
}

#[test]
fn step3_5_delegation_without_srv_uses_8448() {
    let mut r = start("example.com");
    r.well_known(&delegation("delegated.example.com", DEFAULT_CACHE_SECS));
    r.srv(&nothing(600), 0).unwrap();
    assert_eq!(
        r.srv(&nothing(3600), 0).unwrap(),
        done(
            dest(
                "delegated.example.com",
                8448,
                "delegated.example.com",
                "delegated.example.com"
            ),
            Some(600)
        )
    );
}

#[test]
fn step4_no_delegation_then_matrix_fed_srv_of_the_hostname() {
    let mut r = start("example.com");
    assert_eq!(
        r.well_known(&no_delegation()),
        Step::NeedSrv("_matrix-fed._tcp.example.com".into())
    );
    // The original server name is the Host and certificate name, not the SRV target.
    assert_eq!(
        r.srv(&srv("matrix.example.com", 443, 86_400), 0).unwrap(),
        done(
            dest("matrix.example.com", 443, "example.com", "example.com"),
            Some(ERROR_CACHE_SECS)
        )
    );
}

#[test]
fn step5_no_delegation_then_deprecated_srv() {
    let mut r = start("example.com");
    r.well_known(&no_delegation());
    assert_eq!(
        r.srv(&nothing(600), 0).unwrap(),
        Step::NeedSrv("_matrix._tcp.example.com".into())
    );
    assert_eq!(
        r.srv(&srv("old.example.com", 8448, 600), 0).unwrap(),
        done(
            dest("old.example.com", 8448, "example.com", "example.com"),
            Some(600)
        )
    );
}

#[test]
fn step6_nothing_found_uses_the_hostname_on_8448() {
    let mut r = start("example.com");
    r.well_known(&no_delegation());
    r.srv(&nothing(7200), 0).unwrap();
    let step = r.srv(&nothing(7200), 0).unwrap();
    let expected = dest("example.com", 8448, "example.com", "example.com");
    assert!(!expected.needs_socket());
    assert_eq!(step, done(expected, Some(ERROR_CACHE_SECS)));
}

#[test]
fn srv_target_equal_to_the_name_needs_no_socket() {
    let mut r = start("example.com");
    r.well_known(&no_delegation());
    let Step::Done { destination, .. } = r.srv(&srv("example.com", 8443, 600), 0).unwrap() else {
        panic!("expected a destination");
    };
    assert!(!destination.needs_socket());
}

#[test]
fn srv_dot_target_is_an_error() {
    let mut r = start("example.com");
    r.well_known(&no_delegation());
    assert_eq!(
        r.srv(&srv("", 0, 600), 0),
        Err(DiscoveryError::ServiceUnavailable(
            "_matrix-fed._tcp.example.com".into()
        ))
    );
}

#[test]
fn tiny_dns_ttls_are_raised_to_the_floor() {
    let mut r = start("example.com");
    r.well_known(&no_delegation());
    let Step::Done { valid_for_secs, .. } = r.srv(&srv("t.example", 1, 5), 0).unwrap() else {
        panic!("expected a destination");
    };
    assert_eq!(valid_for_secs, Some(crate::discovery::srv::MIN_TTL_SECS));
}

#[test]
fn out_of_order_answers_change_nothing() {
    let mut r = start("example.com");
    assert_eq!(
        r.srv(&nothing(1), 0).unwrap(),
        Step::NeedWellKnown("example.com".into())
    );
    let mut r = start("1.2.3.4");
    let before = r.step();
    assert_eq!(r.well_known(&delegation("evil.example", 1)), before);
}
