//! The server's own pages: plain HTML rendered here, one small inline stylesheet, no scripts and
//! no third-party assets, laid out for a phone first. Every value that reaches a page goes
//! through `escape`.

use crate::http::MediaResponse;
use crate::platform::Body;

const STYLE: &str = "\
*{box-sizing:border-box}\
body{margin:0;font:16px/1.5 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;background:#f3f4f6;color:#111827}\
main{max-width:28rem;margin:0 auto;padding:1.5rem 1rem}\
.card{background:#fff;border-radius:12px;padding:1.25rem;margin:0 0 1rem;box-shadow:0 1px 3px rgba(0,0,0,.12)}\
h1{font-size:1.4rem;margin:.2rem 0 1rem}h2{font-size:1.1rem;margin:0 0 .75rem}\
label{display:block;font-weight:600;margin:.75rem 0 .25rem}\
input{width:100%;padding:.7rem;font-size:1rem;border:1px solid #9ca3af;border-radius:8px}\
button{width:100%;padding:.75rem;margin-top:1rem;font-size:1rem;font-weight:600;border:0;border-radius:8px;background:#0f766e;color:#fff}\
button.secondary{background:#e5e7eb;color:#111827}button.danger{background:#b91c1c}\
.row{display:flex;gap:.75rem}.row form{flex:1}\
.muted{color:#4b5563;font-size:.9rem}.error{background:#fee2e2;color:#7f1d1d;padding:.75rem;border-radius:8px}\
.notice{background:#dcfce7;color:#14532d;padding:.75rem;border-radius:8px}\
ul.devices{list-style:none;padding:0;margin:0}ul.devices li{border-top:1px solid #e5e7eb;padding:.75rem 0}\
code{word-break:break-all}a{color:#0f766e}footer{text-align:center;color:#6b7280;font-size:.85rem;padding:1rem}";

/// HTML-escapes text for element content and quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A hidden form field.
pub fn hidden(name: &str, value: &str) -> String {
    format!(
        r#"<input type="hidden" name="{}" value="{}">"#,
        escape(name),
        escape(value)
    )
}

/// Headers every page carries: never cached (they hold CSRF tokens), never framed (no
/// clickjacking of a consent button), no scripts at all.
fn page_headers(set_cookie: Option<&str>) -> Vec<(String, String)> {
    let mut headers = vec![
        ("Cache-Control".into(), "no-store".into()),
        ("X-Frame-Options".into(), "DENY".into()),
        (
            "Content-Security-Policy".into(),
            "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; frame-ancestors 'none'; base-uri 'none'".into(),
        ),
        ("Referrer-Policy".into(), "no-referrer".into()),
        ("X-Content-Type-Options".into(), "nosniff".into()),
    ];
    if let Some(cookie) = set_cookie {
        headers.push(("Set-Cookie".into(), cookie.to_owned()));
    }
    headers
}

/// A whole page: `body` is already HTML.
pub fn page(
    status: u16,
    title: &str,
    server_name: &str,
    body: &str,
    set_cookie: Option<&str>,
) -> MediaResponse {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} · {server}</title><style>{STYLE}</style></head>\
         <body><main><h1>{title}</h1>{body}</main><footer>{server}</footer></body></html>",
        title = escape(title),
        server = escape(server_name),
    );
    let mut headers = page_headers(set_cookie);
    headers.push(("Content-Type".into(), "text/html; charset=utf-8".into()));
    MediaResponse {
        status,
        headers,
        body: Body::Bytes(html.into_bytes()),
    }
}

/// The Deny and Allow buttons of a consent, each a form posting `fields` (the CSRF token and
/// what is being answered) and its `decision`.
pub fn deny_or_allow(action: &str, fields: &str) -> String {
    let button = |value: &str, label: &str, class: &str| {
        format!(
            r#"<form method="post" action="{action}">{fields}{}<button class="{class}" type="submit">{label}</button></form>"#,
            hidden("decision", value)
        )
    };
    format!(
        r#"<div class="row">{}{}</div>"#,
        button("deny", "Deny", "secondary"),
        button("allow", "Allow", "")
    )
}

/// A page that only says what went wrong.
pub fn error_page(status: u16, server_name: &str, message: &str) -> MediaResponse {
    page(
        status,
        "Something went wrong",
        server_name,
        &format!(
            r#"<div class="card"><p class="error">{}</p></div>"#,
            escape(message)
        ),
        None,
    )
}

/// 303 See Other: after a form, the browser follows with a GET.
pub fn redirect(location: &str, set_cookie: Option<&str>) -> MediaResponse {
    let mut headers = page_headers(set_cookie);
    headers.push(("Location".into(), location.to_owned()));
    MediaResponse {
        status: 303,
        headers,
        body: Body::Bytes(Vec::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_neutralises_markup_and_attributes() {
        assert_eq!(
            escape(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        assert!(hidden("next", "\"><script>").contains("&quot;&gt;&lt;script&gt;"));
    }
}
