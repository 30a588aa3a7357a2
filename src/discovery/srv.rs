//! SRV lookups through a DNS-over-HTTPS resolver's JSON API (`application/dns-json`, as served
//! by Cloudflare and Google), and the choice of one target among the records (RFC 2782).

use ruma::ServerName;
use serde::Deserialize;

use super::DiscoveryError;

/// DNS record type of SRV.
const TYPE_SRV: u16 = 33;
/// DNS response codes that mean "answered": NOERROR and NXDOMAIN (no such name).
const NOERROR: u16 = 0;
const NXDOMAIN: u16 = 3;
/// Bounds on how long a DNS answer is trusted: very short TTLs would make every federation
/// request pay for a lookup, very long ones outlive the spec's 48-hour cap.
pub const MIN_TTL_SECS: u64 = 60;
pub const MAX_TTL_SECS: u64 = 48 * 3600;
/// Lifetime of "no such record" when the resolver gives no SOA to take it from.
pub const DEFAULT_NEGATIVE_TTL_SECS: u64 = 3600;

/// One SRV record. An empty `target` is RFC 2782's ".": no service at this name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SrvRecord {
    pub priority: u16,
    pub weight: u16,
    pub port: u16,
    pub target: String,
}

/// The resolver's answer to one SRV question; no records means none exist.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SrvAnswer {
    pub records: Vec<SrvRecord>,
    /// The smallest TTL of the answer (or of the SOA for a negative answer), if any.
    pub ttl_secs: Option<u64>,
}

/// The query URL for `name`'s SRV records at a DoH JSON resolver.
pub fn doh_query_url(resolver: &str, name: &str) -> String {
    let separator = if resolver.contains('?') { '&' } else { '?' };
    // SRV names are letters, digits, '-', '_' and '.': nothing to percent-encode.
    format!("{resolver}{separator}name={name}&type=SRV")
}

#[derive(Deserialize)]
struct DohResponse {
    #[serde(rename = "Status")]
    status: u16,
    #[serde(rename = "Answer", default)]
    answer: Vec<DohRecord>,
    #[serde(rename = "Authority", default)]
    authority: Vec<DohRecord>,
}

#[derive(Deserialize)]
struct DohRecord {
    #[serde(rename = "type")]
    kind: u16,
    #[serde(rename = "TTL", default)]
    ttl: Option<u64>,
    #[serde(default)]
    data: String,
}

/// Parses a DoH JSON response. NXDOMAIN and NOERROR without SRV answers are "no records";
/// other statuses (SERVFAIL, REFUSED, ...) and unreadable bodies are errors, so that a broken
/// resolver is never mistaken for a server without SRV records.
pub fn parse_doh_json(body: &[u8]) -> Result<SrvAnswer, DiscoveryError> {
    let response: DohResponse = serde_json::from_slice(body)
        .map_err(|e| DiscoveryError::Dns(format!("unreadable DNS-over-HTTPS answer: {e}")))?;
    if response.status != NOERROR && response.status != NXDOMAIN {
        return Err(DiscoveryError::Dns(format!(
            "resolver answered DNS status {}",
            response.status
        )));
    }
    let srv: Vec<&DohRecord> = response
        .answer
        .iter()
        .filter(|r| r.kind == TYPE_SRV)
        .collect();
    let records: Vec<SrvRecord> = srv.iter().filter_map(|r| parse_srv_data(&r.data)).collect();
    let ttl_from = |records: &[&DohRecord]| records.iter().filter_map(|r| r.ttl).min();
    let ttl_secs = if records.is_empty() {
        // Negative caching (RFC 2308): the SOA's TTL in the authority section.
        ttl_from(&response.authority.iter().collect::<Vec<_>>()).or(Some(DEFAULT_NEGATIVE_TTL_SECS))
    } else {
        ttl_from(&srv)
    };
    Ok(SrvAnswer { records, ttl_secs })
}

