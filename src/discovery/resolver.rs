//! Drives the pure resolution machine ([`crate::discovery::Resolution`]) through the platform's
//! ports: the well-known file with the HTTP port's `fetch`, SRV records through a DNS-over-HTTPS
//! resolver (`DOH_RESOLVER`, default Cloudflare's JSON API), and a two-level cache: a map in
//! this isolate in front of the D1 table `server_discovery`, shared by all isolates.
//!
//! Successful resolutions are cached for the shortest lifetime of the answers they used (the
//! well-known's cache headers within the spec's bounds, DNS TTLs). Failures are cached with
//! exponential back-off, one minute doubling up to the spec's hour. A D1 failure never fails a
//! resolution: the cache is an optimisation, so it is logged and skipped.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Duration;

use ruma::ServerName;

use crate::discovery::srv::{self, SrvAnswer};
use crate::discovery::well_known::{self, WellKnown};
use crate::discovery::{backoff_secs, Destination, DiscoveryError, Resolution, Step};
use crate::platform::{HttpRequest, HttpResponse, Method, Platform};
use crate::storage::discovery::{self as store, CachedResolution};
use crate::storage::Db;
use crate::time::now_ms;

/// The resolver used when `DOH_RESOLVER` is not set.
pub(crate) const DEFAULT_DOH_RESOLVER: &str = "https://cloudflare-dns.com/dns-query";
/// A lookup slower than this counts as failed: discovery runs inside federation requests,
/// which have their own deadlines.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);
/// Entries kept in this isolate's map before it is pruned.
const MEMORY_ENTRIES: usize = 1024;

thread_local! {
    // Isolates serve many requests: remembering answers here saves a D1 query per request.
    static MEMORY: RefCell<HashMap<String, CachedResolution>> = RefCell::new(HashMap::new());
}

/// Where to send federation requests for `server_name`.
pub(crate) async fn resolve(
    platform: &Platform,
    server_name: &ServerName,
) -> Result<Destination, DiscoveryError> {
    let mut resolution = Resolution::new(server_name);
    // IP literals and names with a port need no lookup and no cache.
    if let Step::Done { destination, .. } = resolution.step() {
        return Ok(destination);
    }
    let key = server_name.as_str().to_ascii_lowercase();
    let now = now_ms();
    if let Some(entry) = remembered(&key, now) {
        return entry.outcome;
    }
    let db = Db::new(platform);
    let stored = store::get(&db, &key).await.unwrap_or_else(|e| {
        crate::log_warn!("discovery cache read failed: {}", e.message);
        None
    });
    if let Some(entry) = stored.as_ref().filter(|entry| entry.expires_ts > now) {
        remember(&key, entry.clone());
        return entry.outcome.clone();
    }

    let outcome = drive(platform, &mut resolution).await;
    let entry = match outcome {
        Ok((destination, valid_for_secs)) => CachedResolution {
            outcome: Ok(destination),
            failures: 0,
            expires_ts: now + valid_for_secs * 1000,
        },
        Err(error) => {
            crate::log_warn!("cannot resolve {server_name}: {error}");
            let failures = stored.map_or(0, |s| s.failures).saturating_add(1);
            CachedResolution {
                outcome: Err(error),
                failures,
                expires_ts: now + backoff_secs(failures) * 1000,
            }
        }
    };
    if let Err(e) = store::put(&db, &key, &entry).await {
        crate::log_warn!("discovery cache write failed: {}", e.message);
    }
    remember(&key, entry.clone());
    entry.outcome
}

/// Runs the lookups the machine asks for; returns the destination and its cache lifetime.
async fn drive(
    platform: &Platform,
    resolution: &mut Resolution,
) -> Result<(Destination, u64), DiscoveryError> {
    let resolver = doh_resolver(platform);
    loop {
        match resolution.step() {
            Step::Done {
                destination,
                valid_for_secs,
            } => {
                let secs = valid_for_secs.unwrap_or(well_known::MAX_CACHE_SECS);
                return Ok((destination, secs));
            }
            Step::NeedWellKnown(hostname) => {
                let answer = fetch_well_known(platform, &hostname, now_ms() / 1000).await;
                resolution.well_known(&answer);
            }
            Step::NeedSrv(name) => {
                let answer = lookup_srv(platform, &resolver, &name).await?;
                resolution.srv(&answer, random_u32())?;
            }
        }
    }
}

