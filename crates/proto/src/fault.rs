//! Crash injection, for tests of what survives a crash at a named step.
//!
//! A server started with the environment variable `AGORA_CRASH_AT=<point>` aborts the
//! moment it reaches that point: no destructor runs, nothing is flushed, as with
//! `kill -9`. Points are named where they are placed (crates/customer-db/DESIGN.md lists
//! those of a purchase). Without the variable a crash point costs one comparison.

use std::sync::OnceLock;

/// Aborts the process if `AGORA_CRASH_AT` names `point`.
pub fn crash_point(point: &str) {
    static AT: OnceLock<Option<String>> = OnceLock::new();
    if AT.get_or_init(|| std::env::var("AGORA_CRASH_AT").ok()).as_deref() == Some(point) {
        eprintln!("crash injected at {point}");
        std::process::abort();
    }
}
