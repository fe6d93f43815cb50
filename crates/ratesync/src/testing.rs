//! Test hooks (feature `testing`): not part of the API, and absent from every build
//! that does not ask for them. The project's own tests enable the feature.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A store clock that a test sets: engines built with one decide at the time it says
/// instead of the store's own (Redis `TIME`, PostgreSQL `clock_timestamp()`), so the
/// differential tests can replay a history at exact times on the real store.
#[derive(Debug, Clone, Default)]
pub struct PinnedClock(Arc<AtomicU64>);

impl PinnedClock {
    /// A clock at time zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the time, in microseconds since the epoch.
    pub fn set_micros(&self, micros: u64) {
        self.0.store(micros, Ordering::SeqCst);
    }

    /// The time, in microseconds since the epoch.
    pub fn micros(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}
