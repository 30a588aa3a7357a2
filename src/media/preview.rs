//! URL previews: which URLs the server may fetch for a client, and the OpenGraph fields of a
//! page. The fetching itself is `client/media.rs`.

use std::net::IpAddr;

use serde_json::{Map, Value};
use url::{Host, Url};

/// Why a URL is not fetched.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    NotHttp,
    /// Loopback, private, link-local and other non-public addresses and names.
    Private,
    Malformed,
}

/// Parses a URL a client (or a page's redirect) names, and refuses what must not be fetched:
/// other schemes, credentials, and hosts on this machine's or a private network.
pub fn check_url(raw: &str, allow_private: bool) -> Result<Url, Refused> {
    let url = Url::parse(raw).map_err(|_| Refused::Malformed)?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(Refused::NotHttp);
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Refused::Malformed);
    }
    let host = url.host().ok_or(Refused::Malformed)?;
    if allow_private {
        return Ok(url);
    }
    let private = match host {
        Host::Ipv4(ip) => !is_public(IpAddr::V4(ip)),
        Host::Ipv6(ip) => !is_public(IpAddr::V6(ip)),
        Host::Domain(name) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            !name.contains('.')
                || ["localhost", "local", "internal", "lan", "home.arpa"]
                    .iter()
                    .any(|suffix| name == *suffix || name.ends_with(&format!(".{suffix}")))
        }
    };
    if private {
        return Err(Refused::Private);
    }
    Ok(url)
}

/// Whether an address is on the public internet (not loopback, private, link-local, shared,
/// documentation, multicast or reserved space).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(ip) => {
            let [a, b, ..] = ip.octets();
            !(ip.is_loopback()
                || ip.is_private()
                || ip.is_link_local()
                || ip.is_unspecified()
                || ip.is_broadcast()
                || ip.is_documentation()
                || ip.is_multicast()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || a >= 240)
        }
        IpAddr::V6(ip) => {
            if let Some(v4) = ip.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = ip.segments()[0];
            !(ip.is_loopback()
                || ip.is_unspecified()
                || ip.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || first == 0x2001 && ip.segments()[1] == 0x0db8)
        }
    }
}

/// The OpenGraph fields of an HTML page (`og:*` metas), with the `<title>` and the description
/// meta standing in when the page has no `og:title`/`og:description`. Relative `og:image` and
/// `og:url` are resolved against `base`.
pub fn open_graph(html: &str, base: &Url) -> Map<String, Value> {
    let mut og = Map::new();
    let mut description = None;
    for tag in tags(html, "meta") {
        let attr = |name: &str| attribute(tag, name);
        let key = attr("property").or_else(|| attr("name"));
        let (Some(key), Some(content)) = (key, attr("content")) else {
            continue;
        };
        if key.starts_with("og:") && !og.contains_key(&key) {
            let value = match key.as_str() {
                "og:image" | "og:url" => base
                    .join(&content)
                    .map(|u| u.to_string())
                    .unwrap_or(content),
                _ => content,
            };
            let value = match key.as_str() {
                "og:image:width" | "og:image:height" => value
                    .parse::<u64>()
                    .map(Value::from)
                    .unwrap_or(Value::String(value)),
                _ => Value::String(value),
            };
            og.insert(key, value);
        } else if key == "description" {
            description.get_or_insert(content);
        }
    }
    if !og.contains_key("og:title") {
        if let Some(title) = element_text(html, "title") {
            og.insert("og:title".into(), Value::String(title));
        }
    }
    if let (false, Some(text)) = (og.contains_key("og:description"), description) {
        og.insert("og:description".into(), Value::String(text));
    }
    og
}

/// The text inside each `<name ...>` start tag, case-insensitively.
fn tags<'a>(html: &'a str, name: &str) -> Vec<&'a str> {
    let lower = html.to_ascii_lowercase();
    let open = format!("<{name}");
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(i) = lower[from..].find(&open) {
        let start = from + i + open.len();
        let Some(len) = lower[start..].find('>') else {
            break;
        };
        if lower[start..].starts_with(|c: char| c.is_ascii_whitespace() || c == '/') {
            out.push(&html[start..start + len]);
        }
        from = start + len;
    }
    out
}

