//! Logging as a port: the runtime installs a sink (the Workers console); natively messages go
//! to standard error. `log_warn!` and friends format like `format!`.

use std::sync::OnceLock;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Info,
    Warn,
    Error,
}

static SINK: OnceLock<fn(Level, &str)> = OnceLock::new();

/// Installs where log lines go; the first call wins (once per isolate).
pub fn install(sink: fn(Level, &str)) {
    let _ = SINK.set(sink);
}

pub fn emit(level: Level, message: &str) {
    match SINK.get() {
        Some(sink) => sink(level, message),
        None => eprintln!("{level:?}: {message}"),
    }
}

#[macro_export]
macro_rules! log_info {
    ($($arg:tt)*) => { $crate::platform::log::emit($crate::platform::log::Level::Info, &format!($($arg)*)) };
}
#[macro_export]
macro_rules! log_warn {
    ($($arg:tt)*) => { $crate::platform::log::emit($crate::platform::log::Level::Warn, &format!($($arg)*)) };
}
#[macro_export]
macro_rules! log_error {
    ($($arg:tt)*) => { $crate::platform::log::emit($crate::platform::log::Level::Error, &format!($($arg)*)) };
}
