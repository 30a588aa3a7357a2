//! Drives the pure resolution machine ([`crate::discovery::Resolution`]) with the Workers
//! runtime: the well-known file through `fetch`, SRV records through a DNS-over-HTTPS resolver
//! (`DOH_RESOLVER`, default Cloudflare's JSON API), and a two-level cache: a map in this isolate
//! in front of the D1 table `server_discovery`, shared by all isolates.
//!
//! Successful resolutions are cached for the shortest lifetime of the answers they used (the
//! well-known's cache headers within the spec's bounds, DNS TTLs). Failures are cached with
//! exponential back-off, one minute doubling up to the spec's hour. A D1 failure never fails a
//! resolution: the cache is an optimisation, so it is logged and skipped.

// The outbound federation sender (written on another branch) is the caller of `resolve`;
// until it is merged nothing in this crate calls it.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Duration;

use futures::future::{select, Either};
use ruma::ServerName;
use worker::{AbortController, Delay, Env, Fetch, Headers, Method, Request, RequestInit};

use crate::discovery::srv::{self, SrvAnswer};
use crate::discovery::well_known::{self, WellKnown};
use crate::discovery::{backoff_secs, Destination, DiscoveryError, Resolution, Step};
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
    env: &Env,
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
    let db = Db::new(env)
        .map_err(|e| worker::console_warn!("discovery cache unavailable: {}", e.message))
        .ok();
    let stored = match &db {
        Some(db) => store::get(db, &key).await.unwrap_or_else(|e| {
            worker::console_warn!("discovery cache read failed: {}", e.message);
            None
        }),
        None => None,
    };
    if let Some(entry) = stored.as_ref().filter(|entry| entry.expires_ts > now) {
        remember(&key, entry.clone());
        return entry.outcome.clone();
    }

    let outcome = drive(env, &mut resolution).await;
    let entry = match outcome {
        Ok((destination, valid_for_secs)) => CachedResolution {
            outcome: Ok(destination),
            failures: 0,
            expires_ts: now + valid_for_secs * 1000,
        },
        Err(error) => {
            worker::console_warn!("cannot resolve {server_name}: {error}");
            let failures = stored.map_or(0, |s| s.failures).saturating_add(1);
            CachedResolution {
                outcome: Err(error),
                failures,
                expires_ts: now + backoff_secs(failures) * 1000,
            }
        }
    };
    if let Some(db) = &db {
        if let Err(e) = store::put(db, &key, &entry).await {
            worker::console_warn!("discovery cache write failed: {}", e.message);
        }
    }
    remember(&key, entry.clone());
    entry.outcome
}

/// Runs the lookups the machine asks for; returns the destination and its cache lifetime.
async fn drive(
    env: &Env,
    resolution: &mut Resolution,
) -> Result<(Destination, u64), DiscoveryError> {
    let resolver = doh_resolver(env);
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
                let answer = fetch_well_known(&hostname, now_ms() / 1000).await;
                resolution.well_known(&answer);
            }
            Step::NeedSrv(name) => {
                let answer = lookup_srv(&resolver, &name).await?;
                resolution.srv(&answer, random_u32())?;
            }
        }
    }
}

/// `DOH_RESOLVER`, or Cloudflare's resolver. Read here rather than in `Config` because only
/// discovery uses it.
fn doh_resolver(env: &Env) -> String {
    env.var("DOH_RESOLVER")
        .ok()
        .map(|value| value.to_string().trim().to_owned())
        .filter(|value| value.starts_with("https://") || value.starts_with("http://"))
        .unwrap_or_else(|| DEFAULT_DOH_RESOLVER.to_owned())
}

/// Step 3's request. `fetch` follows redirects itself (at most 20, so loops end in an error),
/// as the spec asks. Any failure is "no delegation", cached as an error.
async fn fetch_well_known(hostname: &str, now_secs: u64) -> WellKnown {
    let url = format!("https://{hostname}/.well-known/matrix/server");
    match get_with_timeout(&url, &[]).await {
        Ok((status, headers, body)) => WellKnown::from_response(
            status,
            &body,
            headers.get("cache-control").ok().flatten().as_deref(),
            headers.get("expires").ok().flatten().as_deref(),
            now_secs,
        ),
        Err(cause) => {
            worker::console_log!("no well-known for {hostname}: {cause}");
            WellKnown::failed()
        }
    }
}

/// One SRV question to the DoH resolver. Unlike the well-known, a failure here is an error:
/// "no record" must come from DNS, not from a broken resolver.
async fn lookup_srv(resolver: &str, name: &str) -> Result<SrvAnswer, DiscoveryError> {
    let url = srv::doh_query_url(resolver, name);
    let (status, _, body) = get_with_timeout(&url, &[("accept", "application/dns-json")])
        .await
        .map_err(|cause| DiscoveryError::Dns(format!("{name}: {cause}")))?;
    if status != 200 {
        return Err(DiscoveryError::Dns(format!(
            "{name}: resolver answered HTTP {status}"
        )));
    }
    srv::parse_doh_json(&body)
}

/// A GET whose response, body included, must arrive within [`LOOKUP_TIMEOUT`]. Bodies longer
/// than the well-known limit are refused from `Content-Length` before being read.
async fn get_with_timeout(
    url: &str,
    headers: &[(&str, &str)],
) -> Result<(u16, Headers, Vec<u8>), String> {
    let request_headers = Headers::new();
    for (name, value) in headers {
        request_headers
            .set(name, value)
            .map_err(|e| e.to_string())?;
    }
    let mut init = RequestInit::new();
    init.with_method(Method::Get).with_headers(request_headers);
    let request = Request::new_with_init(url, &init).map_err(|e| e.to_string())?;
    let controller = AbortController::default();
    let signal = controller.signal();
    let exchange = async {
        let mut response = Fetch::Request(request)
            .send_with_signal(&signal)
            .await
            .map_err(|e| e.to_string())?;
        let headers = response.headers().clone();
        let length = headers.get("content-length").ok().flatten();
        if length.and_then(|l| l.parse::<usize>().ok()) > Some(well_known::MAX_BODY_BYTES) {
            return Err("response too large".to_owned());
        }
        let body = response.bytes().await.map_err(|e| e.to_string())?;
        Ok((response.status_code(), headers, body))
    };
    let timeout = Delay::from(LOOKUP_TIMEOUT);
    futures::pin_mut!(exchange);
    match select(exchange, timeout).await {
        Either::Left((result, _)) => result,
        Either::Right(((), _)) => {
            controller.abort();
            Err(format!("no answer within {} s", LOOKUP_TIMEOUT.as_secs()))
        }
    }
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