/// `"priority weight port target."`; malformed records are skipped, not fatal.
pub fn parse_srv_data(data: &str) -> Option<SrvRecord> {
    let mut parts = data.split_ascii_whitespace();
    let priority = parts.next()?.parse().ok()?;
    let weight = parts.next()?.parse().ok()?;
    let port = parts.next()?.parse().ok()?;
    let target = parts.next()?.trim_end_matches('.').to_ascii_lowercase();
    if parts.next().is_some() {
        return None;
    }
    if !target.is_empty() {
        // The target is a plain hostname: no port, no brackets.
        let name = ServerName::parse(&target).ok()?;
        if name.port().is_some() || target.starts_with('[') {
            return None;
        }
        if port == 0 {
            return None;
        }
    }
    Some(SrvRecord {
        priority,
        weight,
        port,
        target,
    })
}

/// Bounds a TTL to what this server is willing to cache.
pub fn clamp_ttl(ttl: u64) -> u64 {
    ttl.clamp(MIN_TTL_SECS, MAX_TTL_SECS)
}

/// The outcome of choosing among SRV records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SrvChoice {
    Target {
        target: String,
        port: u16,
    },
    /// No records at all: continue with the next step.
    None,
    /// Only "." targets: the service is decidedly not available (RFC 2782).
    Unavailable,
}

