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

    /// A reference to this signal that does not keep it alive: a store's release
    /// listener routes to a signal only while its maker holds it (a limiter, for its
    /// life), so a limiter rebuilt by a reload or dropped leaves no route behind.
    #[cfg(any(feature = "redis", feature = "postgres", feature = "nats"))]
    pub(crate) fn route(&self) -> ReleaseRoute {
        ReleaseRoute(Arc::downgrade(&self.0))
    }
}

/// A [`ReleaseSignal`] as a release listener holds it (see [`ReleaseSignal::route`]):
/// only engines of remote stores have listeners.
#[cfg(any(feature = "redis", feature = "postgres", feature = "nats"))]
pub(crate) struct ReleaseRoute(std::sync::Weak<dyn Fn(&str) + Send + Sync>);

#[cfg(any(feature = "redis", feature = "postgres", feature = "nats"))]
impl ReleaseRoute {
    /// Reports that a slot of `key` was released somewhere, if the signal still lives.
    pub fn released(&self, key: &str) {
        if let Some(wake) = self.0.upgrade() {
            wake(key);
        }
    }

    /// Whether the signal's maker let it go.
    pub fn is_gone(&self) -> bool {
        self.0.strong_count() == 0
    }
}

impl std::fmt::Debug for ReleaseSignal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReleaseSignal")
    }
}
