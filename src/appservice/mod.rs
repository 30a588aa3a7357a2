//! Application services (bridges), as the spec's Application Service API describes them:
//! registrations and their namespaces (`registration.rs`), how a service's `as_token`
//! authenticates and masquerades (`auth.rs`), the client endpoints only services use
//! (`endpoints.rs`: ping), what the server asks of a service (`queries.rs`: aliases and users),
//! and the transactions pushed to it (`push.rs`, driven by one Durable Object per service).
//!
//! Registrations are written to D1 by scripts/appservice.py at `make dev` start or by
//! `make appservice-register` for a deployment (README, "Application services").

pub mod auth;
pub mod endpoints;
// Driven by the `AppServiceQueue` Durable Object (runtime/, wasm32 only).
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
pub mod push;
pub mod queries;
pub mod registration;
#[cfg(test)]
mod tests;

use std::rc::Rc;

use crate::http::MatrixError;
use crate::storage::{appservices, Db};

pub use registration::AppService;

/// The registered services. Read from D1 once per isolate and kept for a few seconds: a
/// registration stored with `make appservice-register` is seen within that time.
pub(crate) async fn all(db: &Db, server: &str) -> Result<Rc<Vec<Rc<AppService>>>, MatrixError> {
    #[cfg(target_arch = "wasm32")]
    if let Some(cached) = cache::get() {
        return Ok(cached);
    }
    let services: Vec<Rc<AppService>> = appservices::all(db)
        .await?
        .into_iter()
        .filter_map(
            |row| match AppService::from_json(&row.registration, server) {
                Ok(service) => Some(Rc::new(service)),
                Err(e) => {
                    crate::log_error!("a stored application service registration is unusable: {e}");
                    None
                }
            },
        )
        .collect();
    let services = Rc::new(services);
    #[cfg(target_arch = "wasm32")]
    cache::put(services.clone());
    Ok(services)
}

/// The service a user id belongs to exclusively, if any (another service's, or anybody's).
pub fn exclusive_owner_of_user<'a>(
    services: &'a [Rc<AppService>],
    user_id: &str,
) -> Option<&'a Rc<AppService>> {
    services.iter().find(|s| s.is_exclusive_user(user_id))
}

pub fn exclusive_owner_of_alias<'a>(
    services: &'a [Rc<AppService>],
    alias: &str,
) -> Option<&'a Rc<AppService>> {
    services.iter().find(|s| s.is_exclusive_alias(alias))
}

#[cfg(target_arch = "wasm32")]
mod cache {
    use std::cell::RefCell;
    use std::rc::Rc;

    use super::AppService;
    use crate::time::now_ms;

    const TTL_MS: u64 = 5_000;

    type Services = Rc<Vec<Rc<AppService>>>;

    thread_local! {
        static CACHE: RefCell<Option<(u64, Services)>> = const { RefCell::new(None) };
    }

    pub fn get() -> Option<Services> {
        CACHE.with(|c| {
            c.borrow()
                .as_ref()
                .filter(|(at, _)| now_ms().saturating_sub(*at) < TTL_MS)
                .map(|(_, s)| s.clone())
        })
    }

    pub fn put(services: Services) {
        CACHE.with(|c| *c.borrow_mut() = Some((now_ms(), services)));
    }
}