/// RFC 2782: the lowest priority wins; among equals, a weighted random choice where weight 0
/// records sort first and are chosen only when `random` lands on them.
pub fn choose(records: &[SrvRecord], random: u32) -> SrvChoice {
    let usable: Vec<&SrvRecord> = records.iter().filter(|r| !r.target.is_empty()).collect();
    let Some(best) = usable.iter().map(|r| r.priority).min() else {
        return if records.is_empty() {
            SrvChoice::None
        } else {
            SrvChoice::Unavailable
        };
    };
    let mut group: Vec<&SrvRecord> = usable.into_iter().filter(|r| r.priority == best).collect();
    group.sort_by_key(|r| r.weight != 0);
    let total: u64 = group.iter().map(|r| u64::from(r.weight)).sum();
    let pick = u64::from(random) % (total + 1);
    let mut running = 0;
    let chosen = group
        .iter()
        .find(|r| {
            running += u64::from(r.weight);
            running >= pick
        })
        .unwrap_or(&group[0]);
    SrvChoice::Target {
        target: chosen.target.clone(),
        port: chosen.port,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(priority: u16, weight: u16, port: u16, target: &str) -> SrvRecord {
        SrvRecord {
            priority,
            weight,
            port,
            target: target.into(),
        }
    }

    #[test]
    fn query_url() {
        assert_eq!(
            doh_query_url(
                "https://cloudflare-dns.com/dns-query",
                "_matrix-fed._tcp.example.org"
            ),
            "https://cloudflare-dns.com/dns-query?name=_matrix-fed._tcp.example.org&type=SRV"
        );
        assert_eq!(
            doh_query_url("http://127.0.0.1:5353/q?ct=x", "n"),
            "http://127.0.0.1:5353/q?ct=x&name=n&type=SRV"
        );
    }

    #[test]
    fn cloudflare_style_answer() {
        let body = br#"{"Status":0,"TC":false,"RD":true,"RA":true,"AD":false,"CD":false,
            "Question":[{"name":"_matrix-fed._tcp.example.org","type":33}],
            "Answer":[
              {"name":"_matrix-fed._tcp.example.org","type":33,"TTL":3600,"data":"10 5 8443 Matrix.Example.org."},
              {"name":"_matrix-fed._tcp.example.org","type":33,"TTL":1200,"data":"20 0 8448 backup.example.org."},
              {"name":"_matrix-fed._tcp.example.org","type":33,"TTL":1200,"data":"garbage"}
            ]}"#;
        let answer = parse_doh_json(body).unwrap();
        assert_eq!(
            answer.records,
            vec![
                rec(10, 5, 8443, "matrix.example.org"),
                rec(20, 0, 8448, "backup.example.org")
            ]
        );
        assert_eq!(answer.ttl_secs, Some(1200));
    }

    #[test]
    fn nxdomain_and_empty_answers_are_no_records() {
        let nx = br#"{"Status":3,"Authority":[{"name":"example.org","type":6,"TTL":900,"data":"ns. host. 1 2 3 4 5"}]}"#;
        assert_eq!(
            parse_doh_json(nx).unwrap(),
            SrvAnswer {
                records: vec![],
                ttl_secs: Some(900)
            }
        );
        let empty = br#"{"Status":0}"#;
        assert_eq!(
            parse_doh_json(empty).unwrap(),
            SrvAnswer {
                records: vec![],
                ttl_secs: Some(DEFAULT_NEGATIVE_TTL_SECS)
            }
        );
        // A CNAME answer alone is not an SRV record.
        let cname = br#"{"Status":0,"Answer":[{"type":5,"TTL":60,"data":"x.example."}]}"#;
        assert!(parse_doh_json(cname).unwrap().records.is_empty());
    }

    #[test]
    fn resolver_failures_are_errors() {
        assert!(matches!(
            parse_doh_json(br#"{"Status":2}"#),
            Err(DiscoveryError::Dns(_))
        ));
        assert!(matches!(
            parse_doh_json(b"<html>"),
            Err(DiscoveryError::Dns(_))
        ));
    }

    #[test]
    fn srv_data_shapes() {
        assert_eq!(parse_srv_data("0 0 0 ."), Some(rec(0, 0, 0, "")));
        assert_eq!(
            parse_srv_data("1 2 3 a.example"),
            Some(rec(1, 2, 3, "a.example"))
        );
        for bad in [
            "1 2 3",
            "1 2 3 a b",
            "1 2 99999 a.",
            "x 2 3 a.",
            "1 2 3 a.example:80.",
            "1 2 0 a.",
        ] {
            assert_eq!(parse_srv_data(bad), None, "{bad}");
        }
    }

    #[test]
    fn lowest_priority_wins() {
        let records = [rec(20, 100, 1, "b.example"), rec(10, 0, 2, "a.example")];
        for random in [0, 1, 50, u32::MAX] {
            assert_eq!(
                choose(&records, random),
                SrvChoice::Target {
                    target: "a.example".into(),
                    port: 2
                }
            );
        }
    }

    #[test]
    fn weights_share_one_priority() {
        // Weights 1 and 3, total 4: picks 0..=1 choose the first, 2..=4 the second.
        let records = [
            rec(10, 1, 1, "light.example"),
            rec(10, 3, 2, "heavy.example"),
        ];
        let target = |random| match choose(&records, random) {
            SrvChoice::Target { target, .. } => target,
            other => panic!("{other:?}"),
        };
        assert_eq!(target(0), "light.example");
        assert_eq!(target(1), "light.example");
        assert_eq!(target(2), "heavy.example");
        assert_eq!(target(4), "heavy.example");
        assert_eq!(target(5), "light.example"); // 5 % 5 == 0
                                                // Zero weights only: the first is taken.
        let zeros = [rec(1, 0, 1, "z1.example"), rec(1, 0, 2, "z2.example")];
        assert_eq!(
            choose(&zeros, 7),
            SrvChoice::Target {
                target: "z1.example".into(),
                port: 1
            }
        );
    }

    #[test]
    fn dot_target_means_unavailable() {
        assert_eq!(choose(&[rec(0, 0, 0, "")], 0), SrvChoice::Unavailable);
        assert_eq!(choose(&[], 0), SrvChoice::None);
        assert_eq!(
            choose(&[rec(0, 0, 0, ""), rec(5, 0, 8448, "x.example")], 0),
            SrvChoice::Target {
                target: "x.example".into(),
                port: 8448
            }
        );
    }

    #[test]
    fn ttl_bounds() {
        assert_eq!(clamp_ttl(0), MIN_TTL_SECS);
        assert_eq!(clamp_ttl(600), 600);
        assert_eq!(clamp_ttl(u64::MAX), MAX_TTL_SECS);
    }
}