/// `DOH_RESOLVER`, or Cloudflare's resolver. Read here rather than in `Config` because only
/// discovery uses it.
fn doh_resolver(platform: &Platform) -> String {
    platform
        .settings
        .var("DOH_RESOLVER")
        .map(|value| value.trim().to_owned())
        .filter(|value| value.starts_with("https://") || value.starts_with("http://"))
        .unwrap_or_else(|| DEFAULT_DOH_RESOLVER.to_owned())
}

/// Step 3's request. `fetch` follows redirects itself (at most 20, so loops end in an error),
/// as the spec asks. Any failure is "no delegation", cached as an error.
async fn fetch_well_known(platform: &Platform, hostname: &str, now_secs: u64) -> WellKnown {
    let url = format!("https://{hostname}/.well-known/matrix/server");
    match get_with_timeout(platform, &url, &[]).await {
        Ok(response) => WellKnown::from_response(
            response.status,
            &response.body,
            response.header("cache-control"),
            response.header("expires"),
            now_secs,
        ),
        Err(cause) => {
            crate::log_info!("no well-known for {hostname}: {cause}");
            WellKnown::failed()
        }
    }
}

/// One SRV question to the DoH resolver. Unlike the well-known, a failure here is an error:
/// "no record" must come from DNS, not from a broken resolver.
async fn lookup_srv(
    platform: &Platform,
    resolver: &str,
    name: &str,
) -> Result<SrvAnswer, DiscoveryError> {
    let url = srv::doh_query_url(resolver, name);
    let response = get_with_timeout(platform, &url, &[("Accept", "application/dns-json")])
        .await
        .map_err(|cause| DiscoveryError::Dns(format!("{name}: {cause}")))?;
    let status = response.status;
    if status != 200 {
        return Err(DiscoveryError::Dns(format!(
            "{name}: resolver answered HTTP {status}"
        )));
    }
    srv::parse_doh_json(&response.body)
}

/// A GET whose response, body included, must arrive within [`LOOKUP_TIMEOUT`]. Bodies longer
/// than the well-known limit are refused from `Content-Length` before being read (the port
/// does both, see `HttpRequest::max_body`).
async fn get_with_timeout(
    platform: &Platform,
    url: &str,
    headers: &[(&str, &str)],
) -> Result<HttpResponse, String> {
    let request = HttpRequest {
        follow_redirects: true,
        method: Method::Get,
        url: url.to_owned(),
        headers: headers
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect(),
        body: None,
        timeout: LOOKUP_TIMEOUT,
        max_body: Some(well_known::MAX_BODY_BYTES),
    };
    platform.http.fetch(request).await
}

/// Randomness for the weighted SRV choice; its quality barely matters, so a failure of the
/// platform's generator falls back to the clock.
fn random_u32() -> u32 {
    getrandom::u32().unwrap_or_else(|_| now_ms() as u32)
}

fn remembered(key: &str, now: u64) -> Option<CachedResolution> {
    MEMORY.with(|memory| {
        memory
            .borrow()
            .get(key)
            .filter(|entry| entry.expires_ts > now)
            .cloned()
    })
}

fn remember(key: &str, entry: CachedResolution) {
    MEMORY.with(|memory| {
        let mut memory = memory.borrow_mut();
        if memory.len() >= MEMORY_ENTRIES {
            let now = now_ms();
            memory.retain(|_, entry| entry.expires_ts > now);
            if memory.len() >= MEMORY_ENTRIES {
                memory.clear();
            }
        }
        memory.insert(key.to_owned(), entry);
    });
}
