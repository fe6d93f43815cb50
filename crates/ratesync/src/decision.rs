//! The answer every engine gives for one attempt: allowed or not, and the numbers
//! a caller needs to tell its own client (`Retry-After`, `RateLimit` headers).

use std::time::Duration;

/// What refused an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeniedBy {
    /// The token bucket or the sliding window had no room for the cost.
    Rate,
    /// All `max_concurrent` slots are held.
    Concurrency,
}

/// The outcome of one decision (or of a peek) on one (limiter, key).
///
/// Every engine returns the same `Decision` for the same history: the numbers come
/// from the pure functions in [`crate::algorithm`].
///
/// `repr(C)` with the two one-byte fields first keeps them in one aligned word: the
/// decision is copied on every call, and a layout that scatters them makes those
/// copies slow (partial-word store forwarding).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct Decision {
    /// Whether the attempt was (or, for a peek, would be) admitted.
    pub allowed: bool,
    /// Why the attempt was refused; `None` when allowed.
    pub denied_by: Option<DeniedBy>,
    /// Capacity of the rule: the bucket's burst or the window's limit.
    pub limit: u64,
    /// Units still available right after this decision (for a peek: available now).
    pub remaining: u64,
    /// How long until an attempt of the same cost can be admitted; zero when allowed.
    /// For a concurrency refusal this is an upper bound (the earliest lease expiry):
    /// a release wakes waiters sooner.
    pub retry_after: Duration,
    /// How long until the key is back to its fresh, fully available state.
    pub reset_after: Duration,
}

impl Decision {
    /// A decision that admits without consulting a store: used for fail-open admissions.
    pub(crate) fn fail_open(limit: u64) -> Self {
        Decision {
            allowed: true,
            limit,
            remaining: 0,
            retry_after: Duration::ZERO,
            reset_after: Duration::ZERO,
            denied_by: None,
        }
    }
}
