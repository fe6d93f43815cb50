//! How a limiter learns that a slot came free in another process: the
//! [`ReleaseSignal`] each limiter hands its engine (`docs/design.md#release-signalling`).
//! Engines of remote stores call it from their release listener (`listener`).

use std::sync::Arc;

/// Handed to engines so that releases seen in other processes wake local waiters.
#[derive(Clone)]
pub struct ReleaseSignal(Arc<dyn Fn(&str) + Send + Sync>);

impl ReleaseSignal {
    /// A signal that calls `wake` with the key whose slot came free.
    pub fn new(wake: impl Fn(&str) + Send + Sync + 'static) -> Self {
        ReleaseSignal(Arc::new(wake))
    }

    /// A signal that wakes nobody, for engine limiters used outside a [`crate::Limiter`].
    pub fn detached() -> Self {
        Self::new(|_| {})
    }

    /// Reports that a slot of `key` was released somewhere.
    pub fn released(&self, key: &str) {
        (self.0)(key);
    }
}

impl std::fmt::Debug for ReleaseSignal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReleaseSignal")
    }
}
