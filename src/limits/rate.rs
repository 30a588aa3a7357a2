//! Rate limits: requests per minute for one action, per user and per client IP (federation:
//! per origin server). Over the limit, the answer is 429 `M_LIMIT_EXCEEDED` with
//! `retry_after_ms` (and a `Retry-After` header), and the request does nothing.
//!
//! Where the counts live: D1 (`storage::rate_limits`), handed over in batches (see `LOCAL`). An isolate's memory is not a limit on
//! this platform: requests are spread over many isolates in many locations, each of which would
//! count only its own share. A Durable Object per key would be exact too, but costs a round trip
//! to wherever that object lives plus an object request per check; a D1 counter is one statement
//! (one upsert for the user's and the IP's key together) on the database the request uses anyway.
//! Windows are fixed minutes, so a burst across a window's edge may reach twice the limit:
//! bounded, and cheap to count.

use crate::api::request::{Ctx, Requester};
use crate::config::ConfigError;
use crate::http::MatrixError;
use crate::storage::rate_limits;
use crate::time::now_ms;

const WINDOW_MS: u64 = 60_000;

/// Requests per minute for one action; `None` is unlimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limit {
    pub per_user: Option<u32>,
    pub per_ip: Option<u32>,
}

/// The deployment's rate limits (setting `RATE_LIMITS`, README "Settings").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimits {
    /// Events sent by clients: messages, state, redactions.
    pub send: Limit,
    /// Joins, knocks and room creations.
    pub join: Limit,
    /// Media uploads (and `create` of an upload to come).
    pub upload: Limit,
    /// Authenticated federation requests, per origin server (`per_user` is per server).
    pub federation: Limit,
}

impl Default for RateLimits {
    /// Generous for people, tight for scripts. Synapse's defaults are in the same range
    /// (messages 0.2/s with bursts of 10, joins 0.1/s with bursts of 10).
    fn default() -> Self {
        let limit = |per_user, per_ip| Limit {
            per_user: Some(per_user),
            per_ip: Some(per_ip),
        };
        RateLimits {
            send: limit(120, 600),
            join: limit(20, 60),
            upload: limit(30, 120),
            federation: Limit {
                per_user: Some(3000),
                per_ip: None,
            },
        }
    }
}

impl RateLimits {
    pub const OFF: RateLimits = RateLimits {
        send: Limit::OFF,
        join: Limit::OFF,
        upload: Limit::OFF,
        federation: Limit::OFF,
    };

    /// `off`, or comma-separated `action=PER_USER[/PER_IP]` overriding the defaults, each
    /// number a positive count per minute or `off`: `send=30/300,join=off,federation=600`.
    pub fn parse(setting: Option<&str>) -> Result<Self, ConfigError> {
        let Some(raw) = setting.map(str::trim).filter(|s| !s.is_empty()) else {
            return Ok(Self::default());
        };
        if raw == "off" {
            return Ok(Self::OFF);
        }
        let bad = || ConfigError::Invalid("RATE_LIMITS", raw.to_owned());
        let number = |text: &str| match text.trim() {
            "off" => Ok(None),
            n => n
                .parse::<u32>()
                .ok()
                .filter(|n| *n > 0)
                .map(Some)
                .ok_or_else(bad),
        };
        let mut limits = Self::default();
        for part in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (action, value) = part.split_once('=').ok_or_else(bad)?;
            let (per_user, per_ip) = match value.split_once('/') {
                Some((user, ip)) => (number(user)?, number(ip)?),
                None => (number(value)?, None),
            };
            let slot = match action.trim() {
                "send" => &mut limits.send,
                "join" => &mut limits.join,
                "upload" => &mut limits.upload,
                "federation" => &mut limits.federation,
                _ => return Err(bad()),
            };
            *slot = Limit { per_user, per_ip };
        }
        Ok(limits)
    }
}

impl Limit {
    pub const OFF: Limit = Limit {
        per_user: None,
        per_ip: None,
    };
}

/// What a client request counts against.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Action {
    Send,
    Join,
    Upload,
}

impl Action {
    fn name(self) -> &'static str {
        match self {
            Action::Send => "send",
            Action::Join => "join",
            Action::Upload => "upload",
        }
    }

    fn limit(self, limits: &RateLimits) -> Limit {
        match self {
            Action::Send => limits.send,
            Action::Join => limits.join,
            Action::Upload => limits.upload,
        }
    }
}