/// An attribute's value in a start tag's text, entities decoded.
fn attribute(tag: &str, name: &str) -> Option<String> {
    let lower = tag.to_ascii_lowercase();
    let mut from = 0;
    while let Some(i) = lower[from..].find(name) {
        let at = from + i;
        from = at + name.len();
        let before_ok = at == 0 || lower.as_bytes()[at - 1].is_ascii_whitespace();
        let rest = lower[from..].trim_start();
        if !before_ok || !rest.starts_with('=') {
            continue;
        }
        let value_start = tag.len() - rest.len() + 1;
        let value = tag[value_start..].trim_start();
        let text = match value.chars().next()? {
            quote @ ('"' | '\'') => value[1..].split(quote).next()?,
            // Unquoted: up to the space, or the slash of a self-closing tag.
            _ => value
                .split(|c: char| c.is_ascii_whitespace())
                .next()?
                .trim_end_matches('/'),
        };
        return Some(decode_entities(text));
    }
    None
}

fn element_text(html: &str, name: &str) -> Option<String> {
    let lower = html.to_ascii_lowercase();
    let start = lower.find(&format!("<{name}"))?;
    let content = start + lower[start..].find('>')? + 1;
    let end = content + lower[content..].find(&format!("</{name}"))?;
    let text = decode_entities(html[content..end].trim());
    (!text.is_empty()).then_some(text)
}

fn decode_entities(text: &str) -> String {
    text.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&apos;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_odd_urls_are_refused() {
        for url in [
            "http://127.0.0.1/",
            "http://10.1.2.3/x",
            "http://192.168.0.1/",
            "http://169.254.169.254/latest/meta-data",
            "http://[::1]/",
            "http://[fd00::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://localhost:8080/",
            "http://printer.local/",
            "http://intranet/",
        ] {
            assert_eq!(check_url(url, false), Err(Refused::Private), "{url}");
        }
        assert_eq!(
            check_url("file:///etc/passwd", false),
            Err(Refused::NotHttp)
        );
        assert_eq!(
            check_url("http://user:pw@example.org/", false),
            Err(Refused::Malformed)
        );
        assert!(check_url("https://example.org/page", false).is_ok());
        assert!(check_url("http://127.0.0.1:9/", true).is_ok());
    }

    #[test]
    fn open_graph_fields_are_read() {
        let html = r#"<html><head><title>The Rock (1996)</title>
            <META property="og:title" content="The Rock" />
            <meta property='og:type' content='video.movie'>
            <meta property="og:image" content="test.png" />
            <meta property="og:image:width" content="279" />
            <meta property="og:url" content="http://www.imdb.com/title/tt0117500/" />
            <meta property=og:site_name content=IMDb/>
            <meta name="description" content="A &quot;film&quot;">
            </head></html>"#;
        let og = open_graph(
            html,
            &Url::parse("http://example.org/dir/page.html").unwrap(),
        );
        assert_eq!(og["og:title"], "The Rock");
        assert_eq!(og["og:type"], "video.movie");
        assert_eq!(og["og:image"], "http://example.org/dir/test.png");
        assert_eq!(og["og:image:width"], 279);
        assert_eq!(og["og:url"], "http://www.imdb.com/title/tt0117500/");
        assert_eq!(og["og:site_name"], "IMDb");
        assert_eq!(og["og:description"], "A \"film\"");
    }

    #[test]
    fn a_page_without_open_graph_falls_back_to_its_title() {
        let og = open_graph(
            "<title>Hello &amp; welcome</title>",
            &Url::parse("http://example.org/").unwrap(),
        );
        assert_eq!(og["og:title"], "Hello & welcome");
    }
}
