//! Which local waiters a release seen in the store wakes: the routing table that the
//! Redis (pub/sub), PostgreSQL (LISTEN) and NATS (KV watch) listeners share. Each
//! engine reads its store's messages its own way and hands the (limiter, key) here.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::RwLock;

use crate::engine::ReleaseSignal;

/// Limiter id (as the store's messages name it) → the signals of its waiters.
#[derive(Default)]
pub(crate) struct ReleaseRoutes {
    signals: RwLock<HashMap<Box<[u8]>, Vec<ReleaseSignal>>>,
    started: AtomicBool,
}

impl ReleaseRoutes {
    /// Routes releases of `limiter` to `signal`. True the first time anything is
    /// routed: the caller then starts its store's listener, once.
    pub fn add(&self, limiter: &[u8], signal: ReleaseSignal) -> bool {
        self.signals
            .write()
            .entry(limiter.into())
            .or_default()
            .push(signal);
        !self.started.swap(true, Ordering::AcqRel)
    }

    /// A slot of `key` of `limiter` came free somewhere: wake its local waiters.
    pub fn wake(&self, limiter: &[u8], key: &str) {
        if let Some(signals) = self.signals.read().get(limiter) {
            for signal in signals {
                signal.released(key);
            }
        }
    }

    /// The limiters routed so far.
    #[cfg_attr(not(feature = "nats"), allow(dead_code))]
    pub fn limiters(&self) -> Vec<Box<[u8]>> {
        self.signals.read().keys().cloned().collect()
    }
}
