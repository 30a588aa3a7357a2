//! The client-server API.

pub mod versions;
