//! The server-server (federation) API.

pub mod version;