/// Counts a client request of `me` against `action`'s limits per user and per client IP.
/// Application services registered with `rate_limited: false` are not limited (as Synapse).
pub(crate) async fn check_client(
    ctx: &Ctx,
    me: &Requester,
    action: Action,
) -> Result<(), MatrixError> {
    if me.appservice.as_ref().is_some_and(|s| !s.rate_limited()) {
        return Ok(());
    }
    let limit = action.limit(&ctx.config.rate_limits);
    let name = action.name();
    let mut checks = Vec::new();
    if let Some(n) = limit.per_user {
        checks.push((format!("{name}:user:{}", me.user_id), n));
    }
    if let Some(n) = limit.per_ip {
        checks.push((format!("{name}:ip:{}", client_ip(ctx)), n));
    }
    enforce(ctx, &checks).await
}

/// Counts an authenticated federation request against its origin server's limit.
pub(crate) async fn check_origin(ctx: &Ctx, origin: &str) -> Result<(), MatrixError> {
    match ctx.config.rate_limits.federation.per_user {
        Some(n) => enforce(ctx, &[(format!("federation:origin:{origin}"), n)]).await,
        None => Ok(()),
    }
}

/// Login and registration attempts, per client IP (`AUTH_REQUESTS_PER_MINUTE`).
pub(crate) async fn check_auth_ip(ctx: &Ctx, action: &str) -> Result<(), MatrixError> {
    let limit = auth_limit(ctx);
    enforce(ctx, &[(format!("{action}:ip:{}", client_ip(ctx)), limit)]).await
}

/// Login attempts against one user id, from anywhere: password guessing spread over many
/// addresses still hits this.
pub(crate) async fn check_auth_user(
    ctx: &Ctx,
    action: &str,
    user_id: &str,
) -> Result<(), MatrixError> {
    let limit = auth_limit(ctx);
    enforce(ctx, &[(format!("{action}:user:{user_id}"), limit)]).await
}

fn auth_limit(ctx: &Ctx) -> u32 {
    u32::try_from(ctx.config.auth_requests_per_minute).unwrap_or(u32::MAX)
}

fn client_ip(ctx: &Ctx) -> &str {
    ctx.ip.as_deref().unwrap_or("unknown")
}

/// Counts the request under every key; refused if any key is over its limit.
async fn enforce(ctx: &Ctx, checks: &[(String, u32)]) -> Result<(), MatrixError> {
    if checks.is_empty() {
        return Ok(());
    }
    let now = now_ms();
    let window = now - now % WINDOW_MS;
    let refuse = || MatrixError::limit_exceeded(window + WINDOW_MS - now);
    let mut hand_over = Vec::new();
    let mut over = false;
    for (key, limit) in checks {
        match LOCAL.with(|local| local.borrow_mut().count(key, *limit, window)) {
            Counted::Over => over = true,
            Counted::Within => {}
            Counted::HandOver(amount) => hand_over.push((key.as_str(), amount)),
        }
    }
    if over {
        return Err(refuse());
    }
    if hand_over.is_empty() {
        return Ok(());
    }
    let db = ctx.db();
    let counts = rate_limits::add(&db, &hand_over, WINDOW_MS, now).await?;
    // A key starting a new window is the occasion, now and then, to forget idle counters.
    if counts.iter().zip(&hand_over).any(|(c, (_, a))| c == a) && now.is_multiple_of(64) {
        rate_limits::forget_idle(&db, now).await?;
    }
    let mut over = false;
    for ((key, _), count) in hand_over.iter().zip(counts) {
        let limit = checks.iter().find(|(k, _)| k == key).map_or(0, |(_, l)| *l);
        LOCAL.with(|local| local.borrow_mut().learned(key, window, count));
        over |= count > u64::from(limit);
    }
    if over {
        return Err(refuse());
    }
    Ok(())
}

// Counting every request in D1 would cost a round trip and a row written each time (rows written
// are what the free plan runs out of first, docs/benchmarks.md). So an isolate counts in memory
// and says nothing to D1 while a key stays quiet: the first hand-over of a window comes once the
// isolate has counted a quarter of the limit (`first`), the next ones every `step` requests (a
// tenth of the limit, at most 10), each learning the total of all isolates. Someone who stays
// under a quarter of a limit per minute (a person chatting) so costs no D1 write at all; a flood
// is counted in D1 after its first quarter. Each isolate can let through at most `first - 1`
// requests that no other isolate knows of, and `step - 1` beyond a limit it has not yet seen
// reached (docs/security.md); a key whose total is known to be over is refused without asking
// D1 again.
thread_local! {
    static LOCAL: std::cell::RefCell<LocalCounts> = Default::default();
}

