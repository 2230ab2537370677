//! sluice: alerts in, durable queue, merged markdown digests out to chat robots, never faster
//! than the robot allows.
//!
//! The table of contents. [`serve`] (in [`daemon`]) wires the parts: the [`store`] (sled), one
//! [`delivery`] task per configured robot
//! (window → permit from [`limit`] → seal → render with [`digest`] → send with a [`provider`]),
//! kept by the [`supervisor`] (which also reloads the config and reopens a failed store), and the
//! [`http`] API. The binary in `main.rs` only parses the command line.

pub mod alert;
pub mod alertmanager;
pub mod api;

pub mod client;
pub mod config;
pub mod console;
pub mod daemon;
pub mod delivery;
pub mod demo;
pub mod digest;
pub mod fd;
pub mod frontdoor;
pub mod http;
pub mod ingest;
pub mod limit;
pub mod mention;
pub mod message;
pub mod metrics;
pub mod provider;
pub mod quota;
pub mod route;
pub mod store;
pub mod supervisor;

pub use daemon::{EXIT_RESTART, STORE_DOWN_TIMEOUT, ServeError, serve, serve_with_clock};

/// The wall clock in Unix milliseconds (0 if the clock is before 1970).
pub fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// An error and its causes on one line, each cause once (reqwest repeats them in `Display`).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    /// An error that names its source in its own message does not print it twice.
    #[test]
    fn error_chain_prints_each_cause_once() {
        let cause = crate::config::ConfigError {
            origin: "sluice.toml:3:1".into(),
            message: "robots.ops.webhook: missing".into(),
        };
        let e = crate::supervisor::ReloadError::Invalid(cause);
        assert!(std::error::Error::source(&e).is_some(), "the cause is kept");
        assert_eq!(
            crate::error_chain(&e),
            "the new config is invalid, the running one stays: sluice.toml:3:1: robots.ops.webhook: missing"
        );
    }
}
