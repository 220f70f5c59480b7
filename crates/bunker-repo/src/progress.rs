//! Progress reporting from long operations to whatever front end runs them.
//!
//! Operations call these hooks from worker threads; the CLI renders a bar,
//! the daemon exports metrics, tests use [`NoProgress`].

/// Hooks for long-running operations. All methods default to doing nothing.
pub trait Progress: Send + Sync {
    /// Totals, when known (may be called more than once as a scan proceeds).
    fn set_total(&self, _items: u64, _bytes: u64) {}
    /// Items (files, packs, ...) completed.
    fn add_items(&self, _n: u64) {}
    /// Bytes processed.
    fn add_bytes(&self, _n: u64) {}
    /// What is being worked on now (a path, a pack id).
    fn current(&self, _what: &str) {}
    /// A non-fatal problem worth showing the user right away.
    fn warn(&self, _msg: &str) {}
    /// Whether the front end shows totals (percentages, an ETA). When it
    /// does not, operations skip work done only to report them.
    fn wants_totals(&self) -> bool {
        true
    }
}

/// Reports nothing.
pub struct NoProgress;

impl Progress for NoProgress {}
