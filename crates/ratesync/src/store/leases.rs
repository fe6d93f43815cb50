//! Keeping held leases alive: one task per store renews every held lease at a third
//! of its TTL, so a long operation keeps its slot while a crashed holder's lease runs
//! out. No task or timer per lease.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::{EngineLimiter, StoreRuntime};
use crate::algorithm::LeaseId;

/// Shortest renewal period, so a tiny `lease_ttl` cannot turn renewal into a spin.
const MIN_PERIOD: Duration = Duration::from_millis(10);

struct HeldLease {
    engine: Arc<dyn EngineLimiter>,
    key: Box<str>,
    period: Duration,
    next_renewal: Instant,
}

#[derive(Default)]
pub(crate) struct LeaseKeeper {
    held: Mutex<HashMap<LeaseId, HeldLease>>,
    changed: Notify,
    running: AtomicBool,
}

impl LeaseKeeper {
    /// Starts renewing `id` until [`LeaseKeeper::forget`].
    pub fn hold(
        self: &Arc<Self>,
        store: &Arc<StoreRuntime>,
        id: LeaseId,
        engine: Arc<dyn EngineLimiter>,
        key: &str,
        ttl: Duration,
    ) {
        let period = (ttl / 3).max(MIN_PERIOD);
        self.held.lock().insert(
            id,
            HeldLease {
                engine,
                key: key.into(),
                period,
                next_renewal: Instant::now() + period,
            },
        );
        if !self.running.swap(true, Ordering::AcqRel) {
            crate::background::handle().spawn(run(Arc::downgrade(self), Arc::downgrade(store)));
        } else {
            self.changed.notify_one();
        }
    }

    pub fn forget(&self, id: LeaseId) {
        self.held.lock().remove(&id);
    }
}

async fn run(keeper: Weak<LeaseKeeper>, store: Weak<StoreRuntime>) {
    loop {
        let (Some(keeper), Some(store)) = (keeper.upgrade(), store.upgrade()) else {
            return;
        };
        let next = keeper.held.lock().values().map(|h| h.next_renewal).min();
        let Some(next) = next else {
            // Nothing held: sleep until a lease is added (or the store goes away).
            let changed = keeper.changed.notified();
            drop(store);
            tokio::select! {
                _ = changed => {}
                _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            }
            continue;
        };
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {}
            _ = keeper.changed.notified() => continue,
        }
        let now = Instant::now();
        let due: Vec<(LeaseId, Arc<dyn EngineLimiter>, Box<str>)> = keeper
            .held
            .lock()
            .iter_mut()
            .filter(|(_, h)| h.next_renewal <= now)
            .map(|(id, h)| {
                h.next_renewal = now + h.period;
                (*id, h.engine.clone(), h.key.clone())
            })
            .collect();
        for (id, engine, key) in due {
            let renewed = store.ask(engine.renew(&key, id)).await;
            if let Ok(false) = renewed {
                // The lease expired before we could renew it (a long pause, or the
                // store lost it): stop renewing; its holder keeps running unlimited.
                tracing::warn!(lease = id.0, "concurrency lease expired before renewal");
                keeper.forget(id);
            }
        }
    }
}