#[derive(Default)]
struct LocalCounts {
    /// Per key: the window, the total D1 last answered, and what was counted here since.
    keys: std::collections::HashMap<String, (u64, u64, u64)>,
}

enum Counted {
    Within,
    Over,
    /// Hand this many requests over to D1 now.
    HandOver(u64),
}

impl LocalCounts {
    const MAX_KEYS: usize = 4096;

    fn count(&mut self, key: &str, limit: u32, window: u64) -> Counted {
        if self.keys.len() >= Self::MAX_KEYS && !self.keys.contains_key(key) {
            self.keys.retain(|_, (w, _, _)| *w == window);
        }
        let entry = self.keys.entry(key.to_owned()).or_insert((window, 0, 0));
        if entry.0 != window {
            *entry = (window, 0, 0);
        }
        let (_, total, pending) = entry;
        let limit = u64::from(limit);
        if *total > limit {
            return Counted::Over;
        }
        *pending += 1;
        let step = (limit / 10).clamp(1, 10);
        // Nothing handed over yet in this window (D1 answers at least what it was handed).
        let first = (limit / 4).max(step);
        let due = if *total == 0 { first } else { step };
        if *pending >= due || *total + *pending > limit {
            Counted::HandOver(std::mem::take(pending))
        } else {
            Counted::Within
        }
    }

    fn learned(&mut self, key: &str, window: u64, total: u64) {
        if let Some(entry) = self.keys.get_mut(key).filter(|e| e.0 == window) {
            entry.1 = total;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_setting_overrides_defaults_per_action_or_turns_all_off() {
        assert_eq!(RateLimits::parse(None).unwrap(), RateLimits::default());
        assert_eq!(RateLimits::parse(Some(" ")).unwrap(), RateLimits::default());
        assert_eq!(RateLimits::parse(Some("off")).unwrap(), RateLimits::OFF);
        let limits = RateLimits::parse(Some("send=5/50, join=off,federation=7")).unwrap();
        assert_eq!(
            limits.send,
            Limit {
                per_user: Some(5),
                per_ip: Some(50)
            }
        );
        assert_eq!(limits.join, Limit::OFF);
        assert_eq!(limits.federation.per_user, Some(7));
        assert_eq!(limits.upload, RateLimits::default().upload);
        for bad in [
            "send",
            "send=0",
            "send=-1",
            "send=x/2",
            "sends=1",
            "send=1/2/3",
        ] {
            assert!(
                matches!(
                    RateLimits::parse(Some(bad)),
                    Err(ConfigError::Invalid("RATE_LIMITS", _))
                ),
                "{bad} should be refused"
            );
        }
    }
}

#[cfg(test)]
mod local_tests {
    use super::*;

    #[test]
    fn an_isolate_hands_its_count_over_after_a_quarter_then_every_tenth_of_the_limit() {
        let mut local = LocalCounts::default();
        let handed: Vec<u64> = (0..50)
            .filter_map(|_| match local.count("k", 120, 0) {
                Counted::HandOver(n) => {
                    local.learned("k", 0, n + local.keys["k"].1);
                    Some(n)
                }
                Counted::Within => None,
                Counted::Over => panic!("not over"),
            })
            .collect();
        assert_eq!(
            handed,
            [30, 10, 10],
            "nothing for the first quarter of the limit, then one D1 row per ten requests"
        );
        // A small limit is counted exactly: every request asks.
        let mut small = LocalCounts::default();
        assert!(matches!(small.count("s", 3, 0), Counted::HandOver(1)));
        small.learned("s", 0, 4);
        assert!(
            matches!(small.count("s", 3, 0), Counted::Over),
            "known over"
        );
        // A new window starts again.
        assert!(matches!(small.count("s", 3, 60_000), Counted::HandOver(1)));
    }

    #[test]
    fn a_total_near_the_limit_makes_every_request_ask() {
        let mut local = LocalCounts::default();
        assert!(matches!(local.count("k", 100, 0), Counted::Within));
        local.learned("k", 0, 95);
        // 95 known + 1 pending + this one: within the step, but the limit is near.
        let mut asked = 0;
        for _ in 0..5 {
            if let Counted::HandOver(_) = local.count("k", 100, 0) {
                asked += 1;
            }
        }
        assert!(asked >= 1);
    }
}
