//! `/sync`: stream positions and tokens, filters, and (in the runtime) assembling the response
//! and waiting for news.

pub mod filter;
pub mod token;

pub(crate) mod handler;
pub(crate) mod sliding;
pub(crate) mod start;

#[cfg(test)]
mod tests;
