//! A Matrix homeserver that runs as one Cloudflare Worker.
//!
//! One direction of dependencies (docs/design.md, "Layers"): `runtime/` binds the server to the
//! Workers runtime and is the only module that names a `worker` type; it implements the ports of
//! `platform/` and calls `api::respond`. Everything else compiles natively and is tested with
//! `cargo test`: the handlers with fake ports, `storage/`'s SQL against SQLite with the
//! migrations applied. `runtime/` exists only for wasm32, so naming the `worker` crate or the
//! runtime module anywhere else fails the native build.

pub mod accounts;
pub mod admin;
pub mod api;
pub mod appservice;
pub mod client;
pub mod config;
pub mod discovery;
pub mod e2ee;
pub mod federation;
pub mod glob;
// Fixtures and timing loop of the hot-path microbenchmarks; in tests too so they keep building.
#[cfg(any(test, feature = "bench-exports"))]
pub mod hotpaths;
pub mod http;
pub mod keys;
pub mod limits;
pub mod media;
pub mod oauth;
pub mod platform;
pub mod presence;
pub mod push;
pub mod rooms;
pub mod search;
pub mod signing;
pub mod sync;
pub mod time;
pub mod wellknown;

#[cfg(target_arch = "wasm32")]
mod runtime;
pub(crate) mod storage;
#[cfg(test)]
mod testing;
// Property tests of the parsers of outside input (`make fuzz` runs them long).
#[cfg(test)]
mod fuzz;
// Their wasm entry points, for bench/hotpaths.mjs only (see Cargo.toml's `bench-exports`).
#[cfg(all(target_arch = "wasm32", feature = "bench-exports"))]
mod bench_exports;
