//! Pushers as `POST /pushers/set` receives them and `GET /pushers` lists them, and the checks
//! the spec asks of a new one.

use serde_json::{json, Map, Value};

use super::gateway::NOTIFY_PATH;

/// One pusher of a user.
#[derive(Clone, Debug, PartialEq)]
pub struct Pusher {
    pub app_id: String,
    pub pushkey: String,
    pub kind: String,
    pub app_display_name: String,
    pub device_display_name: String,
    pub profile_tag: Option<String>,
    pub lang: String,
    pub data: Map<String, Value>,
    /// When the pushkey was set, in ms.
    pub pushkey_ts: u64,
}

impl Pusher {
    /// The pusher as `GET /pushers` shows it.
    pub fn to_json(&self) -> Value {
        let mut out = json!({
            "app_id": self.app_id,
            "pushkey": self.pushkey,
            "kind": self.kind,
            "app_display_name": self.app_display_name,
            "device_display_name": self.device_display_name,
            "lang": self.lang,
            "data": self.data,
        });
        if let Some(tag) = &self.profile_tag {
            out["profile_tag"] = json!(tag);
        }
        out
    }

    /// The gateway's URL of an HTTP pusher.
    pub fn url(&self) -> Option<&str> {
        self.data.get("url").and_then(Value::as_str)
    }
}

/// What a `POST /pushers/set` asks for.
#[derive(Clone, Debug, PartialEq)]
pub enum SetPusher {
    /// `kind: null`: remove the user's pusher with this app id and pushkey.
    Delete { app_id: String, pushkey: String },
    /// Create or replace; without `append`, the same app id and pushkey of other users go.
    Set { pusher: Pusher, append: bool },
}

/// Why a request was refused: `(errcode, message)`, all 400.
pub type Refusal = (&'static str, String);

fn string(body: &Map<String, Value>, key: &str) -> Result<String, Refusal> {
    match body.get(key) {
        Some(Value::String(s)) => Ok(s.clone()),
        None | Some(Value::Null) => Err(("M_MISSING_PARAM", format!("Missing parameter: {key}"))),
        Some(_) => Err(("M_INVALID_PARAM", format!("{key} must be a string"))),
    }
}

/// Reads and checks a `POST /pushers/set` body; `now_ms` becomes the pushkey's timestamp.
pub fn parse_set(body: &Map<String, Value>, now_ms: u64) -> Result<SetPusher, Refusal> {
    let app_id = string(body, "app_id")?;
    let pushkey = string(body, "pushkey")?;
    // The spec's limits: app id 64 characters, pushkey 512 bytes.
    if app_id.chars().count() > 64 {
        return Err((
            "M_INVALID_PARAM",
            "app_id is longer than 64 characters".into(),
        ));
    }
    if pushkey.len() > 512 {
        return Err(("M_INVALID_PARAM", "pushkey is longer than 512 bytes".into()));
    }
    let kind = match body.get("kind") {
        Some(Value::Null) => return Ok(SetPusher::Delete { app_id, pushkey }),
        _ => string(body, "kind")?,
    };
    let data = match body.get("data") {
        Some(Value::Object(data)) => data.clone(),
        None | Some(Value::Null) => {
            return Err(("M_MISSING_PARAM", "Missing parameter: data".into()));
        }
        Some(_) => return Err(("M_INVALID_PARAM", "data must be an object".into())),
    };
    match kind.as_str() {
        "http" => check_url(data.get("url"))?,
        // Email pushers need a verified address bound to the account and a mailer; this
        // server has neither, so it refuses them rather than store one that never sends.
        "email" => {
            return Err((
                "M_INVALID_PARAM",
                "email pushers are not supported by this server".into(),
            ))
        }
        _ => return Err(("M_INVALID_PARAM", format!("unknown pusher kind {kind:?}"))),
    }
    if let Some(format) = data.get("format") {
        if format.as_str() != Some("event_id_only") {
            return Err((
                "M_INVALID_PARAM",
                "data.format must be event_id_only".into(),
            ));
        }
    }
    let profile_tag = match body.get("profile_tag") {
        None | Some(Value::Null) => None,
        Some(_) => Some(string(body, "profile_tag")?),
    };
    let append = match body.get("append") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(("M_INVALID_PARAM", "append must be a boolean".into())),
    };
    let pusher = Pusher {
        app_id,
        pushkey,
        kind,
        app_display_name: string(body, "app_display_name")?,
        device_display_name: string(body, "device_display_name")?,
        profile_tag,
        lang: string(body, "lang")?,
        data,
        pushkey_ts: now_ms,
    };
    Ok(SetPusher::Set { pusher, append })
}

/// An HTTP pusher's `data.url`: an absolute http(s) URL whose path is the notify path.
fn check_url(url: Option<&Value>) -> Result<(), Refusal> {
    let Some(url) = url else {
        return Err(("M_MISSING_PARAM", "http pushers need data.url".to_owned()));
    };
    let url = url
        .as_str()
        .ok_or(("M_INVALID_PARAM", "data.url must be a string".to_owned()))?;
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or((
            "M_INVALID_PARAM",
            "data.url must be an http(s) URL".to_owned(),
        ))?;
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = path.split(['?', '#']).next().unwrap_or("");
    if host.is_empty() || path != NOTIFY_PATH {
        return Err((
            "M_INVALID_PARAM",
            format!("data.url must be an absolute URL with the path {NOTIFY_PATH}"),
        ));
    }
    Ok(())
}
