//! The client-server API.

pub mod push_rules;
pub mod versions;
