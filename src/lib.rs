//! A Matrix homeserver that runs as one Cloudflare Worker.
//!
//! Everything outside `runtime/` and `storage/` is pure protocol logic with no `worker` type in
//! it, so `cargo test` builds and tests it natively. `runtime/` binds that logic to the Workers
//! runtime (fetch handler, bindings); `storage/` is the only place that speaks SQL to D1.

pub mod accounts;
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
pub mod presence;
pub mod rooms;
pub mod signing;
pub mod sync;
pub mod time;
pub mod wellknown;

#[cfg(target_arch = "wasm32")]
mod runtime;
#[cfg(target_arch = "wasm32")]
mod storage;
// Their wasm entry points, for bench/hotpaths.mjs only (see Cargo.toml's `bench-exports`).
#[cfg(all(target_arch = "wasm32", feature = "bench-exports"))]
mod bench_exports;
