//! `/sync`: stream positions and tokens, filters, and (in the runtime) assembling the response
//! and waiting for news.

pub mod filter;
pub mod token;

#[cfg(target_arch = "wasm32")]
pub(crate) mod handler;
