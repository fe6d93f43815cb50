//! A configured store at run time: its engine plus what every engine needs around
//! it — a deadline on every call, a circuit breaker, lease renewal and metrics.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::time::Instant;

use crate::engine::{Engine, StoreError};
use crate::limiter::LeaseKeeper;
use crate::metrics::StoreMetrics;

/// Consecutive failures that open the circuit.
const FAILURES_TO_OPEN: u32 = 5;
/// First pause before probing an open circuit; doubles up to `MAX_COOL_DOWN`.
const FIRST_COOL_DOWN: Duration = Duration::from_millis(500);
const MAX_COOL_DOWN: Duration = Duration::from_secs(10);

pub(crate) struct StoreRuntime {
    pub id: Arc<str>,
    pub engine: Arc<dyn Engine>,
    /// Bound on every store call (`socket_timeout`).
    pub call_timeout: Duration,
    pub leases: Arc<LeaseKeeper>,
    breaker: Breaker,
    metrics: StoreMetrics,
}

impl StoreRuntime {
    pub fn new(id: &str, engine: Arc<dyn Engine>, call_timeout: Duration) -> Arc<Self> {
        Arc::new(StoreRuntime {
            id: id.into(),
            metrics: StoreMetrics::new(id, engine.name()),
            engine,
            call_timeout,
            leases: Arc::default(),
            breaker: Breaker::default(),
        })
    }

    /// Runs one call to a remote store under the deadline and the circuit breaker.
    pub async fn call<T>(
        self: &Arc<Self>,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        if self.breaker.is_open() {
            return Err(StoreError::CircuitOpen);
        }
        let started = Instant::now();
        let result = match tokio::time::timeout(self.call_timeout, call).await {
            Ok(result) => result,
            Err(_) => Err(StoreError::Timeout(self.call_timeout)),
        };
        self.metrics.call_seconds.record(started.elapsed());
        match &result {
            Ok(_) => self.breaker.record_success(),
            Err(_) => {
                if self.breaker.record_failure() {
                    self.metrics.circuit_open.set(1.0);
                    self.spawn_probe();
                }
            }
        }
        result
    }

    /// While the circuit is open, pings the store in the background with growing
    /// pauses and closes the circuit as soon as it answers.
    fn spawn_probe(self: &Arc<Self>) {
        let store: Weak<StoreRuntime> = Arc::downgrade(self);
        crate::background::handle().spawn(async move {
            let mut pause = FIRST_COOL_DOWN;
            loop {
                tokio::time::sleep(pause).await;
                let Some(store) = store.upgrade() else { return };
                let ping = tokio::time::timeout(store.call_timeout, store.engine.ping()).await;
                if matches!(ping, Ok(Ok(()))) {
                    store.breaker.close();
                    store.metrics.circuit_open.set(0.0);
                    tracing::info!(store = %store.id, "store answers again; circuit closed");
                    return;
                }
                pause = (pause * 2).min(MAX_COOL_DOWN);
            }
        });
    }
}

#[derive(Default)]
struct Breaker {
    consecutive_failures: AtomicU32,
    open: AtomicBool,
}

impl Breaker {
    fn is_open(&self) -> bool {
        self.open.load(Ordering::Acquire)
    }

    fn record_success(&self) {
        self.consecutive_failures.store(0, Ordering::Release);
    }

    /// Counts a failure; true when this failure opened the circuit.
    fn record_failure(&self) -> bool {
        let failures = self.consecutive_failures.fetch_add(1, Ordering::AcqRel) + 1;
        failures >= FAILURES_TO_OPEN && !self.open.swap(true, Ordering::AcqRel)
    }

    fn close(&self) {
        self.consecutive_failures.store(0, Ordering::Release);
        self.open.store(false, Ordering::Release);
    }
}
