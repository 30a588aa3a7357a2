//! `POST /oauth2/registration`: dynamic client registration (RFC 7591). The rules are in
//! `client_metadata.rs`; here the request is read, rate-limited and stored.

use serde_json::{json, Value};

use super::client_metadata::validate;
use super::{oauth_error, oauth_json};
use crate::accounts::tokens::new_opaque_id;
use crate::api::request::Ctx;
use crate::http::{MatrixError, MediaResponse};
use crate::storage::oauth as store;
use crate::time::now_ms;

/// A registration's metadata is small; more is not a client's.
const MAX_METADATA_BYTES: usize = 16 * 1024;

pub(crate) async fn register(ctx: &Ctx) -> Result<MediaResponse, MatrixError> {
    // Anyone may register a client: counted with account registrations, per address.
    if let Err(limited) = crate::limits::rate::check_auth_ip(ctx, "oauth_client").await {
        return Ok(oauth_json(limited.status, &limited.into_response().body));
    }
    let request = match ctx.json_object() {
        Ok(request) => request,
        Err(_) => {
            return Ok(oauth_error(
                400,
                "invalid_client_metadata",
                "the body must be a JSON object",
            ))
        }
    };
    let mut registered = match validate(&request) {
        Ok(registered) => registered,
        Err(refused) => return Ok(oauth_error(400, refused.error, &refused.description)),
    };
    let metadata = Value::Object(registered.clone()).to_string();
    if metadata.len() > MAX_METADATA_BYTES {
        return Ok(oauth_error(
            400,
            "invalid_client_metadata",
            "the client metadata is too large",
        ));
    }
    let client_id = new_opaque_id();
    store::save_client(&ctx.db(), &client_id, &metadata).await?;
    registered.insert("client_id".into(), json!(client_id));
    registered.insert("client_id_issued_at".into(), json!(now_ms() / 1000));
    Ok(oauth_json(201, &Value::Object(registered)))
}

/// A registered client, as the other endpoints need it.
#[derive(serde::Deserialize)]
pub(crate) struct Client {
    pub client_name: Option<String>,
    pub client_uri: String,
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    #[serde(default)]
    pub grant_types: Vec<String>,
}

impl Client {
    /// What a person is shown: the client's name, else its home page's host.
    pub fn display_name(&self) -> String {
        self.client_name.clone().unwrap_or_else(|| {
            url::Url::parse(&self.client_uri)
                .ok()
                .and_then(|u| u.host_str().map(str::to_owned))
                .unwrap_or_else(|| self.client_uri.clone())
        })
    }

    pub fn allows(&self, grant_type: &str) -> bool {
        self.grant_types.iter().any(|g| g == grant_type)
    }
}

pub(crate) async fn find_client(ctx: &Ctx, client_id: &str) -> Result<Option<Client>, MatrixError> {
    Ok(store::client(&ctx.db(), client_id)
        .await?
        .and_then(|metadata| serde_json::from_str(&metadata).ok()))
}
