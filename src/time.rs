//! Wall-clock time as Matrix counts it: milliseconds since the Unix epoch.

/// Milliseconds since the Unix epoch, from the host's clock (`Date.now()` inside workerd).
pub fn now_ms() -> u64 {
    ruma::MilliSecondsSinceUnixEpoch::now().get().into()
}
