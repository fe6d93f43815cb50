//! A configured store at run time: its engine plus what every engine gets around it
//! (`docs/design.md#the-store-runtime`): a deadline on every call, a circuit breaker,
//! lease renewal and metrics.
//!
//! [`StoreRuntime::call`] is the one place where an engine's answer is taken. An
//! answer the engine gave at once (the memory engine, deciding in this process) is
//! used as it is: no future, no deadline, no task. Every other answer is awaited
//! under the store's deadline and circuit breaker.

use std::future::{Future, IntoFuture};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::time::Instant;

use super::leases::LeaseKeeper;
use super::{Engine, StoreCall, StoreError};
use crate::metrics::StoreMetrics;

/// Consecutive failures that open the circuit.
const FAILURES_TO_OPEN: u32 = 5;
/// First pause before probing an open circuit; doubles up to `MAX_COOL_DOWN`.
const FIRST_COOL_DOWN: Duration = Duration::from_millis(500);
const MAX_COOL_DOWN: Duration = Duration::from_secs(10);

pub(crate) struct StoreRuntime {
    pub id: Arc<str>,
    pub engine: Arc<dyn Engine>,
    /// Bound on every store call: the engine's own deadline.
    pub deadline: Duration,
    pub leases: Arc<LeaseKeeper>,
    breaker: Breaker,
    metrics: StoreMetrics,
}

/// A store's answer as [`StoreRuntime::call`] hands it out.
pub(crate) enum Answer<'a, T> {
    /// Known at once.
    Ready(Result<T, StoreError>),
    /// To be awaited; the deadline and the circuit breaker are in the future.
    Pending(BoxFuture<'a, Result<T, StoreError>>),
}

impl StoreRuntime {
    pub fn new(id: &str, engine: Arc<dyn Engine>) -> Arc<Self> {
        Arc::new(StoreRuntime {
            id: id.into(),
            metrics: StoreMetrics::new(id, engine.name()),
            deadline: engine.deadline(),
            engine,
            leases: Arc::default(),
            breaker: Breaker::default(),
        })
    }

    /// Takes an engine's answer: at once when it has one, else as a future bounded
    /// by the deadline and refused while the circuit is open.
    #[inline]
    pub fn call<'a, T: Send + 'a>(self: &'a Arc<Self>, call: StoreCall<'a, T>) -> Answer<'a, T> {
        match call {
            StoreCall::Ready(result) => Answer::Ready(result),
            StoreCall::Pending(future) => Answer::Pending(Box::pin(self.guarded(future))),
        }
    }

    /// [`Self::call`], awaited.
    pub async fn ask<'a, T: Send + 'a>(
        self: &'a Arc<Self>,
        call: StoreCall<'a, T>,
    ) -> Result<T, StoreError> {
        match self.call(call) {
            Answer::Ready(result) => result,
            Answer::Pending(future) => future.await,
        }
    }

    async fn guarded<T>(
        self: &Arc<Self>,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        if self.breaker.is_open() {
            return Err(StoreError::CircuitOpen);
        }
        let started = Instant::now();
        let result = match tokio::time::timeout(self.deadline, call).await {
            Ok(result) => result,
            Err(_) => Err(StoreError::Timeout(self.deadline)),
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
                let ping =
                    tokio::time::timeout(store.deadline, store.engine.ping().into_future()).await;
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
